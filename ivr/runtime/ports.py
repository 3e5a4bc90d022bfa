"""The narrow interfaces through which the call runtime reaches the outside world.

A call's runtime (the runner, transfers, REFER) gives its SIP commands to a
:class:`CallSignalling`: ``ivr serve`` fills it with the user agent
(:class:`~ivr.sip.ua.UserAgent`, which sends real messages), the simulator with
:class:`~ivr.runtime.edges.SimulatedNetwork` (the caller and the far-end phones of a
scenario).  Both hand back the same events (:mod:`ivr.sip.events`).  The other edges are
fields of :class:`~ivr.runtime.services.Services`: the wall clock (``wall``) and the media
sessions (``open_media``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ivr.sip.auth import DigestClient


class CallSignalling(Protocol):
    """The SIP commands of a call's runtime (the names and arguments of the user agent's)."""

    def ringing(self, call_id: str, now: float) -> None:
        """180 Ringing to the caller."""

    def answer(self, call_id: str, sdp: bytes, now: float) -> None:
        """200 OK with our SDP to the caller."""

    def reject(self, call_id: str, status: int, now: float, reason: str | None = None, *,
               headers: Iterable[tuple[str, str]] = ()) -> None:
        """A final error response to the caller's INVITE."""

    def hangup(self, call_id: str, now: float) -> None:
        """BYE (or CANCEL before an answer) on the call ``call_id``."""

    def accept_reoffer(self, call_id: str, sdp: bytes, now: float) -> None:
        """200 OK to a re-INVITE or UPDATE."""

    def reject_reoffer(self, call_id: str, status: int, now: float) -> None:
        """An error response to a re-INVITE or UPDATE."""

    def invite(self, target_uri: str, sdp: bytes, now: float, *, from_uri: str,
               headers: Iterable[tuple[str, str]] = (), destination: tuple[str, int],
               transport: str = "udp", auth: DigestClient | None = None) -> str:
        """Place an outgoing call (a transfer leg); returns its Call-ID."""

    def refer(self, call_id: str, refer_to: str, now: float, *, referred_by: str | None = None) -> bool:
        """Ask the caller's phone to call ``refer_to`` itself (RFC 3515)."""
