"""The narrow interfaces through which the call runtime reaches the outside world.

A call's runtime (the runner, transfers, REFER) gives its SIP commands to a
:class:`CallSignalling`: ``ivr serve`` fills it with the user agent
(:class:`~ivr.sip.ua.UserAgent`, which sends real messages), the simulator with
:class:`~ivr.runtime.edges.SimulatedNetwork` (the caller and the far-end phones of a
scenario).  Both hand back the same events (:mod:`ivr.sip.events`).  A call's audio goes
through a :class:`CallMedia`: :class:`~ivr.media.session.MediaSession` (RTP) in ``ivr serve``,
:class:`~ivr.runtime.edges.SimulatedMedia` in the simulator; ``Services.open_media`` makes
them.  The wall clock is ``Services.wall``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from ivr.media.clip import Clip
    from ivr.media.session import SharedPlayer
    from ivr.sip.auth import DigestClient
    from ivr.sip.refer import Replaces
    from ivr.sip.replaces import Replaced


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

    def notify_refer(self, call_id: str, status: int, now: float, *, reason: str | None = None) -> bool:
        """A NOTIFY with a sipfrag of ``status`` about a REFER we accepted (RFC 3515 section 2.4.5)."""

    def replaced(self, replaces: Replaces) -> Replaced:
        """Which call's dialog ``replaces`` names (RFC 3891); ``ReplacesError`` with the status else."""


class CallMedia(Protocol):
    """One call leg's audio: prompts out, keys and the caller's audio in (MediaSession's shape).

    A bridge (ivr.runtime.bridge) and a conference room (ivr.runtime.rooms) need nothing more:
    they take the leg's decoded audio through ``on_audio`` and ``play`` a never-ending player
    whose ``frame(payload_type)`` is asked once per media-clock tick.
    """

    local_port: int
    direction: str  # our direction after the last offer/answer ("sendrecv", "recvonly" ...)
    remote: tuple[str, int] | None
    on_prompt_done: Callable[[int], None]  # every prompt that ends, played out or stopped
    on_dtmf: Callable[[str], None]
    on_audio: Callable[[npt.NDArray[np.int16]], None] | None  # None: nobody listens, nothing decoded
    on_timeout: Callable[[], None]

    @property
    def closed(self) -> bool:
        """The leg is over."""

    @property
    def stats(self) -> dict[str, Any]:
        """Packets sent, received and lost, jitter: for the call's last log record."""

    @property
    def inband_dtmf(self) -> bool:
        """Whether keys are detected in the received audio."""

    def configure(self, *, remote: tuple[str, int] | None, payload_type: int, dtmf_pt: int | None,
                  direction: str, ptime: int = 20, signalling_host: str | None = None,
                  remote_rtcp: tuple[str, int] | None = None) -> None:
        """Apply a negotiated SDP (again on each re-INVITE)."""

    def enable_inband_dtmf(self, on: bool) -> None:
        """Detect keys in the received audio (no telephone-event negotiated)."""

    def play(self, source: Clip | SharedPlayer, *, prompt_id: int, barge_in: bool = True) -> None:
        """Queue a clip (played once) or a shared player (until stopped) after what is playing."""

    def stop_prompts(self, *, only_barge_in: bool = True) -> None:
        """Drop queued prompts (all, or the interruptible ones); each is reported done."""

    def receive_info_key(self, digit: str) -> None:
        """A key the signalling carried (SIP INFO)."""

    def send_dtmf(self, digit: str) -> None:
        """Send a key to this leg's phone."""

    def close(self) -> None:
        """End the leg's audio and free its ports."""
