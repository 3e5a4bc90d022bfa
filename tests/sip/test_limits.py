"""Limits against bad input and abuse: message sizes, header counts, numbers, TCP connections.

Sans-IO first (StreamFramer, parse_message, salvage_request and the UserAgent on
bytes), then SipEndpoint with the real UserAgent on loopback sockets: a header
section without end is answered 513 and the connection closed, a message that
never completes is closed after the message timeout however slowly it trickles,
keep-alive pings get their pong, and connections beyond the caps are refused.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ivr.sip.events import IncomingCall, RequestReceived
from ivr.sip.message import (
    MAX_HEADER_BYTES,
    MAX_HEADER_FIELDS,
    MAX_MESSAGE_BYTES,
    Headers,
    Request,
    Response,
    SipParseError,
    StreamFramer,
    parse_message,
    salvage_request,
)
from ivr.sip.transport import MAX_RESOLVING, SipEndpoint
from ivr.sip.ua import UserAgent

DATA = Path(__file__).parent.parent / "data" / "sip"
SOURCE = ("192.0.2.1", 5062)

OPTIONS_HEAD = (
    b"OPTIONS sip:ivr@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKlimits1\r\n"
    b"From: <sip:probe@127.0.0.1>;tag=1928301774\r\n"
    b"To: <sip:ivr@127.0.0.1>\r\n"
    b"Call-ID: limits-a84b4c76e66710\r\n"
    b"CSeq: 63104 OPTIONS\r\n"
    b"Max-Forwards: 70\r\n"
)
OPTIONS = OPTIONS_HEAD + b"Content-Length: 0\r\n\r\n"


def capture(name: str) -> bytes:
    return (DATA / f"{name}.sip").read_bytes()


def replies(ua: UserAgent) -> list[Response]:
    """The responses the agent sent (a response echoing a bad CSeq is read by its status line)."""
    out = []
    for o in ua.outgoing():
        if not o.data.startswith(b"SIP/2.0 "):
            continue  # a request of ours (a BYE after no ACK came)
        try:
            message = parse_message(o.data)
        except SipParseError:
            message = Response(int(o.data.split(b" ", 2)[1]), "", Headers())
        assert isinstance(message, Response)
        out.append(message)
    return out


# --------------------------------------------------------------------------- StreamFramer


def test_framer_refuses_a_header_section_beyond_the_limit_even_when_it_ends() -> None:
    """Before: a header section arriving whole with its blank line was framed at any size."""
    big = OPTIONS_HEAD + b"X-Big: " + b"a" * 300 + b"\r\nContent-Length: 0\r\n\r\n"
    framer = StreamFramer(max_header=200)
    with pytest.raises(SipParseError) as err:
        framer.feed(big)
    assert err.value.status == 513
    assert framer.pending == 0  # nothing kept after the refusal


def test_framer_answers_an_endless_header_section_with_513_to_the_request() -> None:
    framer = StreamFramer()
    assert framer.feed(OPTIONS_HEAD) == []
    assert framer.pending == len(OPTIONS_HEAD)
    with pytest.raises(SipParseError) as err:
        for _ in range(200):  # 100 KB of one header value, in 1 KB reads: never ends
            framer.feed(b"X-Endless: " if _ == 0 else b"b" * 1000)
    assert err.value.status == 513 and err.value.reason == "header section too large"
    request = err.value.request
    assert request is not None and request.method == "OPTIONS"
    assert request.top_via.branch == "z9hG4bKlimits1" and request.call_id == "limits-a84b4c76e66710"
    assert framer.pending == 0


def test_framer_bounds_the_whole_message() -> None:
    head = OPTIONS_HEAD + b"Content-Type: text/plain\r\n"
    with pytest.raises(SipParseError) as err:
        StreamFramer(max_message=1000).feed(head + b"Content-Length: 900\r\n\r\n")
    assert err.value.status == 513 and err.value.request is not None
    # the defaults: any message a UDP datagram can carry, and nothing bigger
    ok = head + b"Content-Length: 60000\r\n\r\n" + b"x" * 60000
    assert StreamFramer().feed(ok) == [ok]
    with pytest.raises(SipParseError) as err:
        StreamFramer().feed(head + f"Content-Length: {MAX_MESSAGE_BYTES}\r\n\r\n".encode())
    assert err.value.status in (413, 513)


@pytest.mark.parametrize("length", ["²", "١٠", "-1", "+5", "0x10", "1e3", " ", "9" * 40])
def test_framer_refuses_content_lengths_that_are_not_digits(length: str) -> None:
    """Before: ``²`` passed str.isdigit() and int() raised ValueError out of the framer."""
    data = OPTIONS_HEAD + f"Content-Length: {length}\r\n\r\n".encode()
    with pytest.raises(SipParseError) as err:
        StreamFramer().feed(data)
    assert err.value.status in (400, 413)
    assert err.value.request is not None  # answerable: the Via survived


def test_framer_counts_keepalives_between_messages() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [] and framer.keepalives == 1 and framer.pending == 0
    assert framer.feed(OPTIONS + b"\r\n\r\n\r\n\r\n") == [OPTIONS]
    assert framer.keepalives == 3


# --------------------------------------------------------------------------- parse_message


def test_salvage_request_keeps_only_what_an_answer_needs() -> None:
    request = salvage_request(OPTIONS_HEAD + b"X-Cut-Off: abc")  # last line cut: ignored
    assert request is not None
    assert [n for n, _ in request.headers] == ["Via", "From", "To", "Call-ID", "CSeq"]
    assert salvage_request(OPTIONS_HEAD.replace(b"OPTIONS", b"ACK")) is None
    assert salvage_request(b"SIP/2.0 200 OK\r\n" + OPTIONS_HEAD.split(b"\r\n", 1)[1]) is None
    assert salvage_request(OPTIONS_HEAD.replace(b"Via: SIP/2.0/TCP", b"Via: SIP/2.0/")) is None
    cut_via = OPTIONS_HEAD.split(b"Via:")[0] + b"Via: SIP/2.0/TCP 127.0.0.1:5999;bra"
    assert salvage_request(cut_via) is None
    many_vias = OPTIONS_HEAD.replace(b"Via: ", b"Via: " + b"SIP/2.0/UDP h;branch=z9hG4bKx, " * 400)
    assert salvage_request(many_vias) is None  # a 513 copying 12 KB of Via would be an amplifier


def test_ten_thousand_header_fields_get_513() -> None:
    data = OPTIONS_HEAD + b"X: y\r\n" * 10_000 + b"Content-Length: 0\r\n\r\n"
    assert len(data) <= MAX_HEADER_BYTES
    with pytest.raises(SipParseError) as err:
        parse_message(data)
    assert err.value.status == 513 and err.value.request is not None
    at_limit = OPTIONS_HEAD + b"X: y\r\n" * (MAX_HEADER_FIELDS - 7) + b"Content-Length: 0\r\n\r\n"
    assert len(parse_message(at_limit).headers) == MAX_HEADER_FIELDS


def test_header_section_too_large_over_udp_is_answered() -> None:
    """Before: 513 without the request, so the sender heard nothing."""
    data = OPTIONS_HEAD + b"X-Big: " + b"z" * MAX_HEADER_BYTES + b"\r\nContent-Length: 0\r\n\r\n"
    ua = UserAgent(local_host="192.0.2.200", local_port=5060)
    ua.receive(data, SOURCE, "udp", 0.0)
    (reply,) = replies(ua)
    assert reply.status == 513 and reply.call_id == "limits-a84b4c76e66710"


def test_a_malformed_header_line_is_answered_400() -> None:
    """Before: a line without a colon made the request unanswerable (silently dropped)."""
    raw = capture("baresip_invite").replace(b"Supported:", b"Supported ;\r\nSupported:")
    ua = UserAgent(local_host="192.0.2.200", local_port=5060)
    ua.receive(raw, SOURCE, "udp", 0.0)
    (reply,) = replies(ua)
    assert reply.status == 400 and reply.cseq == (19283, "INVITE")
    assert ua.next_event() is None


def test_warning_of_a_400_stays_a_quoted_string() -> None:
    raw = capture("baresip_invite").replace(b"Content-Length: ", b'Content-Length: "\\')
    ua = UserAgent(local_host="192.0.2.200", local_port=5060)
    ua.receive(raw, SOURCE, "udp", 0.0)
    (reply,) = replies(ua)
    assert reply.status == 400
    assert re.fullmatch(r'399 \S+ "[^"\\]*"', reply.headers["Warning"]), reply.headers["Warning"]


# --------------------------------------------------------------------------- numbers that are not digits


@pytest.fixture
def ua_errors() -> Iterator[list[logging.LogRecord]]:
    """Records at ERROR or above from ivr.sip while the test runs (log.exception = a traceback)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.ERROR)
    logger = logging.getLogger("ivr.sip")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


NUMERIC_HEADERS = [
    ("Expires", "{}"),
    ("Min-SE", "{}"),
    ("Session-Expires", "{};refresher=uac"),
    ("Max-Forwards", "{}"),
    ("Content-Length", "{}"),
    ("CSeq", "{} INVITE"),
]


@pytest.mark.parametrize("digits", ["²", "١٢٠٠", "𝟗𝟎"])
@pytest.mark.parametrize("name, template", NUMERIC_HEADERS)
def test_non_ascii_digits_in_an_invite_are_answered_not_raised(
    ua_errors: list[logging.LogRecord], name: str, template: str, digits: str
) -> None:
    """Before: ``Expires: ²`` or ``Min-SE: ²`` passed str.isdigit() and float()/int() raised in
    the agent: a traceback in the log and an INVITE left without a final answer."""
    raw = capture("baresip_invite")
    value = template.format(digits).encode()
    pattern = re.compile(rb"(?mi)^" + name.encode() + rb":[^\r\n]*")
    raw = pattern.sub(lambda _m: name.encode() + b": " + value, raw) if pattern.search(raw) else (
        raw.replace(b"Supported:", name.encode() + b": " + value + b"\r\nSupported:")
    )
    ua = UserAgent(local_host="192.0.2.200", local_port=5060)
    ua.receive(raw, SOURCE, "udp", 0.0)
    event = ua.next_event()
    if isinstance(event, IncomingCall):
        ua.answer(event.call_id, capture("sipp_uas_200").split(b"\r\n\r\n", 1)[1], 0.1)
    ua.handle_timer(40.0)
    statuses = [r.status for r in replies(ua)]
    assert ua_errors == []
    assert any(s >= 200 for s in statuses), statuses  # a final answer: a call or a 4xx


def test_non_ascii_digits_in_a_register_reach_the_registrar_as_text() -> None:
    raw = capture("zoiper_register").replace(b"Expires: ", "Expires: ²".encode(), 1)
    ua = UserAgent(local_host="192.0.2.200", local_port=5060)
    ua.receive(raw, SOURCE, "udp", 0.0)
    statuses = [r.status for r in replies(ua)]
    event = ua.next_event()
    assert statuses == [400] or isinstance(event, RequestReceived)


# --------------------------------------------------------------------------- keep-alives over UDP


@pytest.mark.parametrize("data", [b"", b"\r\n", b"\r\n\r\n", b"\r\n" * 100])
def test_udp_keepalive_and_empty_datagram_are_silently_accepted(
    caplog: pytest.LogCaptureFixture, data: bytes
) -> None:
    caplog.set_level(logging.DEBUG, logger="ivr.sip")
    ua = UserAgent(local_host="192.0.2.200", local_port=5060)
    ua.receive(data, SOURCE, "udp", 0.0)
    assert ua.outgoing() == [] and ua.next_event() is None
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []


# --------------------------------------------------------------------------- SipEndpoint over TCP


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))


async def endpoint_with_ua(**kw: Any) -> SipEndpoint:
    ua = UserAgent(local_host="127.0.0.1", local_port=0)
    endpoint = SipEndpoint(ua, **kw)

    def answer_requests() -> None:
        while (event := ua.next_event()) is not None:
            if isinstance(event, RequestReceived):
                ua.respond(event.handle, 405, asyncio.get_running_loop().time())

    endpoint.on_events = answer_requests
    address = await endpoint.start("127.0.0.1", 0)
    ua.local_port = address.port
    return endpoint


async def connect(endpoint: SipEndpoint) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert endpoint.address is not None
    return await asyncio.open_connection("127.0.0.1", endpoint.address.port)


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read()
    except ConnectionResetError:
        return b""


def test_tcp_header_section_without_end_is_answered_513_and_closed() -> None:
    async def body() -> None:
        endpoint = await endpoint_with_ua()
        reader, writer = await connect(endpoint)
        writer.write(OPTIONS_HEAD + b"X-Endless: ")
        try:
            for _ in range(100):  # 100 KB, never a blank line
                writer.write(b"c" * 1024)
                await writer.drain()
        except ConnectionError:
            pass  # closed under our feet once the limit was passed: what we want
        answer = await read_to_eof(reader)  # the answer, then the server's half-close
        assert answer.startswith(b"SIP/2.0 513 "), answer[:80]
        assert b"Call-ID: limits-a84b4c76e66710" in answer
        assert all(c.lingering for c in endpoint.connections.values())  # reading and dropping
        writer.close()
        while endpoint.connections:  # our close ends its linger (no event to await on that side)
            await asyncio.sleep(0.01)
        endpoint.close()

    run(body)


def test_tcp_keepalive_ping_gets_a_pong_and_messages_still_flow() -> None:
    async def body() -> None:
        endpoint = await endpoint_with_ua()
        reader, writer = await connect(endpoint)
        writer.write(b"\r\n\r\n")
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\r\n"
        writer.write(OPTIONS)
        status = await asyncio.wait_for(reader.readline(), 5)
        assert status.startswith(b"SIP/2.0 200 "), status
        writer.close()
        endpoint.close()

    run(body)


def test_tcp_message_trickling_slower_than_the_message_timeout_is_closed() -> None:
    """The idle timeout alone never fires on a sender that keeps sending one byte at a time."""

    async def body() -> None:
        endpoint = await endpoint_with_ua(idle_timeout=60, message_timeout=0.5)
        reader, writer = await connect(endpoint)
        closed = asyncio.ensure_future(read_to_eof(reader))
        loop = asyncio.get_running_loop()
        started = loop.time()
        sent = 0
        while not closed.done() and loop.time() - started < 10:
            try:
                writer.write(OPTIONS_HEAD[sent : sent + 1])
            except ConnectionError:
                break
            sent += 1
            await asyncio.wait([closed], timeout=0.05)  # pacing the trickle, not synchronising
        assert await closed == b""
        assert loop.time() - started < 10 and sent < len(OPTIONS_HEAD)
        writer.close()
        endpoint.close()

    run(body)


def test_tcp_connection_that_never_sends_a_message_is_closed() -> None:
    async def body() -> None:
        endpoint = await endpoint_with_ua(idle_timeout=60, message_timeout=0.3)
        reader, writer = await connect(endpoint)
        assert await asyncio.wait_for(read_to_eof(reader), 10) == b""
        # a connection that delivered its message is governed by the idle timeout instead
        reader, writer2 = await connect(endpoint)
        writer2.write(OPTIONS)
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert answer.startswith(b"SIP/2.0 200 ") and b"Content-Length: 0\r\n" in answer
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 1.0)
        writer.close()
        writer2.close()
        endpoint.close()

    run(body)


def test_tcp_connections_beyond_the_caps_are_refused_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ivr.sip.transport")

    async def ping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        writer.write(OPTIONS)
        try:
            return await asyncio.wait_for(reader.readline(), 5)
        except (ConnectionError, asyncio.IncompleteReadError):
            return b""

    async def body() -> None:
        endpoint = await endpoint_with_ua(max_connections=3, max_connections_per_address=2)
        first = [await connect(endpoint) for _ in range(2)]
        for reader, writer in first:
            assert (await ping(reader, writer)).startswith(b"SIP/2.0 200 ")
        reader, writer = await connect(endpoint)  # a third from 127.0.0.1: refused
        assert await asyncio.wait_for(read_to_eof(reader), 5) == b""
        assert len(endpoint.connections) == 2
        assert any("refused 1 tcp connection(s) from 127.0.0.1" in r.getMessage() for r in caplog.records)
        # once one closes, the address may connect again
        first[0][1].close()
        await first[0][1].wait_closed()
        while len(endpoint.connections) > 1:
            await asyncio.sleep(0.01)  # connection_lost runs on the server's side of the loop
        again = await connect(endpoint)
        assert (await ping(*again)).startswith(b"SIP/2.0 200 ")
        # the total cap holds for every address together
        endpoint.max_connections_per_address = 10
        total = [await connect(endpoint) for _ in range(2)]
        results = [await ping(r, w) for r, w in total]
        assert sorted(bool(x) for x in results) == [False, True]
        for _, w in (first[1], again, *total):
            w.close()
        writer.close()
        endpoint.close()

    run(body)


def test_a_request_uri_of_64_kb_is_answered_414() -> None:
    data = OPTIONS.replace(b"OPTIONS sip:ivr@", b"OPTIONS sip:" + b"u" * 65_000 + b"@", 1)
    ua = UserAgent(local_host="192.0.2.200", local_port=5060)
    ua.receive(data, SOURCE, "udp", 0.0)
    (reply,) = replies(ua)
    assert reply.status == 414 and len(reply.headers["Warning"]) < 200


@pytest.mark.parametrize("bad", [b"Subject: a\x00b\r\n", b"Subject: a\rb\r\n"])
def test_nul_or_bare_cr_outside_what_an_answer_copies_is_answered_400(bad: bytes) -> None:
    """Before: dropped silently, though Via, From, To, Call-ID and CSeq were intact."""
    ua = UserAgent(local_host="192.0.2.200", local_port=5060)
    ua.receive(OPTIONS_HEAD + bad + b"Content-Length: 0\r\n\r\n", SOURCE, "udp", 0.0)
    (reply,) = replies(ua)
    assert reply.status == 400 and reply.call_id == "limits-a84b4c76e66710"
    in_via = OPTIONS_HEAD.replace(b";branch=", b";x=\x00;branch=") + b"Content-Length: 0\r\n\r\n"
    ua.receive(in_via, SOURCE, "udp", 0.0)
    assert ua.outgoing() == []  # the Via itself is broken: nothing to answer along


def test_port_0_tries_another_port_when_tcp_cannot_have_the_udp_one() -> None:
    """The kernel's free UDP port may be some other program's TCP port: a start on port 0
    (every test, ``ivr serve --listen host:0``) must not fail on that collision."""

    async def body() -> None:
        endpoint = SipEndpoint(UserAgent(local_host="127.0.0.1", local_port=0))
        loop = asyncio.get_running_loop()
        real = loop.create_server
        failures = [OSError(98, "address already in use")] * 2

        async def flaky(*args: Any, **kw: Any) -> Any:
            if failures:
                raise failures.pop()
            return await real(*args, **kw)

        loop.create_server = flaky  # type: ignore[method-assign]
        try:
            address = await endpoint.start("127.0.0.1", 0)
        finally:
            loop.create_server = real  # type: ignore[method-assign]
        assert failures == [] and address.port > 0
        endpoint.close()
        with pytest.raises(OSError):  # a fixed port is the operator's choice: no silent change
            failures.append(OSError(98, "address already in use"))
            loop.create_server = flaky  # type: ignore[method-assign]
            await SipEndpoint(UserAgent(local_host="127.0.0.1", local_port=0)).start("127.0.0.1", address.port)
        loop.create_server = real  # type: ignore[method-assign]

    run(body)


def test_register_with_bytes_that_are_not_utf8_is_answered_not_raised() -> None:
    """Before: a phone's Latin-1 User-Agent (or such a byte in its Contact) made the binding's
    sqlite insert raise: a traceback, and the REGISTER never answered."""
    from ivr.sip.auth import authorization_for
    from tests.sip.test_registrar import DESK, NOW, RECEPTION, YEALINK, make

    reg = make()

    def register(cseq: int, user_agent: bytes, contact: bytes, challenge: str = "") -> Any:
        text = YEALINK.replace("{cseq}", str(cseq)).replace("{expires}", "3600")
        auth = authorization_for(challenge, "REGISTER", "sip:192.168.1.10:5060", "201",
                                 RECEPTION.password, "0a4f113b", cseq) if challenge else ""
        text = text.replace("{auth}", f"Authorization: {auth}\n" if auth else "").replace("\n", "\r\n")
        raw = text.encode().replace(b"Yealink SIP-T46S 66.86.0.15", user_agent).replace(
            b"<sip:201@192.168.1.101:5062>", contact)
        message = parse_message(raw)
        assert isinstance(message, Request)
        reply = reg.handle_request(message, DESK, NOW + cseq)
        if reply.status == 401 and not challenge:
            md5 = [v for n, v in reply.headers if n == "WWW-Authenticate" and "algorithm=MD5" in v]
            return register(cseq + 1, user_agent, contact, md5[0])
        return reply

    reply = register(1, b"T\xe9l\xe9phone", b"<sip:201@192.168.1.101:5062>")
    assert reply.status == 200
    assert reg.contacts("201", NOW + 5)[0].user_agent == "T?l?phone"
    reply = register(10, b"Yealink", b"<sip:201\xff@192.168.1.101:5062>")
    assert reply.status == 400 and "UTF-8" in reply.reason


def test_a_udp_destination_named_by_a_host_name_is_resolved_off_the_loop() -> None:
    """Before: sendto() resolved a Contact's host name synchronously; a caller pointing its
    Contact at a slow DNS server stalled the event loop (every call's audio) per request."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        endpoint = SipEndpoint(UserAgent(local_host="127.0.0.1", local_port=0))
        await endpoint.start("127.0.0.1", 0)
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        port = peer.getsockname()[1]
        release, called = asyncio.Event(), asyncio.Event()
        asked: list[str] = []

        async def slow_dns(host: str, port: int, **kw: Any) -> Any:
            asked.append(host)
            called.set()
            await release.wait()  # a DNS server that takes its time
            return [(socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", port))]

        loop.getaddrinfo = slow_dns  # type: ignore[assignment,method-assign]
        endpoint.send(b"OPTIONS over a name", ("phone.example.com", port), "udp")
        await asyncio.wait_for(called.wait(), 5)  # asked from a task: the loop kept turning
        assert asked == ["phone.example.com"]
        release.set()
        data = await asyncio.wait_for(loop.sock_recv(peer, 100), 5)
        assert data == b"OPTIONS over a name"
        for _ in range(MAX_RESOLVING + 3):  # a flood of names: bounded, the excess dropped
            endpoint.send(b"x", ("other.example.com", port), "udp")
        assert endpoint._resolving == MAX_RESOLVING
        peer.close()
        endpoint.close()

    run(body)


@pytest.mark.parametrize("call_id", [b"caf\xc3\xa9-1", b"\xd6bc", b"a\x7fb", b"a\x01b"])
def test_a_call_id_must_be_visible_ascii(call_id: bytes) -> None:
    """25.1: a Call-ID is words of visible ASCII; it names files and journal rows."""
    ua = UserAgent(local_host="192.0.2.200", local_port=5060)
    raw = capture("baresip_invite").replace(b"Call-ID: 6c8d2e4f1a3b5c7d", b"Call-ID: " + call_id)
    ua.receive(raw, SOURCE, "udp", 0.0)
    assert [r.status for r in replies(ua)] == [400] and ua.next_event() is None
