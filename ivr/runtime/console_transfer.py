"""A live call transferred from the console to an extension (blind transfer by an operator).

:func:`transfer_call` stops what the call is doing -- its flow step, its prompts, a transfer
ringing or bridged -- and continues the call in the built-in ``console_transfer.ivr`` with the
extension as ``{called}``: ``transfer to {called} for 30s`` (ringback, the extension's phones
and follow-me, the same bridge as any transfer), hanging up when nobody answers.  The new
steps run in the call's own :class:`~ivr.runtime.call.CallRunner`, as a call forwarded to
voicemail continues in ``forward_voicemail.ivr``, so the journal, the events and the flow
tests see one ordinary call.

Only the deployment's extensions are reachable this way (as with a phone's REFER): the
console never sends a call out through a trunk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ivr.dsl.compiler import Program
from ivr.dsl.loader import load_flow

PLAN = Path(__file__).with_name("console_transfer.ivr")
_LOADED: dict[str, Program] = {}


class ConsoleTransferError(Exception):
    """A transfer the console cannot make; ``status`` is the HTTP status it answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def transfer_plan() -> tuple[Program, str]:
    """The program and state a transferred call continues in (compiled once per process)."""
    program = _LOADED.get("plan")
    if program is None:
        program = _LOADED["plan"] = load_flow([PLAN])
    assert program.internal_entry is not None
    return program, program.internal_entry


def transfer_call(runner: Any, target: str) -> dict[str, Any]:
    """Transfer the running call ``runner`` to extension ``target`` (on the server's loop)."""
    if runner.services.config.extension(target) is None:
        raise ConsoleTransferError(403, f"{target} is not an extension: the console transfers to extensions only")
    if runner.ended:
        raise ConsoleTransferError(409, f"call {runner.call_id} has ended")
    if not runner.answered:
        runner.answer_now()
    runner.log(event="console_transfer", target=target)
    runner.continue_in(*transfer_plan(), called=target)
    return {"call_id": runner.call_id, "to": target, "transferring": True}
