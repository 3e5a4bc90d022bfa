"""Scripted UDP/TCP peers against ``ivr serve``: INVITE retransmissions, malformed input, hold on the wire.

A phone that does not hear the 100 Trying or the 200 OK retransmits its INVITE with the same
branch and CSeq (RFC 3261 section 17.1.1.2).  ivr must absorb the copies into the same call
(17.2.3): resend its latest response, never start a second call.  sipp cannot script this
(it answers each repeated 200 by repeating its last request), so the peer here is a plain UDP
socket writing real SIP bytes.
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import pytest

pytestmark = [pytest.mark.peer, pytest.mark.slow]

IvrServer = Any  # conftest.IvrServer
CRLF = b"\r\n"


def invite(port: int, call_id: str) -> bytes:
    sdp = (
        "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-15\r\na=sendrecv\r\n"
    )
    return (
        f"INVITE sip:+41435435570@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-retrans-{call_id};rport\r\n"
        f"From: <sip:+41791112233@127.0.0.1>;tag=peer1\r\n"
        f"To: <sip:+41435435570@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:peer@127.0.0.1:{port}>\r\nMax-Forwards: 70\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


def in_dialog(method: str, cseq: int, port: int, call_id: str, to_tag: str) -> bytes:
    branch = "z9hG4bK-retrans-ack" if method == "ACK" else f"z9hG4bK-{method.lower()}-{call_id}"
    return (
        f"{method} sip:ivr@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport\r\n"
        f"From: <sip:+41791112233@127.0.0.1>;tag=peer1\r\n"
        f"To: <sip:+41435435570@127.0.0.1>;tag={to_tag}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def receive_until(sock: socket.socket, predicate: Any, timeout: float = 15.0) -> list[bytes]:
    """Every datagram up to and including the first one matching ``predicate``."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65535)
        except TimeoutError:
            firsts = [g.split(CRLF, 1)[0] for g in got]
            raise AssertionError(f"no matching message; got {firsts}") from None
        got.append(data)
        if predicate(data):
            return got


def is_200_invite(data: bytes) -> bool:
    return data.startswith(b"SIP/2.0 200") and b"CSeq: 1 INVITE" in data


def to_tag(data: bytes) -> str:
    m = re.search(rb"^To:.*;tag=([^;\r\n]+)", data, re.M)
    assert m, data
    return m.group(1).decode()


def test_invite_copies_before_and_after_the_200_are_one_call(menu_server: IvrServer) -> None:
    call_id = f"retrans-{time.time_ns()}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        dest = (menu_server.host, menu_server.port)
        message = invite(port, call_id)
        sock.sendto(message, dest)
        sock.sendto(message, dest)  # a copy right behind the original: the 100 seemed lost
        first = receive_until(sock, is_200_invite)
        assert sum(1 for m in first if m.startswith(b"SIP/2.0 100")) >= 1
        ok = first[-1]
        sock.sendto(message, dest)  # the 200 "was lost": the phone retransmits its INVITE
        again = receive_until(sock, is_200_invite)[-1]
        assert to_tag(again) == to_tag(ok)  # the same dialog, the same answer
        assert again.split(b"\r\n\r\n", 1)[1] == ok.split(b"\r\n\r\n", 1)[1]  # the same SDP
        sock.sendto(in_dialog("ACK", 1, port, call_id, to_tag(ok)), dest)
        menu_server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "ack")
        sock.sendto(in_dialog("BYE", 2, port, call_id, to_tag(ok)), dest)
        receive_until(sock, lambda d: d.startswith(b"SIP/2.0 200") and b"CSeq: 2 BYE" in d)
    menu_server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "ended")
    records = menu_server.call_records(call_id)
    assert [r["event"] for r in records if r.get("event") == "incoming"] == ["incoming"]
    assert len([r for r in records if r.get("action") == "answer"]) == 1


def options(port: int, branch: str) -> bytes:
    return (
        f"OPTIONS sip:ivr@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{branch}\r\n"
        f"From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:ivr@127.0.0.1>\r\nCall-ID: {branch}\r\n"
        f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_garbage_on_udp_and_tcp_never_stops_the_server(menu_server: IvrServer) -> None:
    dest = (menu_server.host, menu_server.port)
    garbage = [
        b"",
        b"\x00\xff" * 700,
        b"INVITE sip:x SIP/2.0\r\n\r\n",  # no Via, no Call-ID
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKnothing\r\n\r\n",  # a stray response
        b"OPTIONS sip:ivr@127.0.0.1 SIP/2.0\r\nContent-Length: 99999\r\n\r\n",
        "INVITE sip:\u00e9@x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n".encode(),
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        for data in garbage:
            sock.sendto(data, dest)
        with socket.create_connection(dest, timeout=10) as stream:
            stream.sendall(b"OPTIONS sip:ivr@127.0.0.1 SIP/2.0\r\nContent-Length: lots\r\n\r\n")
            stream.settimeout(10)
            while stream.recv(4096):  # the server answers what it can, then closes the broken stream
                pass
        sock.sendto(options(sock.getsockname()[1], "alive"), dest)
        answer = receive_until(sock, lambda d: b"Call-ID: alive" in d)[-1]
    assert answer.startswith(b"SIP/2.0 200")
    assert menu_server.proc.poll() is None


def offer_invite(port: int, call_id: str, rtp_port: int, *, direction: str, cseq: int, tag: str = "") -> bytes:
    sdp = (
        f"v=0\r\no=peer 1 {cseq} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={direction}\r\n"
    )
    to = "<sip:+41435435570@127.0.0.1>" + (f";tag={tag}" if tag else "")
    return (
        f"INVITE sip:+41435435570@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-hold-{cseq}-{call_id};rport\r\n"
        f"From: <sip:+41791112233@127.0.0.1>;tag=peer1\r\nTo: {to}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n"
        f"Contact: <sip:peer@127.0.0.1:{port}>\r\nMax-Forwards: 70\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


def rtp_packets(sock: socket.socket, seconds: float) -> int:
    """RTP packets arriving within ``seconds``."""
    count, deadline = 0, time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            sock.recv(2048)
        except TimeoutError:
            break
        count += 1
    return count


def test_hold_stops_ivrs_rtp_on_the_wire_and_resume_restarts_it(menu_server: IvrServer) -> None:
    call_id = f"hold-{time.time_ns()}"
    dest = (menu_server.host, menu_server.port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sip, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtp:
        sip.bind(("127.0.0.1", 0))
        rtp.bind(("127.0.0.1", 0))
        port, rtp_port = sip.getsockname()[1], rtp.getsockname()[1]

        def exchange(direction: str, cseq: int, tag: str = "") -> bytes:
            sip.sendto(offer_invite(port, call_id, rtp_port, direction=direction, cseq=cseq, tag=tag), dest)
            ok = receive_until(sip, lambda d: d.startswith(b"SIP/2.0 200") and f"CSeq: {cseq} INVITE".encode() in d)[-1]
            sip.sendto(in_dialog("ACK", cseq, port, call_id, to_tag(ok)), dest)
            return ok

        ok = exchange("sendrecv", 1)
        tag = to_tag(ok)
        assert rtp_packets(rtp, 1.0) >= 10  # prompt audio, 50 packets a second (a loaded CI box stalls)

        held = exchange("sendonly", 2, tag)
        assert b"a=recvonly" in held
        rtp_packets(rtp, 0.1)  # what was already in flight
        assert rtp_packets(rtp, 0.6) == 0  # on hold: ivr sends nothing

        resumed = exchange("sendrecv", 3, tag)
        assert b"a=sendrecv" in resumed
        assert rtp_packets(rtp, 1.0) >= 10  # and the audio is back

        sip.sendto(in_dialog("BYE", 4, port, call_id, tag), dest)
        receive_until(sip, lambda d: d.startswith(b"SIP/2.0 200") and b"CSeq: 4 BYE" in d)
    menu_server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "ended")
