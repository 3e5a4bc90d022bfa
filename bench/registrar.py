"""REGISTER throughput of the registrar, and SDP negotiation speed.

A fleet of phones registers (401 challenge, then MD5 credentials) and then
refreshes on the same nonce, against bindings in SQLite on disk (WAL) and in
memory.  Prints REGISTERs per second for each phase and the cost of one
offer/answer on a Linphone-style offer.  Bounded: 2,000 phones, a few seconds.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from ivr.sip.auth import DigestChallenger, authorization_for
from ivr.sip.registrar import Account, Registrar, RegistrationStore
from ivr.sip.sdp import SessionDescription, negotiate

PHONES = 2000
NOW = 1_790_000_000.0
SDP_FILE = Path(__file__).resolve().parent.parent / "tests" / "data" / "sdp" / "linphone-offer.sdp"


def headers(n: int, cseq: int, auth: str | None) -> list[tuple[str, str]]:
    out = [
        ("Via", f"SIP/2.0/UDP 10.1.{n // 250}.{n % 250}:5060;branch=z9hG4bK{n}x{cseq}"),
        ("From", f"<sip:{1000 + n}@pbx>;tag={n}"),
        ("To", f"<sip:{1000 + n}@pbx>"),
        ("Call-ID", f"reg-{n}@10.1.0.1"),
        ("CSeq", f"{cseq} REGISTER"),
        ("Contact", f"<sip:{1000 + n}@10.1.{n // 250}.{n % 250}:5060>"),
        ("Expires", "3600"),
        ("User-Agent", "bench"),
    ]
    if auth:
        out.append(("Authorization", auth))
    return out


def run(store: RegistrationStore) -> tuple[float, float, float]:
    accounts = [Account(str(1000 + n), username=str(1000 + n), password=f"pw{n}") for n in range(PHONES)]
    reg = Registrar(store, DigestChallenger("pbx", b"bench"), accounts)
    challenges: dict[int, str] = {}
    t0 = time.perf_counter()
    for n in range(PHONES):
        reply = reg.handle_register("sip:pbx", headers(n, 1, None), ("10.1.0.1", 5060), NOW)
        challenges[n] = reply.headers[0][1]
    t1 = time.perf_counter()
    for n in range(PHONES):
        auth = authorization_for(
            challenges[n], "REGISTER", "sip:pbx", str(1000 + n), f"pw{n}", "c0ffee", 1
        )
        reply = reg.handle_register("sip:pbx", headers(n, 2, auth), ("10.1.0.1", 5060), NOW)
        assert reply.status == 200, reply.reason
    t2 = time.perf_counter()
    for n in range(PHONES):
        auth = authorization_for(
            challenges[n], "REGISTER", "sip:pbx", str(1000 + n), f"pw{n}", "c0ffee", 2
        )
        reply = reg.handle_register("sip:pbx", headers(n, 3, auth), ("10.1.0.1", 5060), NOW + 60)
        assert reply.status == 200, reply.reason
    t3 = time.perf_counter()
    return PHONES / (t1 - t0), PHONES / (t2 - t1), PHONES / (t3 - t2)


def main() -> None:
    print(f"{PHONES} phones, each: challenge, first REGISTER with MD5 credentials, refresh (nc=2)")
    with tempfile.TemporaryDirectory() as tmp:
        for label, path in (
            (":memory:", ":memory:"),
            ("SQLite file (WAL)", str(Path(tmp) / "reg.sqlite")),
        ):
            store = RegistrationStore(path)
            challenge, first, refresh = run(store)
            store.close()
            print(
                f"  {label:18} challenges {challenge:8.0f}/s   registers {first:7.0f}/s   refreshes {refresh:7.0f}/s"
            )
    offer = SessionDescription.parse(SDP_FILE.read_bytes())
    rounds = 5000
    t0 = time.perf_counter()
    for i in range(rounds):
        negotiate(offer, local_ip="10.0.0.1", local_port=20000, session_id=1, version=i)
    per = (time.perf_counter() - t0) / rounds
    t0 = time.perf_counter()
    data = SDP_FILE.read_bytes()
    for _ in range(rounds):
        SessionDescription.parse(data)
    parse = (time.perf_counter() - t0) / rounds
    print(
        f"  SDP: parse {parse * 1e6:.0f} us, negotiate (Linphone offer, 9 formats) {per * 1e6:.0f} us"
    )


if __name__ == "__main__":
    main()
