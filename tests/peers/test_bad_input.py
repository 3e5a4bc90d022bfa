"""Garbage against a live ``ivr serve``: it answers what it can, drops the rest, keeps serving.

One server (tests/peers/flows/menu.ivr) takes, over UDP and over TCP:

* named nasty cases: no Via, Via without branch, Content-Length beyond the body or
  negative, a 100 KB header, 10,000 headers, a 64 KB request line, binary junk, an
  empty datagram, a CRLF keep-alive (RFC 5626: accepted silently over UDP, answered
  with a CRLF pong over TCP), NUL bytes, bytes that are not UTF-8;
* real captured messages (tests/data/sip) mutated by hypothesis (byte flips,
  truncation, duplicated and removed header lines, huge values, bad Content-Length,
  NUL bytes, invalid UTF-8), derandomized and bounded.

Where a response can be routed (a Via that leads back to us) the test waits for it
and checks its status: the one :func:`parse_message` gives for the same bytes (the
sans-IO oracle) for refused messages, any response for accepted requests.  After the
barrage a sipp call runs the flow to its end over UDP, an OPTIONS is answered over
TCP, and the server's log holds no traceback and no ERROR line.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ivr.sip.message import Request, SipParseError, StreamFramer, parse_message
from tests.transfer.harness import peers

IvrServer = Any  # tests/peers/conftest.py's harness (loaded once through tests.transfer.harness)

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed"),
]

DATA = Path(__file__).resolve().parents[1] / "data" / "sip"
# REGISTERs carrying credentials are left out: wrong passwords from 127.0.0.1 would get the
# address throttled (correctly), and every later datagram of the test silently dropped.
BASES = sorted(p for p in DATA.glob("*.sip") if b"Authorization:" not in p.read_bytes())
WAIT = 10.0  # for one expected answer, on a loaded 2-core machine
_branches = itertools.count(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tts_cache: Path) -> Iterator[IvrServer]:
    # The test sends hundreds of requests a second from 127.0.0.1: trusted, as a proxy in front
    # would be, or the per-address limit would (correctly) refuse most of them unread, and no
    # shedding on loop lag (a busy CI machine lags); both rules are tested in test_overload.py.
    srv = peers.start_ivr(
        tmp_path_factory.mktemp("bad-input"), [peers.FLOWS / "menu.ivr"], tts_cache=tts_cache,
        extra=("--drain-timeout", "1s"), sections='[overload]\ntrusted = ["127.0.0.1"]\nmax_lag = 0\n',
    )
    yield srv
    srv.stop()


# --------------------------------------------------------------------------- peers


class UdpPeer:
    """One UDP socket: sends a datagram and waits for the answer a branch (or Call-ID) names."""

    def __init__(self, server: IvrServer) -> None:
        self.server = (server.host, server.port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    def wait_for(self, match: Callable[[bytes], bool], what: str) -> bytes:
        for data in self.received:
            if match(data):
                self.received.remove(data)
                return data
        deadline = time.monotonic() + WAIT
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(70_000)
            except TimeoutError:
                break
            if match(data):
                return data
            self.received.append(data)
        raise AssertionError(f"no answer {what} within {WAIT}s; got {[d[:40] for d in self.received[-5:]]}")

    def probe(self) -> list[bytes]:
        """Send an OPTIONS and wait for its 200: what else arrived before it came meanwhile."""
        branch = f"z9hG4bKprobe{next(_branches)}"
        self.send(options(self.port, "UDP", branch))
        self.wait_for(lambda d: d.startswith(b"SIP/2.0 200 ") and branch.encode() in d, f"200 to probe {branch}")
        before, self.received = self.received, []
        return before

    def close(self) -> None:
        self.sock.close()


def tcp_exchange(server: IvrServer, data: bytes, *, half_close: bool = True) -> bytes:
    """Send ``data`` on a new connection, then (by default) shut our side; all the server wrote."""
    with socket.create_connection((server.host, server.port), timeout=WAIT) as sock:
        with contextlib.suppress(ConnectionError):
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        out = b""
        with contextlib.suppress(ConnectionError):
            while chunk := sock.recv(65536):
                out += chunk
        return out


def options(port: int, transport: str, branch: str, *, extra: bytes = b"", uri: bytes = b"sip:ivr@127.0.0.1") -> bytes:
    return (
        b"OPTIONS " + uri + b" SIP/2.0\r\n"
        + f"Via: SIP/2.0/{transport} 127.0.0.1:{port};branch={branch};rport\r\n".encode()
        + b"From: <sip:bad@127.0.0.1>;tag=bad1\r\n"
        b"To: <sip:ivr@127.0.0.1>\r\n"
        + f"Call-ID: {branch}@bad\r\n".encode()
        + b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        + extra
        + b"Content-Length: 0\r\n\r\n"
    )


def status(data: bytes) -> int:
    m = re.match(rb"SIP/2\.0 (\d{3}) ", data)
    assert m, data[:80]
    return int(m.group(1))


# --------------------------------------------------------------------------- named cases


def named_cases(port: int, transport: str) -> list[tuple[str, bytes, int | None]]:
    """(name, bytes, status expected back or None for nothing) for one transport."""
    t = transport

    def opt(name: str, **kw: Any) -> bytes:
        return options(port, t, f"z9hG4bK{name}{next(_branches)}", **kw)

    no_via = re.sub(rb"Via: [^\r]*\r\n", b"", opt("novia"))
    no_branch = re.sub(rb";branch=[^;\r]*", b"", opt("nobranch"))
    body_short = opt("clbig").replace(b"Content-Length: 0", b"Content-Type: text/plain\r\nContent-Length: 500") + b"hi"
    negative = opt("clneg").replace(b"Content-Length: 0", b"Content-Length: -1")
    ten_thousand = opt("many", extra=b"X: y\r\n" * 10_000)
    nul = opt("nul", extra=b"Subject: a\x00b\r\n")
    not_utf8 = opt("latin", extra=b"Subject: caf\xe9 \xff\xfe\r\n")
    cases: list[tuple[str, bytes, int | None]] = [
        ("no Via", no_via, None),
        ("Via without branch (RFC 2543 fallback)", no_branch, 200),
        ("Content-Length negative", negative, 400),
        ("10,000 headers", ten_thousand, 513),
        ("NUL in a header", nul, 400),
        ("value not UTF-8", not_utf8, 200),
        ("binary junk", bytes(range(256)) * 4, None),
        ("request line of 64 KB", opt("longline", uri=b"sip:" + b"a" * 64_000 + b"@127.0.0.1"), 414),
    ]
    if t == "UDP":
        cases += [
            ("Content-Length beyond the body", body_short, 400),
            ("largest datagram, one huge header", opt("big", extra=b"X-Big: " + b"h" * 65_000 + b"\r\n"), 200),
            ("empty datagram", b"", None),
            ("CRLF keep-alive", b"\r\n\r\n", None),
        ]
    else:
        cases += [("100 KB header", opt("big", extra=b"X-Big: " + b"h" * 100_000 + b"\r\n"), 513)]
    return cases


def test_named_nasty_cases_over_udp(server: IvrServer) -> None:
    peer = UdpPeer(server)
    try:
        for name, data, expected in named_cases(peer.port, "UDP"):
            assert len(data) <= 65_507, name
            peer.send(data)
            answers = peer.probe()  # everything the server said before answering the probe
            got = [status(a) for a in answers]
            assert got == ([] if expected is None else [expected]), f"{name}: {got}"
    finally:
        peer.close()


def test_named_nasty_cases_over_tcp(server: IvrServer) -> None:
    for name, data, expected in named_cases(5999, "TCP"):
        answer = tcp_exchange(server, data)
        got = [status(m) for m in re.findall(rb"SIP/2\.0 \d{3} [^\r]*", answer)]
        assert got == ([] if expected is None else [expected]), f"{name}: {got} {answer[:100]!r}"
    # a keep-alive ping is answered with a pong and the connection stays usable
    with socket.create_connection((server.host, server.port), timeout=WAIT) as sock:
        sock.sendall(b"\r\n\r\n")
        assert sock.recv(2) == b"\r\n"
        sock.sendall(options(5999, "TCP", "z9hG4bKafterping"))
        assert sock.recv(65536).startswith(b"SIP/2.0 200 ")
    # Content-Length beyond what was sent: the server waits for the rest; our close ends it
    short = options(5999, "TCP", "z9hG4bKshort").replace(b"Content-Length: 0", b"Content-Length: 50")
    assert tcp_exchange(server, short) == b""


# --------------------------------------------------------------------------- mutated captures


def base(path: Path, port: int, transport: str) -> bytes:
    """A capture whose top Via leads back to our socket, with a branch of its own.

    Fixed width (the port and the branch number zero-padded): hypothesis draws positions
    from the length, which must not depend on anything outside its draws."""
    raw = path.read_bytes()
    via = f"Via: SIP/2.0/{transport} 127.0.0.1:{port:05d};branch=z9hG4bKmut{next(_branches):08d};rport"
    return re.sub(rb"(?mi)^(Via|v):[^\r\n]*", via.encode(), raw, count=1)


def mutate(data: bytes, draw: Callable[..., Any]) -> bytes:
    lines = data.split(b"\r\n")
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "dup", "remove", "huge", "length", "nul", "utf8"]))
        raw = b"\r\n".join(lines)
        if not raw:
            break  # truncated to nothing: an empty datagram is a case of its own
        if op == "flip":
            pos = draw(st.integers(0, len(raw) - 1))
            byte = draw(st.sampled_from(b"\x00\r\n :;,<>\"@=/\\xZ9\xff") | st.integers(0, 255))
            lines = (raw[:pos] + bytes([byte]) + raw[pos + 1 :]).split(b"\r\n")
        elif op == "truncate":
            lines = raw[: draw(st.integers(0, len(raw)))].split(b"\r\n")
        elif op in ("dup", "remove", "huge") and len(lines) > 2:
            i = draw(st.integers(1, len(lines) - 1))
            if op == "dup":
                lines.insert(i, lines[i])
            elif op == "remove":
                del lines[i]
            else:
                lines[i] += draw(st.sampled_from([b"a", b";x", b",", b" "])) * draw(st.integers(1_000, 60_000))
        elif op == "length":
            value = draw(st.sampled_from([b"-1", b"99999", b"abc", b"", b"1e2", "²".encode(), b"0", b"4294967296"]))
            lines = [re.sub(rb"(?i)^(Content-Length|l)\s*:.*", rb"\1: " + value, x) for x in lines]
        else:
            pos = draw(st.integers(0, len(raw)))
            junk = b"\x00" if op == "nul" else draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xe2\x82"]))
            lines = (raw[:pos] + junk + raw[pos:]).split(b"\r\n")
    return b"\r\n".join(lines)[:65_000]


def expectation(data: bytes, port: int) -> tuple[bytes, int | None] | None:
    """(what names the answer, its status or None for any) if the server must answer, else None."""
    try:
        message = parse_message(data)
        request = message if isinstance(message, Request) else None
        wanted: int | None = None
    except SipParseError as exc:
        request, wanted = exc.request, exc.status
    if request is None or request.method == "ACK":
        return None
    try:
        via = request.top_via
    except ValueError:
        return None
    if "maddr" in via.params or ("rport" not in via.params and (via.host, via.port) != ("127.0.0.1", port)):
        return None  # the answer goes somewhere else
    key = via.branch or request.headers.get("Call-ID")
    if not key or len(key) < 8:
        return None  # nothing to tell its answer from another's
    return key.encode(), wanted


@pytest.fixture(scope="module")
def udp_peer(server: IvrServer) -> Iterator[UdpPeer]:
    peer = UdpPeer(server)
    yield peer
    peer.close()


@settings(max_examples=200, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
@given(st.sampled_from(BASES), st.data())
def test_mutated_captures_over_udp(server: IvrServer, udp_peer: UdpPeer, path: Path, data: st.DataObject) -> None:
    raw = mutate(base(path, udp_peer.port, "UDP"), data.draw)
    udp_peer.send(raw)
    expected = expectation(raw, udp_peer.port)
    if expected is None:
        return
    key, wanted = expected

    def answers(d: bytes) -> bool:
        return d.startswith(b"SIP/2.0 ") and key in d and (wanted is None or status(d) == wanted)

    udp_peer.wait_for(answers, f"{wanted or 'any'} naming {key!r}")


@settings(max_examples=100, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
@given(st.sampled_from(BASES), st.data())
def test_mutated_captures_over_tcp(server: IvrServer, path: Path, data: st.DataObject) -> None:
    raw = mutate(base(path, 5999, "TCP"), data.draw)
    answer = tcp_exchange(server, raw)
    try:
        framed = StreamFramer().feed(raw)
        refused = None
    except SipParseError as exc:
        framed, refused = [], exc
    statuses = [int(s) for s in re.findall(rb"(?m)^SIP/2\.0 (\d{3}) ", answer)]
    if refused is not None and refused.request is not None:
        # (a message framed before the refused one, if any, was answered first)
        assert refused.status in statuses, (refused, answer[:200])
    if len(framed) == 1:
        try:
            message = parse_message(framed[0])
        except SipParseError as exc:
            if exc.request is not None and exc.request.method != "ACK":
                assert statuses[:1] == [exc.status], (exc, answer[:200])
            return
        if isinstance(message, Request) and message.method not in ("ACK", "INVITE"):
            assert statuses, f"no answer to a well-formed {message.method}"


# --------------------------------------------------------------------------- still serving


def test_still_serving_both_transports_without_a_traceback(
    server: IvrServer, udp_peer: UdpPeer, sipp: Callable[..., Any]
) -> None:
    result = sipp("basic_caller_bye.xml", server)
    result.check()
    server.wait_for(
        lambda r: r.get("call_id") == result.call_id and r.get("event") == "ended", what="the sipp call's end"
    )
    assert status(tcp_exchange(server, options(5999, "TCP", "z9hG4bKlast"))) == 200
    udp_peer.probe()
    with server.cond:
        lines = list(server.lines)
    assert not [x for x in lines if "Traceback" in x or x.startswith(("ERROR", "CRITICAL"))], "\n".join(lines[-80:])
    assert server.proc.poll() is None
