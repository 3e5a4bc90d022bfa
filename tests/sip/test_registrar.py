"""The registrar on REGISTER requests written the way Yealink, baresip and Linphone send them."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.sip.auth import AuthResult, DigestChallenger, authorization_for, parse_digest
from ivr.sip.message import Request, Response, parse_message
from ivr.sip.registrar import (
    Account,
    Binding,
    RegisterReply,
    Registrar,
    RegistrationStore,
    RegistrationStoreError,
)
from ivr.sip.throttle import AuthThrottle

NOW = 1_790_000_000.0
DESK = ("192.168.1.101", 5062)
SOFT = ("192.168.0.47", 5060)
BARESIP = ("127.0.0.1", 41234)
Edits = Mapping[str, str]
NO_EDITS: Edits = {}

RECEPTION = Account("201", username="201", password="kX9!desk", contacts=())
ALICE = Account("202", username="alice", password="Wonder land", contacts=("sip:202@10.0.0.99:5060",))
BOB = Account("203", username="bob", password="b0b")

YEALINK = """REGISTER sip:192.168.1.10:5060 SIP/2.0
Via: SIP/2.0/UDP 192.168.1.101:5062;branch=z9hG4bK1848469432
From: "Reception" <sip:201@192.168.1.10:5060>;tag=2136512498
To: "Reception" <sip:201@192.168.1.10:5060>
Call-ID: 1829178592@192.168.1.101
CSeq: {cseq} REGISTER
Contact: <sip:201@192.168.1.101:5062>
{auth}Max-Forwards: 70
User-Agent: Yealink SIP-T46S 66.86.0.15
Expires: {expires}
Allow: INVITE, INFO, PRACK, ACK, BYE, CANCEL, OPTIONS, NOTIFY, REGISTER, SUBSCRIBE, REFER, PUBLISH, UPDATE, MESSAGE
Allow-Events: talk,hold,conference,refer,check-sync
Content-Length: 0

"""

BARESIP_REG = """REGISTER sip:127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:41234;branch=z9hG4bK6d3a5b1c8e2f47a0;rport
Contact: <sip:alice-0x55d0c0a1e2f0@127.0.0.1:41234>;expires={expires}
Max-Forwards: 70
To: <sip:alice@127.0.0.1>
From: <sip:alice@127.0.0.1>;tag=5f7c0a3e9b1d2c4a
Call-ID: 9d1b3c5e7f092a4b
CSeq: {cseq} REGISTER
{auth}User-Agent: baresip v1.0.0 (x86_64/linux)
Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,REFER
Supported: replaces,norefersub
Content-Length: 0

"""

LINPHONE = """REGISTER sip:192.168.1.10 SIP/2.0
Via: SIP/2.0/UDP 192.168.0.47:5060;branch=z9hG4bK.Qm9V2cBx1;rport
From: <sip:alice@192.168.1.10>;tag=gXkYz1~Pn
To: sip:alice@192.168.1.10
CSeq: {cseq} REGISTER
Call-ID: 8y2ZqK4vTs
Max-Forwards: 70
Supported: replaces, outbound, gruu, path
Accept: application/sdp
Contact: <sip:alice@192.168.0.47;transport=udp>;+sip.instance="<urn:uuid:a1b2c3d4-e5f6-4711-8899-aabbccddeeff>"
Expires: {expires}
{auth}User-Agent: LinphoneAndroid/4.6.14 (Pixel 6) LinphoneSDK/5.1.2
Content-Length: 0

"""


def request(
    template: str, cseq: int, *, auth: str = "", expires: int = 3600, edits: Edits = NO_EDITS
) -> Request:
    text = template.replace("{cseq}", str(cseq)).replace("{expires}", str(expires))
    text = text.replace("{auth}", f"Authorization: {auth}\n" if auth else "")
    text = text.replace("\n", "\r\n")
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    msg = parse_message(text.encode())
    assert isinstance(msg, Request)
    return msg


def make(tmp: Path | None = None, **kw: object) -> Registrar:
    store = RegistrationStore(tmp if tmp is not None else ":memory:")
    accounts = [RECEPTION, ALICE, BOB]
    return Registrar(store, DigestChallenger("ivr", b"test secret"), accounts, **kw)  # type: ignore[arg-type]


class Phone:
    """A phone's REGISTER loop: send, answer the MD5 challenge, send again with CSeq + 1."""

    def __init__(self, template: str, user: str, password: str, source: tuple[str, int]) -> None:
        self.template, self.user, self.password, self.source = template, user, password, source
        self.cseq = 0
        self.nc = 0
        self.challenge: str | None = None

    def send(
        self, reg: Registrar, now: float, *, expires: int = 3600, edits: Edits = NO_EDITS
    ) -> RegisterReply:
        self.cseq += 1
        auth = ""
        if self.challenge is not None:
            self.nc += 1
            uri = request(self.template, self.cseq).uri
            auth = authorization_for(
                self.challenge, "REGISTER", uri, self.user, self.password, "0a4f113b", self.nc
            )
        reply = reg.handle_request(
            request(self.template, self.cseq, auth=auth, expires=expires, edits=edits),
            self.source,
            now,
        )
        return reply

    def register(
        self, reg: Registrar, now: float, *, expires: int = 3600, edits: Edits = NO_EDITS
    ) -> RegisterReply:
        reply = self.send(reg, now, expires=expires, edits=edits)
        if reply.status == 401:
            md5 = [v for n, v in reply.headers if n == "WWW-Authenticate" and "algorithm=MD5" in v]
            self.challenge, self.nc = md5[0], 0
            reply = self.send(reg, now, expires=expires, edits=edits)
        return reply


def contacts_of(reply: RegisterReply) -> list[str]:
    return [v for n, v in reply.headers if n == "Contact"]


# --------------------------------------------------------------------------- the normal path


def test_first_register_is_challenged_with_md5_by_default() -> None:
    reply = make().handle_request(request(YEALINK, 1), DESK, NOW)
    assert (reply.status, reply.reason) == (401, "Unauthorized")
    [(name, value)] = reply.headers
    assert name == "WWW-Authenticate"
    assert value.startswith('Digest realm="ivr", nonce="') and value.endswith(
        '", algorithm=MD5, qop="auth"'
    )


def test_sha256_can_be_offered_first() -> None:
    reg = make(algorithms=("SHA-256", "MD5"))
    reply = reg.handle_request(request(YEALINK, 1), DESK, NOW)
    challenges = [v for n, v in reply.headers if n == "WWW-Authenticate"]
    assert [parse_digest(c)[1]["algorithm"] for c in challenges] == ["SHA-256", "MD5"]
    # A phone answering the MD5 one (as Yealinks do) gets in, and so does an RFC 8760 one.
    assert Phone(YEALINK, "201", RECEPTION.password, DESK).register(reg, NOW).status == 200
    modern = Phone(LINPHONE, "alice", ALICE.password, SOFT)
    first = modern.send(reg, NOW)
    modern.challenge = [v for n, v in first.headers if "SHA-256" in v][0]
    assert modern.send(reg, NOW).status == 200


def test_yealink_registers() -> None:
    reg = make()
    reply = Phone(YEALINK, "201", RECEPTION.password, DESK).register(reg, NOW)
    assert (reply.status, reply.reason) == (200, "OK")
    assert contacts_of(reply) == ["<sip:201@192.168.1.101:5062>;expires=3600"]
    assert reply.headers == [
        ("Contact", "<sip:201@192.168.1.101:5062>;expires=3600"),
        ("Expires", "3600"),
        ("Date", "Mon, 21 Sep 2026 14:13:20 GMT"),
    ]
    [b] = reg.contacts("201", NOW + 10)
    assert b == Binding(
        "201", "sip:201@192.168.1.101:5062", DESK, "udp", NOW + 3600,
        "1829178592@192.168.1.101", 2, None, "", "Yealink SIP-T46S 66.86.0.15",
    )  # fmt: skip
    assert b.expires_in(NOW + 10) == 3590


def test_desk_phone_and_softphone_on_one_extension() -> None:
    reg = make()
    assert Phone(BARESIP_REG, "alice", ALICE.password, BARESIP).register(reg, NOW).status == 200
    reply = Phone(LINPHONE, "alice", ALICE.password, SOFT).register(reg, NOW + 30, expires=600)
    assert reply.status == 200
    assert contacts_of(reply) == [
        '<sip:alice@192.168.0.47;transport=udp>;expires=600;+sip.instance="<urn:uuid:a1b2c3d4-e5f6-4711-8899-aabbccddeeff>"',
        "<sip:alice-0x55d0c0a1e2f0@127.0.0.1:41234>;expires=3570",
    ]
    found = reg.contacts("202", NOW + 40)
    # Newest registration first, then the static contact from ivr.toml.
    assert [(b.uri, b.source, b.transport) for b in found] == [
        ("sip:alice@192.168.0.47;transport=udp", SOFT, "udp"),
        ("sip:alice-0x55d0c0a1e2f0@127.0.0.1:41234", BARESIP, "udp"),
        ("sip:202@10.0.0.99:5060", None, "udp"),
    ]
    assert found[2].static and found[2].expires_in(NOW) is None


def test_q_values_order_the_contacts() -> None:
    reg = make()
    desk = Phone(BARESIP_REG, "alice", ALICE.password, BARESIP)
    desk.register(reg, NOW, edits={";expires=3600": ";expires=3600;q=0.9"})
    Phone(LINPHONE, "alice", ALICE.password, SOFT).register(
        reg, NOW + 1, edits={"transport=udp>": "transport=udp>;q=0.5"}
    )
    assert [b.q for b in reg.contacts("202", NOW + 2)][:2] == [0.9, 0.5]
    reply = desk.register(reg, NOW + 3, edits={";expires=3600": ";expires=3600;q=0.9"})
    assert contacts_of(reply)[0] == "<sip:alice-0x55d0c0a1e2f0@127.0.0.1:41234>;expires=3600;q=0.9"


def test_refresh_reuses_the_nonce_with_growing_nc() -> None:
    reg = make()
    phone = Phone(YEALINK, "201", RECEPTION.password, DESK)
    assert phone.register(reg, NOW).status == 200
    again = phone.send(reg, NOW + 60)  # same nonce, nc=2, CSeq 3: no new challenge needed
    assert again.status == 200
    assert contacts_of(again) == ["<sip:201@192.168.1.101:5062>;expires=3600"]


def test_query_without_contact_lists_bindings() -> None:
    reg = make()
    phone = Phone(YEALINK, "201", RECEPTION.password, DESK)
    phone.register(reg, NOW)
    reply = phone.send(reg, NOW + 100, edits={"Contact: <sip:201@192.168.1.101:5062>\r\n": ""})
    assert reply.status == 200
    assert contacts_of(reply) == ["<sip:201@192.168.1.101:5062>;expires=3500"]


# --------------------------------------------------------------------------- expiry


def test_contact_expires_parameter_beats_the_expires_header() -> None:
    reg = make()
    reply = Phone(YEALINK, "201", RECEPTION.password, DESK).register(
        reg,
        NOW,
        edits={
            "Contact: <sip:201@192.168.1.101:5062>": "Contact: <sip:201@192.168.1.101:5062>;expires=120"
        },
    )
    assert contacts_of(reply) == ["<sip:201@192.168.1.101:5062>;expires=120"]


def test_too_long_is_shortened_and_too_brief_is_423() -> None:
    reg = make(min_expires=60, max_expires=1800)
    phone = Phone(YEALINK, "201", RECEPTION.password, DESK)
    assert contacts_of(phone.register(reg, NOW, expires=7200)) == [
        "<sip:201@192.168.1.101:5062>;expires=1800"
    ]
    brief = phone.send(reg, NOW + 1, expires=30)
    assert (brief.status, brief.reason, brief.headers) == (
        423,
        "Interval Too Brief",
        [("Min-Expires", "60")],
    )
    assert reg.contacts("201", NOW + 2)[0].expires_at == NOW + 1800  # unchanged


def test_bindings_expire_and_are_purged() -> None:
    reg = make()
    Phone(YEALINK, "201", RECEPTION.password, DESK).register(reg, NOW, expires=120)
    assert len(reg.contacts("201", NOW + 119)) == 1
    assert reg.contacts("201", NOW + 120) == []
    assert reg.purge(NOW + 119) == 0
    assert reg.purge(NOW + 121) == 1
    assert reg.store.bindings("201") == []


def test_unregister_one_contact_keeps_the_other() -> None:
    reg = make()
    baresip = Phone(BARESIP_REG, "alice", ALICE.password, BARESIP)
    baresip.register(reg, NOW)
    Phone(LINPHONE, "alice", ALICE.password, SOFT).register(reg, NOW)
    reply = baresip.register(reg, NOW + 5, expires=0)
    assert reply.status == 200
    assert [c.split(";")[0] for c in contacts_of(reply)] == ["<sip:alice@192.168.0.47"]


def test_contact_star_removes_all() -> None:
    reg = make()
    Phone(BARESIP_REG, "alice", ALICE.password, BARESIP).register(reg, NOW)
    linphone = Phone(LINPHONE, "alice", ALICE.password, SOFT)
    linphone.register(reg, NOW)
    star = {
        'Contact: <sip:alice@192.168.0.47;transport=udp>;+sip.instance="<urn:uuid:a1b2c3d4-e5f6-4711-8899-aabbccddeeff>"': "Contact: *"
    }
    reply = linphone.send(reg, NOW + 5, expires=0, edits=star)
    assert reply.status == 200 and contacts_of(reply) == []
    assert [b.static for b in reg.contacts("202", NOW + 6)] == [True]


def test_contact_star_needs_expires_zero_and_to_be_alone() -> None:
    reg = make()
    phone = Phone(YEALINK, "201", RECEPTION.password, DESK)
    phone.register(reg, NOW)
    star = {"Contact: <sip:201@192.168.1.101:5062>": "Contact: *"}
    bad = phone.send(reg, NOW + 1, expires=60, edits=star)
    assert (bad.status, bad.reason) == (
        400,
        "Bad Request (Contact: * needs Expires: 0 and no other contact)",
    )
    both = {"Contact: <sip:201@192.168.1.101:5062>": "Contact: *, <sip:201@192.168.1.101:5062>"}
    assert phone.send(reg, NOW + 2, expires=0, edits=both).status == 400
    assert len(reg.contacts("201", NOW + 3)) == 1


# --------------------------------------------------------------------------- Call-ID / CSeq (10.3 step 7)


def test_older_cseq_of_the_same_call_id_is_refused() -> None:
    reg = make()
    phone = Phone(YEALINK, "201", RECEPTION.password, DESK)
    phone.register(reg, NOW)  # binding stored with CSeq 2
    phone.cseq = 0  # the next send uses CSeq 1 again (a delayed, reordered request)
    late = phone.send(reg, NOW + 1, expires=0)
    assert (late.status, late.reason) == (500, "Server Internal Error (out-of-order REGISTER)")
    assert ("Retry-After", "1") in late.headers
    assert len(reg.contacts("201", NOW + 2)) == 1


def test_a_new_call_id_replaces_the_binding_whatever_its_cseq() -> None:
    reg = make()
    Phone(YEALINK, "201", RECEPTION.password, DESK).register(reg, NOW)
    rebooted = Phone(YEALINK, "201", RECEPTION.password, DESK)
    rebooted.template = YEALINK.replace("1829178592@", "77@")
    reply = rebooted.register(reg, NOW + 10, expires=600)
    assert contacts_of(reply) == ["<sip:201@192.168.1.101:5062>;expires=600"]
    assert reg.contacts("201", NOW + 11)[0].call_id == "77@192.168.1.101"


# --------------------------------------------------------------------------- refusals


def test_wrong_password_is_challenged_again_logged_and_throttled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ivr.sip.auth")
    reg = make(throttle=AuthThrottle(max_failures=3, window=60, cooldown=600))
    scanner = Phone(YEALINK, "201", "123456", ("198.51.100.66", 5070))
    statuses = [
        scanner.register(reg, NOW).status,
        scanner.send(reg, NOW + 1).status,
        scanner.send(reg, NOW + 2).status,
    ]
    assert statuses == [401, 401, 401]  # the third failure is answered, and starts the block
    assert "wrong password for user '201'" in caplog.text and "198.51.100.66" in caplog.text
    assert "blocking 198.51.100.66 for 600 s" in caplog.text
    dropped = scanner.send(reg, NOW + 4)
    assert dropped.drop and dropped.status == RegisterReply.DROP
    # The real phone on another address is not affected.
    assert Phone(YEALINK, "201", RECEPTION.password, DESK).register(reg, NOW + 5).status == 200
    assert not scanner.send(reg, NOW + 700).drop


def test_throttle_can_answer_403_instead_of_dropping() -> None:
    reg = make(throttle=AuthThrottle(max_failures=1), throttle_action="403")
    Phone(YEALINK, "201", "nope", DESK).register(reg, NOW)
    reply = Phone(YEALINK, "201", RECEPTION.password, DESK).register(reg, NOW + 1)
    assert (reply.status, reply.reason) == (403, "Forbidden (too many failed logins)")


def test_unknown_user_is_challenged_again() -> None:
    reply = Phone(YEALINK, "mallory", "x", DESK).register(make(), NOW)
    assert reply.status == 401


def test_registering_someone_elses_extension_is_403_and_unknown_404() -> None:
    reg = make()
    bob = Phone(YEALINK.replace("sip:201@", "sip:202@"), "bob", BOB.password, DESK)
    reply = bob.register(reg, NOW)
    assert (reply.status, reply.reason) == (403, "Forbidden (bob may not register 202)")
    ghost = Phone(YEALINK.replace("sip:201@", "sip:299@"), "bob", BOB.password, DESK)
    assert (ghost.register(reg, NOW).reason) == "Not Found (no extension 299)"
    assert reg.contacts("202", NOW) == reg.contacts("202", NOW)[-1:]  # only the static one


def test_credentials_for_another_realm_are_403() -> None:
    reg = make()
    phone = Phone(YEALINK, "201", RECEPTION.password, DESK)
    phone.challenge = 'Digest realm="asterisk", nonce="abc", algorithm=MD5, qop="auth"'
    reply = phone.send(reg, NOW)
    assert (reply.status, reply.reason) == (
        403,
        "Forbidden (credentials for realm 'asterisk', this is realm 'ivr')",
    )


def test_stale_nonce_gets_stale_challenge() -> None:
    reg = make()
    phone = Phone(YEALINK, "201", RECEPTION.password, DESK)
    phone.register(reg, NOW)
    reply = phone.send(reg, NOW + 400)  # nonce older than 300 s
    assert reply.status == 401
    assert all("stale=TRUE" in v for n, v in reply.headers if n == "WWW-Authenticate")
    assert phone.register(reg, NOW + 401).status == 200


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        ("Call-ID", None, "Bad Request (missing Call-ID header)"),
        ("CSeq", "1 INVITE", "Bad Request (CSeq must be '<number> REGISTER')"),
        ("CSeq", "one REGISTER", "Bad Request (CSeq must be '<number> REGISTER')"),
        ("CSeq", "2147483648 REGISTER", "Bad Request (CSeq must be '<number> REGISTER')"),
        ("To", None, "Bad Request (missing To header)"),
        ("To", "<sip:201@192.168.1.10", "Bad Request (invalid To header)"),
        ("Contact", "<tel:+41441234567>", "Bad Request (Contact must be a sip: or sips: URI)"),
        (
            "Contact",
            "<sip:201@192.168.1.101:5062",
            "Bad Request (invalid Contact: unterminated <URI>",
        ),
    ],
)
def test_malformed_registers_are_400(header: str, value: str | None, reason: str) -> None:
    # Plain header pairs, as a lenient parser or a future transport could hand them over.
    reg = make()
    phone = Phone(YEALINK, "201", RECEPTION.password, DESK)
    phone.register(reg, NOW)
    auth = authorization_for(
        phone.challenge or "",
        "REGISTER",
        "sip:192.168.1.10:5060",
        "201",
        RECEPTION.password,
        "c",
        9,
    )
    pairs = list(request(YEALINK, 5, auth=auth).headers)
    if value is None:
        pairs = [(n, v) for n, v in pairs if n != header]
    else:
        pairs = [(n, value if n == header else v) for n, v in pairs]
    reply = reg.handle_register("sip:192.168.1.10:5060", pairs, DESK, NOW + 1)
    assert reply.status == 400
    assert reply.reason.startswith(reason)


def test_require_is_420_with_unsupported() -> None:
    reg = make()
    reply = reg.handle_register(
        "sip:192.168.1.10",
        [
            ("To", "<sip:201@x>"),
            ("Call-ID", "a"),
            ("CSeq", "1 REGISTER"),
            ("Require", "path, outbound"),
        ],
        DESK,
        NOW,
    )
    assert (reply.status, reply.headers) == (420, [("Unsupported", "path, outbound")])


def test_other_methods_are_405() -> None:
    reply = make().handle_register("sip:x", {}, DESK, NOW, method="OPTIONS")
    assert (reply.status, reply.headers) == (405, [("Allow", "REGISTER")])


def test_served_domains() -> None:
    reg = make(domains=["pbx.example.com"])
    ok = Phone(
        YEALINK.replace("192.168.1.10:5060", "pbx.example.com"), "201", RECEPTION.password, DESK
    )
    assert ok.register(reg, NOW).status == 200
    other = Phone(
        YEALINK.replace("192.168.1.10:5060", "evil.example.net"), "201", RECEPTION.password, DESK
    )
    assert (
        other.register(reg, NOW).reason == "Forbidden (domain evil.example.net is not served here)"
    )


def test_contacts_per_extension_are_bounded() -> None:
    reg = make(max_contacts=2)
    cid = 0

    def register(port: int) -> RegisterReply:
        nonlocal cid
        cid += 1
        phone = Phone(
            YEALINK.replace("1829178592@", f"{cid}@").replace("101:5062>", f"101:{port}>"),
            "201",
            RECEPTION.password,
            DESK,
        )
        return phone.register(reg, NOW)

    assert register(5001).status == 200
    assert register(5002).status == 200
    assert register(5003).reason == "Forbidden (more than 2 contacts)"


def test_plain_dict_headers_and_compact_forms() -> None:
    reg = make()
    first = reg.handle_register(
        "sip:ivr", {"t": "<sip:bob@ivr>", "i": "c1", "CSeq": "1 REGISTER"}, SOFT, NOW
    )
    challenge = [v for n, v in first.headers if "MD5" in v][0]
    auth = authorization_for(challenge, "REGISTER", "sip:ivr", "bob", BOB.password, "c", 1)
    headers = [
        ("t", "<sip:bob@ivr>"),
        ("i", "c1"),
        ("CSeq", "2 REGISTER"),
        ("m", "<sip:bob@10.1.1.1>, <sip:bob@10.1.1.2>"),
        ("Authorization", auth),
    ]
    reply = reg.handle_register("sip:ivr", headers, SOFT, NOW, transport="TCP")
    assert contacts_of(reply) == [
        "<sip:bob@10.1.1.2>;expires=3600",
        "<sip:bob@10.1.1.1>;expires=3600",
    ]
    assert {b.transport for b in reg.contacts("203", NOW)} == {"tcp"}


# --------------------------------------------------------------------------- persistence and config


def test_bindings_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "registrations.sqlite"
    reg = make(path)
    Phone(BARESIP_REG, "alice", ALICE.password, BARESIP).register(reg, NOW)
    reg.store.close()
    again = make(path)  # a new process: new challenger secret, same database
    found = again.contacts("202", NOW + 60)
    assert [(b.uri, b.source, b.call_id, b.cseq) for b in found[:1]] == [
        ("sip:alice-0x55d0c0a1e2f0@127.0.0.1:41234", BARESIP, "9d1b3c5e7f092a4b", 2)
    ]
    assert found[0].expires_in(NOW + 60) == 3540
    again.store.close()


def test_an_account_without_a_password_is_reached_at_its_static_contacts_only() -> None:
    lobby = Account("300", contacts=("sip:300@10.0.0.5",))
    reg = Registrar(RegistrationStore(), DigestChallenger("ivr", b"s"), [RECEPTION, ALICE, lobby])
    assert reg.users == {"201": RECEPTION, "alice": ALICE}
    assert [(b.uri, b.static) for b in reg.contacts("300", NOW)] == [("sip:300@10.0.0.5", True)]
    reply = Phone(YEALINK.replace("sip:201@", "sip:300@"), "300", "", DESK).register(reg, NOW)
    assert (reply.status, reply.reason) == (401, "Unauthorized")  # no password: it cannot register
    other = make()
    assert other.contacts("300", NOW) == []
    assert [b.uri for b in other.contacts("300", NOW, account=lobby)] == ["sip:300@10.0.0.5"]


# --------------------------------------------------------------------------- through the user agent


def through_ua(reg: Registrar, msg: Request, source: tuple[str, int], now: float) -> Response:
    from ivr.sip.events import RequestReceived
    from ivr.sip.ua import UserAgent

    ua = UserAgent(local_host="127.0.0.1", local_port=5060)
    ua.receive(bytes(msg), source, "udp", now)
    event = ua.next_event()
    assert isinstance(event, RequestReceived)
    reg.handle(ua, event, now)
    [out] = ua.outgoing()
    assert out.dest == source
    response = parse_message(out.data)
    assert isinstance(response, Response)
    return response


def test_handle_answers_through_the_user_agent() -> None:
    reg = make()
    first = through_ua(reg, request(YEALINK, 1), DESK, NOW)
    assert first.status == 401
    assert first.headers.get("Call-ID") == "1829178592@192.168.1.101"
    challenge = first.headers["WWW-Authenticate"]
    auth = authorization_for(
        challenge, "REGISTER", "sip:192.168.1.10:5060", "201", RECEPTION.password, "c", 1
    )
    ok = through_ua(reg, request(YEALINK, 2, auth=auth), DESK, NOW)
    assert ok.status == 200
    assert ok.headers.get_all("Contact") == ["<sip:201@192.168.1.101:5062>;expires=3600"]


def test_handle_answers_a_throttled_source_403_and_blocked_tells_the_transport() -> None:
    reg = make(throttle=AuthThrottle(max_failures=1))
    scanner = ("203.0.113.9", 5062)  # the Via port: no rport, so the answer goes there
    Phone(YEALINK, "201", "password1", scanner).register(reg, NOW)
    assert reg.blocked("203.0.113.9", NOW + 1) and not reg.blocked(DESK[0], NOW + 1)
    assert through_ua(reg, request(YEALINK, 9), scanner, NOW + 1).status == 403


def test_binding_str_is_its_uri() -> None:
    assert str(Binding("201", "sip:201@10.0.0.1", None, "udp", NOW)) == "sip:201@10.0.0.1"


# --------------------------------------------------------------------------- robustness

_NAMES = st.sampled_from(
    [
        "To",
        "t",
        "Call-ID",
        "i",
        "CSeq",
        "Contact",
        "m",
        "Expires",
        "Authorization",
        "Require",
        "User-Agent",
    ]
)
_VALUES = st.one_of(
    st.sampled_from(
        [
            "<sip:201@ivr>",
            "sip:alice@ivr",
            "*",
            "1 REGISTER",
            "99999999999999999999 REGISTER",
            "0",
            "-1",
            "4294967296",
            "<sip:201@10.0.0.1>;expires=abc;q=2",
            '<sip:201@10.0.0.1>;expires=60, "x" <sip:201@10.0.0.2;lr>;q=0.5',
            "<tel:+411>",
            'Digest username="201", realm="ivr", nonce="x", uri="sip:ivr", response="y"',
            "Digest ,,,",
            "",
        ]
    ),
    st.text(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=8))
def test_any_headers_get_an_answer_never_an_exception(headers: list[tuple[str, str]]) -> None:
    reg = make()
    reply = reg.handle_register("sip:ivr", headers, DESK, NOW)
    assert reply.status in (200, 400, 401, 403, 404, 420, 423, 500)
    reg.store.close()


class _TrustEveryone(DigestChallenger):
    """Lets the property test below reach Contact processing without computing digests."""

    def verify(self, *args: object, **kwargs: object) -> AuthResult:  # type: ignore[override]
        return AuthResult(True, "201", False, "ok", 200)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=8))
def test_any_authenticated_headers_get_an_answer(headers: list[tuple[str, str]]) -> None:
    reg = Registrar(RegistrationStore(), _TrustEveryone("ivr"), [RECEPTION], max_contacts=3)
    base = [
        ("Authorization", "Digest x=1"),
        ("To", "<sip:201@ivr>"),
        ("Call-ID", "c"),
        ("CSeq", "5 REGISTER"),
    ]
    names = {n.lower() for n, _ in headers}
    kept = [(n, v) for n, v in base if n.lower() not in names]
    reply = reg.handle_register("sip:ivr", kept + headers, DESK, NOW)
    assert reply.status in (200, 400, 403, 404, 420, 423, 500)
    if reply.status == 200:
        assert all(n in ("Contact", "Expires", "Date") for n, _ in reply.headers)
        assert len(reg.contacts("201", NOW)) <= 3
    reg.store.close()


def test_expired_bindings_are_swept_by_later_registers() -> None:
    reg = make(purge_interval=300)
    Phone(YEALINK, "201", RECEPTION.password, DESK).register(reg, NOW, expires=60)
    assert len(reg.store.bindings("201")) == 1
    Phone(BARESIP_REG, "alice", ALICE.password, BARESIP).register(reg, NOW + 200)
    assert len(reg.store.bindings("201")) == 1  # expired, not yet swept
    Phone(BARESIP_REG, "alice", ALICE.password, BARESIP).register(reg, NOW + 400)
    assert reg.store.bindings("201") == []


def test_a_damaged_database_is_reported_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "registrations.sqlite"
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(
        RegistrationStoreError,
        match=r"registrations.sqlite: cannot use as registrations database: ",
    ):
        RegistrationStore(path)
    assert path.read_bytes() == b"this is not SQLite" * 100


def test_a_database_from_a_newer_ivr_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "registrations.sqlite"
    RegistrationStore(path).close()
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version=7")
    with pytest.raises(RegistrationStoreError, match="schema version 7 is newer than this ivr"):
        RegistrationStore(path)


def test_store_is_usable_from_another_thread() -> None:
    reg = make()
    Phone(YEALINK, "201", RECEPTION.password, DESK).register(reg, NOW)
    found: list[list[Binding]] = []
    worker = threading.Thread(target=lambda: found.append(reg.contacts("201", NOW)))
    worker.start()
    worker.join(10)
    assert [b.uri for b in found[0]] == ["sip:201@192.168.1.101:5062"]


def test_a_failing_database_is_500_with_retry_after(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reg = make(tmp_path / "registrations.sqlite")
    phone = Phone(YEALINK, "201", RECEPTION.password, DESK)
    phone.register(reg, NOW)
    reg.store._db.execute("PRAGMA query_only=1")  # the disk refuses writes from here on
    reply = phone.send(reg, NOW + 60)
    assert (reply.status, reply.reason) == (500, "Server Internal Error (registrations database)")
    assert reply.headers == [("Retry-After", "30")]
    assert "registrations database" in caplog.text
    reg.store.close()
