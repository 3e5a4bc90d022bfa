"""No call to the outside world unless a flow says so, against a live ``ivr serve``.

The deployment has a trunk that would carry ``+41*`` and an extension 201 with a
password and a static contact: both lead to UDP sockets of this test, so anything
ivr sends them is seen.  A caller without credentials

* calls extension 201 by its number, and sends a REFER to an external number in
  that call: the INVITE only runs the flow (tests/peers/flows/menu.ivr, which
  transfers nowhere) and the REFER is answered 405 (a caller cannot transfer itself;
  no flow construct allows it);
* calls ``+41900123456`` presenting itself as extension 201: the INVITE is challenged
  (407, ivr.runtime.phones) and nothing runs.

Neither the trunk nor the extension's phone hears a single datagram.  (Authenticated
phones calling out: tests/peers/test_phones.py.)
"""

from __future__ import annotations

import re
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed"),
]

IvrServer = Any
WAIT = 15.0
SDP = (
    "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


class Listener:
    """A UDP socket standing for the carrier or a phone: records whatever reaches it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def heard(self) -> list[bytes]:
        self.sock.setblocking(False)
        out = []
        while True:
            try:
                out.append(self.sock.recv(65536))
            except BlockingIOError:
                return out


class Caller:
    """A minimal UAC on one UDP socket: INVITE, ACK, an in-dialog request, BYE."""

    def __init__(self, server: IvrServer) -> None:
        self.server = (server.host, server.port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # where ivr sends its RTP
        self.media.bind(("127.0.0.1", 0))
        self.n = 0
        self.to = ""
        self.target = ""

    def _request(self, method: str, uri: str, call_id: str, cseq: int, frm: str, to: str,
                 extra: str = "", body: str = "", branch: str | None = None) -> str:
        self.n += 1
        branch = branch or f"z9hG4bKnco{self.n}{call_id[-6:]}"
        head = (
            f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: {frm}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:caller@127.0.0.1:{self.port}>\r\n{extra}"
        )
        if body:
            head += "Content-Type: application/sdp\r\n"
        self.sock.sendto(f"{head}Content-Length: {len(body)}\r\n\r\n{body}".encode(), self.server)
        return branch

    def wait(self, match: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + WAIT
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                text = self.sock.recv(65536).decode("utf-8", "replace")
            except TimeoutError:
                break
            if match(text):
                return text
        raise AssertionError(f"no {what} from ivr within {WAIT}s")

    def call(self, uri: str, call_id: str, frm: str) -> None:
        """INVITE ``uri`` and ACK its 200."""
        to = f"<{uri}>"
        body = SDP.format(port=self.media.getsockname()[1])
        self._request("INVITE", uri, call_id, 1, frm, to, body=body)
        ok = self.wait(lambda t: t.startswith("SIP/2.0 200 ") and call_id in t and "INVITE" in t, "200 to the INVITE")
        self.to = re.search(r"(?mi)^(?:To|t):\s*(.*?)\r$", ok).group(1)  # type: ignore[union-attr]
        contact = re.search(r"(?mi)^(?:Contact|m):[^<]*<([^>]+)>", ok)
        self.target = contact.group(1) if contact else uri
        self._request("ACK", self.target, call_id, 1, frm, self.to)

    def in_dialog(self, method: str, call_id: str, cseq: int, frm: str, extra: str = "") -> int:
        branch = self._request(method, self.target, call_id, cseq, frm, self.to, extra=extra)
        reply = self.wait(lambda t: t.startswith("SIP/2.0 ") and branch in t and not t.startswith("SIP/2.0 1"),
                          f"final answer to {method}")
        return int(reply.split(" ", 2)[1])

    def close(self) -> None:
        self.sock.close()
        self.media.close()


@pytest.fixture
def deployment(ivr_server: Callable[..., IvrServer]) -> Iterator[tuple[IvrServer, Listener, Listener]]:
    carrier, phone = Listener(), Listener()
    server = ivr_server(
        "menu.ivr",
        sections=(
            f'[[extensions]]\nnumber = "201"\nusername = "201"\npassword = "desk-201-secret"\n'
            f'contacts = ["sip:201@127.0.0.1:{phone.port}"]\n\n'
            f'[[trunks]]\nname = "carrier"\nhost = "127.0.0.1"\nport = {carrier.port}\nallow = ["+41*", "0*"]\n'
        ),
        extra=("--drain-timeout", "1s"),
    )
    yield server, carrier, phone
    carrier.sock.close()
    phone.sock.close()


def test_a_call_claiming_an_extension_without_credentials_is_challenged(
    deployment: tuple[IvrServer, Listener, Listener],
) -> None:
    server, carrier, phone = deployment
    caller = Caller(server)
    call_id = f"no-call-out-claim-{caller.port}"
    try:
        uri = "sip:+41900123456@127.0.0.1"
        caller._request("INVITE", uri, call_id, 1, "<sip:201@127.0.0.1>;tag=ext201", f"<{uri}>",
                        body=SDP.format(port=caller.media.getsockname()[1]))
        reply = caller.wait(lambda t: t.startswith("SIP/2.0 ") and call_id in t and not t.startswith("SIP/2.0 1"),
                            "final answer to the INVITE")
        assert reply.startswith("SIP/2.0 407 ") and "Proxy-Authenticate: Digest " in reply
        server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "ended", what="the call's end")
    finally:
        caller.close()
    actions = {r.get("action") for r in server.call_records(call_id)}
    assert not actions & {"step", "transfer", "dial", "refer"}, actions
    assert carrier.heard() == [] and phone.heard() == []


@pytest.mark.parametrize(
    "uri, frm",
    [
        ("sip:201@127.0.0.1", "<sip:+41791112233@127.0.0.1>;tag=outside"),  # the extension itself
    ],
)
def test_an_unauthenticated_call_only_runs_the_flow_and_cannot_refer_out(
    deployment: tuple[IvrServer, Listener, Listener], uri: str, frm: str
) -> None:
    server, carrier, phone = deployment
    caller = Caller(server)
    call_id = f"no-call-out-{caller.port}"
    try:
        caller.call(uri, call_id, frm)
        step = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("action") == "step",
                               what="the flow's first step")
        assert step["step"] == "welcome"
        refer = "Refer-To: <sip:+41900123456@127.0.0.1>\r\nReferred-By: <sip:201@127.0.0.1>\r\n"
        assert caller.in_dialog("REFER", call_id, 2, frm, extra=refer) == 405
        assert caller.in_dialog("BYE", call_id, 3, frm) == 200
        server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "ended", what="the call's end")
    finally:
        caller.close()
    actions = {r.get("action") for r in server.call_records(call_id)}
    assert not actions & {"transfer", "dial", "refer"}, actions
    assert carrier.heard() == [] and phone.heard() == []
