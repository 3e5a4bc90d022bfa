"""A scripted desk phone on one UDP socket, for what baresip 1.0.0 cannot do (attended transfer,
holding one of two calls): it answers ivr's INVITE, places its own calls with digest
credentials, sends re-INVITEs, REFERs and BYEs in a dialog, and answers ivr's NOTIFYs and
BYEs with 200.  Every message it receives is kept (``messages``) for the test's checks.

It speaks real SIP over UDP to a real ``ivr serve``; it sends no RTP (ivr only sends to it).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ivr.sip.auth import authorization_for

WAIT = 20.0
SDP = (
    "v=0\r\no=phone 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
)


def header(message: str, name: str) -> str:
    found = re.search(rf"(?mi)^{name}:\s*(.*?)\r$", message)
    return found.group(1) if found else ""


def tag_of(value: str) -> str:
    found = re.search(r";\s*tag=([^;>\s]+)", value)
    return found.group(1) if found else ""


def status_of(message: str) -> int:
    return int(message.split(" ", 2)[1]) if message.startswith("SIP/2.0 ") else 0


@dataclass
class Dialog:
    """One call as the phone sees it."""

    call_id: str
    local: str  # our From/To header value, with our tag
    remote: str  # theirs, with their tag
    target: str  # their Contact URI
    cseq: int = 1
    version: int = 1  # of our SDP

    @property
    def local_tag(self) -> str:
        return tag_of(self.local)

    @property
    def remote_tag(self) -> str:
        return tag_of(self.remote)


@dataclass
class ScriptedPhone:
    """Extension ``user`` with ``password``, talking to the ivr at ``server``."""

    server: tuple[str, int]
    user: str
    password: str
    sock: socket.socket = field(init=False)
    port: int = field(init=False)
    media_port: int = field(init=False)
    messages: list[str] = field(default_factory=list)
    _pending: list[str] = field(default_factory=list)
    _n: int = 0

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # where ivr sends its RTP
        self._media.bind(("127.0.0.1", 0))
        self.media_port = self._media.getsockname()[1]

    # ------------------------------------------------------------------ receiving

    def wait(self, match: Callable[[str], bool], what: str, timeout: float = WAIT) -> str:
        """The next message that ``match``es (answering NOTIFY and BYE with 200 on the way)."""
        for i, text in enumerate(self._pending):
            if match(text):
                return self._pending.pop(i)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                text = self.sock.recv(65536).decode("utf-8", "replace")
            except TimeoutError:
                break
            self.messages.append(text)
            if text.startswith(("NOTIFY ", "BYE ")):
                self.reply(text, 200)
            if match(text):
                return text
            self._pending.append(text)
        raise AssertionError(f"{self.user}: no {what} within {timeout}s; got {[m.split(chr(13))[0] for m in self.messages]}")

    def reply(self, request: str, status: int, reason: str = "OK", body: str = "", to_tag: str = "") -> None:
        to = header(request, "To") + (f";tag={to_tag}" if to_tag and "tag=" not in header(request, "To") else "")
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {v}" for v in re.findall(r"(?mi)^Via:\s*(.*?)\r$", request)]
        lines += [f"From: {header(request, 'From')}", f"To: {to}", f"Call-ID: {header(request, 'Call-ID')}",
                  f"CSeq: {header(request, 'CSeq')}", f"Contact: <sip:{self.user}@127.0.0.1:{self.port}>"]
        if body:
            lines.append("Content-Type: application/sdp")
        self.sock.sendto(("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode(), self.server)

    # ------------------------------------------------------------------ sending

    def _send(self, method: str, uri: str, dialog: Dialog, cseq: int, extra: str = "", body: str = "",
              to: str | None = None, content_type: str = "application/sdp") -> str:
        self._n += 1
        branch = f"z9hG4bK-{self.user}-{self._n}-{self.port}"
        text = (f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: {dialog.local}\r\nTo: {dialog.remote if to is None else to}\r\n"
                f"Call-ID: {dialog.call_id}\r\nCSeq: {cseq} {method}\r\n"
                f"Contact: <sip:{self.user}@127.0.0.1:{self.port}>\r\n{extra}")
        if body:
            text += f"Content-Type: {content_type}\r\n"
        self.sock.sendto(f"{text}Content-Length: {len(body)}\r\n\r\n{body}".encode(), self.server)
        return branch

    def _final(self, branch: str, what: str, timeout: float = WAIT) -> str:
        return self.wait(lambda t: t.startswith("SIP/2.0 ") and branch in t and not t.startswith("SIP/2.0 1"),
                         what, timeout)

    def sdp(self, dialog: Dialog | None, direction: str = "sendrecv") -> str:
        version = 1
        if dialog is not None:
            dialog.version += 1
            version = dialog.version
        return SDP.format(port=self.media_port, version=version, direction=direction)

    # ------------------------------------------------------------------ calls

    def ring(self) -> tuple[str, str]:
        """Answer the next INVITE from ivr with 180 Ringing: (the INVITE, our tag)."""
        invite = self.wait(lambda t: t.startswith("INVITE "), "INVITE")
        tag = f"{self.user}r{self._n}"
        self._n += 1
        self.reply(invite, 180, "Ringing", to_tag=tag)
        return invite, tag

    def answer(self) -> Dialog:
        """Answer the next INVITE from ivr with 200 and our SDP; the dialog once ACKed."""
        invite = self.wait(lambda t: t.startswith("INVITE "), "INVITE")
        tag = f"{self.user}a{self._n}"
        self._n += 1
        self.reply(invite, 200, body=self.sdp(None), to_tag=tag)
        call_id = header(invite, "Call-ID")
        self.wait(lambda t: t.startswith("ACK ") and call_id in t, "ACK")
        contact = re.search(r"<([^>]+)>", header(invite, "Contact"))
        assert contact is not None, invite
        return Dialog(call_id, f"{header(invite, 'To')};tag={tag}", header(invite, "From"), contact.group(1))

    def call(self, number: str, extra: str = "") -> Dialog | int:
        """INVITE ``number`` at ivr, answering its 407 with our credentials: the dialog once
        answered (and ACKed), else the final status."""
        uri = f"sip:{number}@{self.server[0]}:{self.server[1]}"
        self._n += 1
        dialog = Dialog(f"{self.user}-call-{self._n}-{self.port}",
                        f"<sip:{self.user}@{self.server[0]}>;tag={self.user}t{self._n}", f"<{uri}>", uri)
        body = self.sdp(None)
        final = self._final(self._send("INVITE", uri, dialog, 1, extra, body), "answer to the INVITE")
        if status_of(final) == 407:
            self._ack(uri, dialog, 1, header(final, "To"))
            challenge = header(final, "Proxy-Authenticate")
            auth = authorization_for(challenge, "INVITE", uri, self.user, self.password, "c1", 1)
            dialog.cseq = 2
            final = self._final(self._send("INVITE", uri, dialog, 2, f"{extra}Proxy-Authorization: {auth}\r\n", body),
                                "answer to the INVITE", timeout=40)
        if status_of(final) != 200:
            self._ack(uri, dialog, dialog.cseq, header(final, "To"))
            return status_of(final)
        dialog.remote = header(final, "To")
        contact = re.search(r"<([^>]+)>", header(final, "Contact"))
        dialog.target = contact.group(1) if contact else uri
        self._ack(dialog.target, dialog, dialog.cseq, dialog.remote)
        return dialog

    def _ack(self, uri: str, dialog: Dialog, cseq: int, to: str) -> None:
        self._send("ACK", uri, dialog, cseq, to=to)

    def in_dialog(self, dialog: Dialog, method: str, extra: str = "", body: str = "") -> str:
        """A request in ``dialog``; its final response."""
        dialog.cseq += 1
        final = self._final(self._send(method, dialog.target, dialog, dialog.cseq, extra, body), f"answer to {method}")
        if method == "INVITE":
            self._ack(dialog.target, dialog, dialog.cseq, dialog.remote)
        return final

    def keys(self, dialog: Dialog, keys: str) -> None:
        """Press ``keys`` by SIP INFO (``application/dtmf-relay``), each answered 200."""
        for key in keys:
            dialog.cseq += 1
            branch = self._send("INFO", dialog.target, dialog, dialog.cseq, body=f"Signal={key}\r\nDuration=160\r\n",
                                content_type="application/dtmf-relay")
            assert status_of(self._final(branch, "answer to INFO")) == 200

    def hold(self, dialog: Dialog, held: bool = True) -> int:
        """Hold (``sendonly``) or resume (``sendrecv``) ``dialog`` with a re-INVITE."""
        return status_of(self.in_dialog(dialog, "INVITE", body=self.sdp(dialog, "sendonly" if held else "sendrecv")))

    def sipfrags(self, dialog: Dialog) -> list[int]:
        """The sipfrag statuses of the refer NOTIFYs received in ``dialog`` so far."""
        return [int(m.split("\r\n\r\n", 1)[1].split()[1]) for m in self.messages
                if m.startswith("NOTIFY ") and dialog.call_id in m and "\r\n\r\nSIP/2.0 " in m]

    def close(self) -> None:
        self.sock.close()
        self._media.close()
