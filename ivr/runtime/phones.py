"""Calls from the deployment's own phones: who is calling, where the call starts, what it may reach.

A PBX takes two kinds of INVITE: callers from outside (a trunk, anyone on the
network), who run the inbound flow, and the company's own phones, which dial
extensions and external numbers.  This module owns telling them apart and the
policy for the second kind; the call itself is run by the same
:class:`~ivr.runtime.call.CallRunner` as any other.

* :func:`identify`: an INVITE whose From names an extension (its number or its
  digest user name), or that carries credentials, is a phone's call and must
  prove it with Digest: 407 with a challenge first, then the registrar's own
  check (:meth:`ivr.sip.registrar.Registrar.authenticate`, the one
  implementation REGISTER uses, with its failed-login throttle).  Anyone else
  is a caller from outside.
* The dial plan is a flow: the deployment's ``number internal -> STEP`` when a
  flow has one, else the built-in ``dialplan.ivr`` beside this module
  (extensions ring, allowed users call out).  Same language, checks,
  simulation and tests as every flow.
* :func:`trunk_permission`: the rule a transfer to an external number obeys,
  whatever the flow says.  A phone's call goes out only when its user has
  ``may_call_out`` and the number matches the user's ``allow`` patterns (when
  it has some); a caller from outside reaches a trunk only for a number the
  deployment itself names (written in a flow, an extension's follow-me or
  forwarding), never for one taken from the call (``transfer to {called}``).
* :class:`Lines`: which extensions are on a call, ringing or talking, for
  "busy when busy" (an extension without ``call_waiting`` is busy while it
  talks) and for the lamps of the phones.
* :func:`forward_target`: an extension's own forwarding (always, busy, no
  answer, unreachable).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ivr.config import Config, Extension
from ivr.dsl import ast
from ivr.dsl.compiler import Program, TransferOp
from ivr.dsl.events import Transfer
from ivr.dsl.loader import load_flow
from ivr.sip.events import IncomingCall
from ivr.sip.registrar import Registrar
from ivr.sip.trunk import is_external, pattern_allows

DIAL_PLAN = Path(__file__).with_name("dialplan.ivr")

# A call from a phone that ends without being answered tells the phone why, by the last
# transfer outcome (RFC 3261 section 21): the phone shows "busy" or "not reachable".
UNANSWERED_STATUS = {"busy": (486, "Busy Here"), "no_answer": (480, "No Answer"),
                     "unavailable": (480, "Temporarily Unavailable"), "failed": (403, "Forbidden")}


@dataclass(frozen=True)
class PhoneCaller:
    """The authenticated user of a phone's call: its extension."""

    extension: Extension


@dataclass(frozen=True)
class Refusal:
    """Answer the INVITE with ``status`` (a 407 carries the challenge in ``headers``)."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


def identify(config: Config, registrar: Registrar, call: IncomingCall, now: float) -> PhoneCaller | Refusal | None:
    """Who places ``call``: a phone's authenticated user, a refusal (challenge), or None (from outside)."""
    request = call.request
    credentials = [*request.headers.get_all("Proxy-Authorization"), *request.headers.get_all("Authorization")]
    claimed = registrar.account(call.caller) if call.caller else None
    if claimed is None and not credentials:
        return None  # a caller from outside: the inbound flow
    verdict = registrar.authenticate(request.method, request.uri, credentials, call.source, now, proxy=True)
    if verdict.account is None:
        return Refusal(403 if verdict.drop else verdict.status, verdict.reason, tuple(verdict.headers))
    if claimed is not None and claimed.number != verdict.account.number:
        who = verdict.account.username or verdict.account.number
        return Refusal(403, f"Forbidden ({who} may not call as {call.caller})")
    extension = config.extension(verdict.account.number)
    if extension is None:  # accounts are built from the extensions: cannot happen after a reload either
        return Refusal(403, "Forbidden (no such extension)")
    return PhoneCaller(extension)


# --------------------------------------------------------------------------- the dial plan


_DEFAULT: dict[str, Program] = {}


def dial_plan(program: Program) -> tuple[Program, str]:
    """The program and state a phone's call starts in: the flow's ``number internal``, else the
    built-in plan (compiled once per process)."""
    entry = program.internal_entry
    if entry is not None:
        return program, entry
    default = _DEFAULT.get("plan")
    if default is None:
        default = _DEFAULT["plan"] = load_flow([DIAL_PLAN])
    assert default.internal_entry is not None
    return default, default.internal_entry


# --------------------------------------------------------------------------- calling out


def literal_numbers(program: Program, config: Config) -> frozenset[str]:
    """External numbers the deployment itself names: written in a flow's transfers and groups,
    or in an extension's follow-me and forwarding."""
    numbers: set[str] = set()
    for state in program.states.values():
        op = state.op
        if isinstance(op, TransferOp):
            numbers |= {v.text for targets, _ in op.plan for v in targets if isinstance(v, ast.Num | ast.Str)}
    for ext in config.extensions:
        numbers |= set(ext.follow_me) | {ext.pikett}
        numbers |= {ext.forward_always, ext.forward_busy, ext.forward_no_answer, ext.forward_unreachable}
    return frozenset(n for n in numbers if n and is_external(n))


def owners_numbers(config: Config, chosen: Mapping[str, tuple[str, ...]]) -> frozenset[str]:
    """Follow-me and on-call numbers the extensions' owners chose themselves (in the console:
    ivr.runtime.forwarding.Choices.numbers): only those of an owner who may call out, within their ``allow``
    patterns, so a user cannot send calls out through the trunk that they may not dial."""
    numbers: set[str] = set()
    for extension, picked in chosen.items():
        ext = config.extension(extension)
        if ext is not None:
            numbers |= {n for n in picked if is_external(n) and not _out_refusal(ext, n)}
    return frozenset(numbers)


def _out_refusal(ext: Extension, number: str) -> str:
    if not ext.may_call_out:
        return f"extension {ext.number} may not call out (may_call_out = false)"
    if ext.allow and not any(pattern_allows(p, number) for p in ext.allow):
        return f"{number} is not in extension {ext.number}'s allow patterns"
    return ""


def trunk_permission(
    caller: PhoneCaller | None,
    number: str,
    dialled: str,
    named: frozenset[str],
    config: Config,
    chosen: Mapping[str, tuple[str, ...]] | None = None,
) -> str:
    """Why ``number`` may not go out through a trunk on this call ("" when it may).

    ``dialled`` is what the caller dialled: a phone's user dialling a number needs
    ``may_call_out`` (and one of its ``allow`` patterns, when it has some).  Any other
    number must be one the deployment names itself (``named``: :func:`literal_numbers`, which
    :attr:`Services.literal_numbers` computes once per reload) or an owner who may call out
    chose as their follow-me (``chosen``): a caller
    from outside never chooses where a trunk call goes.  The trunks' own ``allow`` patterns
    apply after this, for everybody.
    """
    if caller is not None and number == dialled:
        return _out_refusal(caller.extension, number)
    if number in named or number in owners_numbers(config, chosen or {}):
        return ""
    return f"{number} was not dialled by an authenticated phone and is named nowhere in the deployment"


def presented_number(caller: PhoneCaller | None) -> str:
    """The number a callee outside sees: the user's ``caller_id``, "" for the trunk's (the company's)."""
    return caller.extension.caller_id if caller is not None else ""


# --------------------------------------------------------------------------- forwarding

Situation = Literal["always", "busy", "no_answer", "unreachable"]
_FORWARD_KEY = {"always": "forward_always", "busy": "forward_busy", "no_answer": "forward_no_answer",
                "unreachable": "forward_unreachable"}
# The transfer outcome that triggers each forwarding.
OUTCOME_SITUATION: dict[str, Situation] = {"busy": "busy", "no_answer": "no_answer", "unavailable": "unreachable"}


def forward_target(config: Config, extension: str, situation: Situation) -> str:
    """Where ``extension`` forwards its calls in ``situation`` ("" when it does not)."""
    ext = config.extension(extension)
    return str(getattr(ext, _FORWARD_KEY[situation])) if ext is not None else ""


def single_target(action: Transfer) -> bool:
    """A transfer to one extension (not a group or a ring plan): its forwarding applies."""
    return not action.group and len(action.plan) == 1 and len(action.plan[0][0]) == 1


def voicemail_forward(config: Config, target: str, outcome: str) -> tuple[str, str] | None:
    """(mailbox, greeting) when ``target``'s forwarding sends this outcome to its voicemail."""
    situation = OUTCOME_SITUATION.get(outcome)
    ext = config.extension(target)
    if situation is None or ext is None or forward_target(config, target, situation) != "voicemail":
        return None
    return (ext.mailbox or ext.number), ("busy" if situation == "busy" else "unavailable")


FORWARD_VOICEMAIL = Path(__file__).with_name("forward_voicemail.ivr")


def voicemail_plan(greeting: str) -> tuple[Program, str]:
    """The program a call forwarded to voicemail continues in (with the mailbox as ``{called}``)."""
    plan = _DEFAULT.get("voicemail")
    if plan is None:
        plan = _DEFAULT["voicemail"] = load_flow([FORWARD_VOICEMAIL])
    return plan, greeting


# Actions that need the caller's phone answered first (everything that sends it audio);
# a phone's call rings until then, so a busy or absent callee is a 486 or 480, not a prompt.
QUIET_ACTIONS = frozenset({"step", "transfer", "hangup", "stop_prompts", "listen"})


def needs_answer(kind: str) -> bool:
    return kind not in QUIET_ACTIONS


def forward_chain(config: Config, extension: str, limit: int = 5) -> str:
    """Follow ``forward_always`` from ``extension`` (loops and long chains stop where they repeat)."""
    seen = [extension]
    while len(seen) <= limit:
        target = forward_target(config, seen[-1], "always")
        if not target or target in seen:
            break
        seen.append(target)
        if target == "voicemail" or config.extension(target) is None:
            break
    return seen[-1]


# --------------------------------------------------------------------------- line state

LineState = Literal["early", "confirmed"]


@dataclass
class Lines:
    """Which extensions are on a call: extension -> {call key: "early" (ringing) or "confirmed"}.

    Shared by every generation of a server's services; ``watchers`` hear every change
    (extension, its new state: "terminated", "early" or "confirmed"), ``progress_watchers``
    an answer from a ringing phone that leaves the state as it was (its early dialog's tag).
    """

    calls: dict[str, dict[str, LineState]] = field(default_factory=dict)
    watchers: list[Callable[[str, str], None]] = field(default_factory=list)
    progress_watchers: list[Callable[[str], None]] = field(default_factory=list)

    def set(self, extension: str, key: str, state: LineState) -> None:
        before = self.state(extension)
        self.calls.setdefault(extension, {})[key] = state
        self._changed(extension, before)

    def clear(self, extension: str, key: str) -> None:
        calls = self.calls.get(extension)
        if not calls or key not in calls:
            return
        before = self.state(extension)
        del calls[key]
        if not calls:
            del self.calls[extension]
        self._changed(extension, before)

    def state(self, extension: str) -> str:
        """"confirmed" when any call of it is up, else "early" when one rings, else "terminated"."""
        states = set(self.calls.get(extension, {}).values())
        return "confirmed" if "confirmed" in states else "early" if states else "terminated"

    def progressed(self, extension: str) -> None:
        if extension in self.calls:
            for watcher in list(self.progress_watchers):
                watcher(extension)

    def talking(self, extension: str) -> bool:
        return self.state(extension) == "confirmed"

    def _changed(self, extension: str, before: str) -> None:
        after = self.state(extension)
        if after != before:
            for watcher in list(self.watchers):
                watcher(extension, after)


def busy(config: Config, lines: Lines, extension: str) -> bool:
    """An extension on a call, without call waiting, takes no second call."""
    ext = config.extension(extension)
    return ext is not None and not ext.call_waiting and lines.talking(extension)

