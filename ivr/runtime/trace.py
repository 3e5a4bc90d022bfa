"""A call's trace in plain words, read from the runtime's own call log.

The call runner logs every action it carries out (``action=<kind>`` with the action's
fields) and every event it hands to the flow or a dialogue (``event=<kind>``, ``to=flow`` or
``to=sub``).  This module turns those records back into the flow's actions and events
(:func:`action_from_record`, :func:`event_from_record`) and into the lines ``ivr simulate``
prints and flow tests match (:func:`trace_line`): ``say: Welcome to Acme.``, ``ring: 201,
202 (25s), then 204 (15s) (group sales)``, ``answered by 202``, ``outcome: voicemail 200``.

Because the simulator's trace and a live server's JSON log are the same records, the same
functions read both: that is how a flow test run in virtual time is compared with the same
call on ``ivr serve``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from ivr.dsl import events as ev

T = TypeVar("T")


@dataclass(frozen=True)
class TraceLine:
    """One line of a call's trace: an action, a caller event, a result or the outcome."""

    at: float  # seconds since the call started
    kind: str  # action kind ("say", "transfer" ...), "caller", "timer", "result", "outcome", "note"
    text: str  # the plain-words line
    data: Mapping[str, Any] = field(default_factory=dict)  # the JSON object

    def __str__(self) -> str:
        return self.text


def _subclasses(base: type[T]) -> list[type[T]]:
    found: list[type[T]] = []
    for sub in base.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


ACTIONS: dict[str, type[ev.Action]] = {cls.kind: cls for cls in _subclasses(ev.Action)}
EVENTS: dict[str, type[ev.Event]] = {cls.kind: cls for cls in _subclasses(ev.Event)}
# Events the network or a dialogue reports back to the flow: shown as "result" lines.
RESULTS = (ev.TransferResult, ev.BridgeEnded, ev.DirectoryResult, ev.ActionDone, ev.RecordingDone,
           ev.ConferenceJoined)


def jsonable(value: Any) -> Any:
    """Tuples (a ring plan) as lists, everything else as it is."""
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    return value


def _tupled(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


def _build(cls: type[Any], record: Mapping[str, Any]) -> Any:
    args = {f.name: _tupled(record[f.name]) for f in fields(cls) if f.name in record}
    try:
        return cls(**args)
    except TypeError:  # a record of another version of ivr: not one of ours
        return None


def action_from_record(record: Mapping[str, Any]) -> ev.Action | None:
    """The action a call-log record (``action=...``) stands for, or None."""
    cls = ACTIONS.get(str(record.get("action", "")))
    return None if cls is None else _build(cls, record)


def event_from_record(record: Mapping[str, Any]) -> ev.Event | None:
    """The event handed to the flow or a dialogue (``event=...`` with ``to``), or None."""
    if "to" not in record:
        return None
    cls = EVENTS.get(str(record.get("event", "")))
    return None if cls is None else _build(cls, record)


def trace_line(record: Mapping[str, Any], at: float) -> TraceLine | None:
    """The trace line for one call-log record, or None when it is not one the trace shows."""
    stamp = round(at, 3)
    if record.get("action") == ev.StorageWork.kind:
        return None  # the runtime's own business (a dialogue waits for the database), not the caller's
    action = action_from_record(record)
    if action is not None:
        return TraceLine(at, action.kind, describe_action(action), {**action_json(action), "t": stamp})
    event = event_from_record(record)
    if isinstance(event, RESULTS):
        data = {"event": event.kind, **{f.name: jsonable(getattr(event, f.name)) for f in fields(event)}}
        return TraceLine(at, "result", describe_result(event), {**data, "t": stamp})
    if isinstance(event, ev.TimerFired):
        return TraceLine(at, "timer", "timeout", {"event": "timer", "t": stamp})
    return _call_line(record, stamp)


# What happens during a bridged call by the staff side's codes or a flow's `record`
# (ivr.runtime.incall, ivr.runtime.callrecording): event -> its line, filled from the record.
IN_CALL_LINES: dict[str, str] = {
    "feature_code": "feature code {code} by {by}",
    "call_recording": "call recorded into mailbox {mailbox}",
    "call_recording_refused": "recording refused: {by} may not record",
    "call_recording_no_mailbox": "recording refused: {extension} has no mailbox",
    "call_recording_stopped": "call recording stopped ({reason})",
    "call_recording_stored": "call recording stored in mailbox {mailbox}",
    "incall_say": "say to {side}: {text}",
    "conference_adhoc": "conference {room}: {by} adds {adding}",
    "conference_added": "added to the call: {target}",
    "conference_add_failed": "not added to the call: {target} ({outcome})",
    "conference_left": "left the conference: {side}",
}


def _call_line(record: Mapping[str, Any], stamp: float) -> TraceLine | None:
    """Lines about the call itself: a phone's user (the dial plan), a refusal, a forwarding,
    what happens during a bridged call."""
    in_call = IN_CALL_LINES.get(str(record.get("event", "")))
    if in_call is not None:
        data = {k: v for k, v in record.items() if isinstance(v, str | int | float)}
        try:
            return TraceLine(stamp, "note", in_call.format(**data), {**data, "t": stamp})
        except KeyError:  # a record of another version of ivr
            return None
    if record.get("event") == "phone_caller":
        extension = record.get("extension", "")
        return TraceLine(stamp, "note", f"phone: {extension} (dial plan)", {"event": "phone_caller",
                                                                            "extension": extension, "t": stamp})
    if record.get("event") == "forward_voicemail":
        mailbox = record.get("mailbox", "")
        return TraceLine(stamp, "note", f"forwarded to voicemail {mailbox}", {"event": "forward_voicemail",
                                                                              "mailbox": mailbox, "t": stamp})
    if record.get("action") == "reject":
        status, reason = record.get("status", ""), record.get("reason", "")
        return TraceLine(stamp, "reject", f"rejected: {status} {reason}", {"action": "reject", "status": status,
                                                                          "reason": reason, "t": stamp})
    return None


def action_json(action: ev.Action) -> dict[str, Any]:
    return {"action": action.kind, **{f.name: jsonable(getattr(action, f.name)) for f in fields(action)}}


def describe_action(action: ev.Action) -> str:
    """The plain-words line for an action: what the caller hears or what the system does."""
    if isinstance(action, ev.Say):
        return f"say: {action.text}"
    if isinstance(action, ev.Play):
        return f"play: {action.path}"
    if isinstance(action, ev.EnterStep):
        return f"step: {action.step}"
    if isinstance(action, ev.Tone):
        return f"tone: {action.frequency:g} Hz ({fmt_seconds(action.duration)})"
    if isinstance(action, ev.Listen):
        options = [" | ".join(action.phrases)] if action.phrases else []
        options += [f"names in {action.directory}"] if action.directory else []
        options += ["anything"] if action.any_speech else []
        speech = f", speech ({' | '.join(options)})" if options else ""
        return f"listen: keys{speech}"
    if isinstance(action, ev.Transfer):
        return describe_transfer(action)
    if isinstance(action, ev.Directory):
        return f"directory: {action.name}" + (f" (heard {action.heard})" if action.heard else "")
    if isinstance(action, ev.Voicemail):
        notes = [] if action.greeting == "unavailable" else [f"{action.greeting} greeting"]
        notes += [] if action.temporary else ["no temporary"]
        extra = f" ({', '.join(notes)})" if notes else ""
        return f"voicemail: {action.mailbox}{extra}" + (" with review" if action.review else "")
    if isinstance(action, ev.VoicemailAccess):
        return f"voicemail access: {action.mailbox}" if action.mailbox else "voicemail access"
    if isinstance(action, ev.Record):
        return f"record: into {action.variable} (max {fmt_seconds(action.max_length)})"
    if isinstance(action, ev.StartRecording):
        return f"recording: {action.path}"
    if isinstance(action, ev.StopRecording):
        return "recording stopped"
    if isinstance(action, ev.Hold):
        music = action.music or "default music"
        return f"hold: {music}" + (f" ({fmt_seconds(action.duration)})" if action.duration else "")
    if isinstance(action, ev.StopPrompts):
        return "prompts stopped (barge-in)"
    if isinstance(action, ev.Conference | ev.JoinConference | ev.TalkInConference):
        return describe_conference(action)
    if isinstance(action, ev.HangupCall):
        return "hangup" if action.reason == "normal" else f"hangup: {action.reason}"
    return f"{action.kind}"


def describe_transfer(action: ev.Transfer) -> str:
    """``transfer: 300 (20s)`` for one target; ``ring: 201, 202 (25s), then 204 (15s) (group sales)``."""
    steps = [f"{', '.join(targets)} ({fmt_seconds(timeout)})" for targets, timeout in action.plan]
    single = len(action.plan) == 1 and len(action.plan[0][0]) == 1 and not action.group
    verb = "ring on call" if action.pikett else "transfer" if single else "ring"
    group = f" (group {action.group})" if action.group else ""
    recorded = " (recorded)" if action.record else ""
    return f"{verb}: " + ", then ".join(steps) + (" by refer" if action.refer else "") + group + recorded


def describe_conference(action: ev.Conference | ev.JoinConference | ev.TalkInConference) -> str:
    """``conference: weekly (pin, max 6, music moh/, tones, announce count)``, ``join conference: weekly``."""
    if isinstance(action, ev.TalkInConference):
        return f"talking in conference: {action.room}"
    if isinstance(action, ev.JoinConference):
        return f"join conference: {action.room}" + (" as moderator" if action.moderator else "")
    options = [
        *(["pin"] if action.pin else []),
        *(["moderator pin"] if action.moderator_pin else []),
        *([f"max {action.max_participants}"] if action.max_participants else []),
        *([f"music {action.music}"] if action.music else []),
        *(["tones"] if action.tones else []),
        *(["announce count"] if action.announce else []),
    ]
    return f"conference: {action.room}" + (f" ({', '.join(options)})" if options else "")


def describe_result(event: ev.Event) -> str:
    """The plain-words line for what the network reports back (a transfer's outcome, a choice)."""
    if isinstance(event, ev.TransferResult):
        if event.outcome == "answered":
            return f"answered by {event.target}" if event.target else "answered"
        return event.outcome.replace("_", " ")
    if isinstance(event, ev.BridgeEnded):
        return "call ended by the other side"
    if isinstance(event, ev.DirectoryResult):
        if event.outcome == "selected":
            who = f"{event.name} ({event.extension})" if event.name else event.extension
            return f"selected {who}"
        return event.outcome.replace("_", " ")
    if isinstance(event, ev.ActionDone):
        return f"{event.action.replace('_', ' ')} {event.result}".strip()
    if isinstance(event, ev.RecordingDone):
        return f"recorded {fmt_seconds(event.duration)}"
    if isinstance(event, ev.ConferenceJoined):
        if event.full:
            return f"conference {event.room} is full"
        people = "alone" if not event.others else f"with {event.others} other" + ("s" if event.others > 1 else "")
        return f"joined conference {event.room} {people}" + (f", music {event.music}" if event.music else "")
    return event.kind


def describe_outcome(outcome: ev.Outcome | None) -> str:
    if outcome is None:
        return "outcome: unfinished"
    detail = f" {outcome.detail}" if outcome.detail else ""
    step = f" (in {outcome.step})" if outcome.step else ""
    return f"outcome: {outcome.result}{detail}{step}"


def fmt_seconds(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.1f}s"
