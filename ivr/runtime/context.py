"""What the helpers of one call (prompt queue, speech listener) see of the call they serve.

:class:`CallContext` is the part of :class:`~ivr.runtime.call.CallRunner` they all use: its
Call-ID, whether it has ended, its media session, the services of its generation and its log.
Each helper widens it with the one or two things only it needs, so none imports the runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ivr.runtime.ports import CallMedia
    from ivr.runtime.services import Services


class CallContext(Protocol):
    """The call a helper serves (the call runner)."""

    call_id: str
    ended: bool
    media: CallMedia | None
    services: Services

    def log(self, **fields: Any) -> None:
        """A record of the call's log (and journal)."""
