"""One call's SDP offer/answer state (RFC 3264), as the call runner keeps it.

:class:`OfferAnswer` remembers what we last sent (``local_sdp``, its ``o=`` session id and
version) and the negotiated :class:`~ivr.sip.sdp.Answer`, and turns each exchange of a call
into the body to send:

* the caller's offer in the INVITE: our answer (:meth:`answer_offer`);
* no offer in the INVITE (late offer): our offer in the 200, their answer in the ACK
  (:meth:`offer`, then :meth:`take_answer`);
* a re-offer (re-INVITE or UPDATE with SDP, a hold or a move): a new answer whose ``o=``
  version goes up only when the answer changes (RFC 3264 section 8, :meth:`reanswer`);
* a refresh without SDP: the body to repeat (:meth:`refresh_body`).

Sans-IO: it knows no sockets and no runner; errors are the SDP layer's own
(:class:`~ivr.sip.sdp.SdpError`, :class:`~ivr.sip.sdp.NegotiationError`, with their status).
"""

from __future__ import annotations

import random

from ivr.sip import sdp


class OfferAnswer:
    """The SDP side of one call (see the module docstring)."""

    def __init__(self, host: str, session_id: int | None = None) -> None:
        self.host = host  # the address our SDP names for media
        self.session_id = session_id if session_id is not None else random.randint(1, 2**31)
        self.version = 1
        self.local_sdp = b""  # the body we sent last
        self.answer: sdp.Answer | None = None

    def answer_offer(self, offer: sdp.SessionDescription, port: int) -> sdp.Answer:
        """Our answer to the INVITE's offer, media on ``port``."""
        answer = self._negotiate(offer, port, self.version)
        self._took(answer)
        return answer

    def offer(self, port: int) -> bytes:
        """Our offer for an INVITE that had none (sent in the 200)."""
        self.local_sdp = bytes(sdp.make_offer(self.host, port, session_id=self.session_id, version=self.version))
        return self.local_sdp

    def take_answer(self, body: bytes) -> sdp.Answer:
        """The caller's answer (in the ACK, or to an offer-less re-INVITE) to our last offer."""
        answer = sdp.parse_answer(sdp.SessionDescription.parse(self.local_sdp), body)
        self.answer = answer
        return answer

    def reanswer(self, offer: sdp.SessionDescription, port: int) -> sdp.Answer:
        """Answer a re-offer; the ``o=`` version goes up only when our answer changes."""
        answer = self._negotiate(offer, port, self.version)
        if bytes(answer.sdp) != self.local_sdp:
            self.version += 1
            answer = self._negotiate(offer, port, self.version)
        self._took(answer)
        return answer

    def refresh_body(self, method: str) -> bytes:
        """A refresh without SDP: an UPDATE gets none back (RFC 4028 section 9), a re-INVITE our offer."""
        return b"" if method == "UPDATE" else self.local_sdp

    def _negotiate(self, offer: sdp.SessionDescription, port: int, version: int) -> sdp.Answer:
        return sdp.negotiate(offer, local_ip=self.host, local_port=port, session_id=self.session_id, version=version)

    def _took(self, answer: sdp.Answer) -> None:
        self.answer = answer
        self.local_sdp = bytes(answer.sdp)
