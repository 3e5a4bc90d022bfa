"""Each extension's own forwarding choices, which its owner changes in the console: the follow-me
numbers and the on-call (Pikett) number.

They live in ``forwarding.json`` in the data folder, an object by extension number such as
``{"204": {"follow_me": ["+41797001204"], "pikett": "+41797654321"}}``; a missing file, or a key
missing from an extension's entry, means the deployment file's ``follow_me`` or ``pikett``
applies.  ``"follow_me": []`` turns follow-me off for that extension, ``"pikett": ""`` takes it
off call.  Follow-me switched off from the phone (``*50``, ivr.runtime.featurecodes) keeps the
numbers aside: ``{"204": {"follow_me": [], "paused": ["+41797001204"]}}``; switched on again
(``*51``) they come back (:func:`pause_follow_me`).  A transfer reads the file when it starts (:meth:`ivr.runtime.transfer.TransferSession`),
so a change applies to the next call without a reload; the console (:mod:`ivr.web`) writes it
atomically under a lock.

The Pikett number is what ``transfer to pikett GROUP`` rings for this extension when it is a
member of the group: the group's ring plan with each member's Pikett number in place of their
phone, members without one left out (:func:`pikett_plan`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ivr.runtime.atomic import locked, write_text_atomically
from ivr.storage.adminfile import read_json_file

FORWARDING_FILE = "forwarding.json"
# An extension (digits) or an E.164 / national number: what a transfer can ring.
NUMBER = re.compile(r"\+?[0-9]{2,20}")
MAX_FOLLOW_ME = 5
Plan = tuple[tuple[tuple[str, ...], float], ...]  # steps of targets rung together, each for its timeout


class ForwardingError(Exception):
    """A forwarding file or a number that cannot be used; the message says which."""


def forwarding_path(data: Path) -> Path:
    return Path(data) / FORWARDING_FILE


def _read_raw(data: Path) -> dict[str, dict[str, object]]:
    path = forwarding_path(data)
    raw = read_json_file(path, "forwarding", ForwardingError, default={})
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ForwardingError(f'{path}: expected an object like {{"204": {{"follow_me": ["+41797001204"]}}}}')
    return {str(k): dict(v) for k, v in raw.items()}


@dataclass(frozen=True)
class Choices:
    """What the extensions' owners chose in the console, from one parse of the file: follow-me
    numbers and on-call numbers by extension, and every number each owner chose (``numbers``:
    both together, what :func:`ivr.runtime.phones.owners_numbers` lets out through a trunk)."""

    follow_me: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    pikett: Mapping[str, str] = field(default_factory=dict)
    numbers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def read_choices(data: Path) -> Choices:
    """The owners' choices (all empty without the file), or :class:`ForwardingError` naming the bad entry."""
    raw = _read_raw(data)
    follow_me = _follow_me(raw, forwarding_path(data))
    pikett = _pikett(raw, forwarding_path(data))
    return Choices(follow_me, pikett, chosen_numbers(follow_me, pikett))


def read_forwarding(data: Path) -> dict[str, tuple[str, ...]]:
    """Follow-me numbers by extension, as set in the console ({} without the file)."""
    return _follow_me(_read_raw(data), forwarding_path(data))


def read_pikett(data: Path) -> dict[str, str]:
    """On-call numbers by extension, as set in the console ("": off call; {} without the file)."""
    return _pikett(_read_raw(data), forwarding_path(data))


def _follow_me(raw: dict[str, dict[str, object]], path: Path) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for extension, entry in raw.items():
        if "follow_me" not in entry:
            continue
        numbers = entry["follow_me"]
        if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
            raise ForwardingError(f"{path}: {extension}: follow_me must be a list of numbers")
        out[extension] = tuple(numbers)
    return out


def _pikett(raw: dict[str, dict[str, object]], path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for extension, entry in raw.items():
        if "pikett" not in entry:
            continue
        if not isinstance(entry["pikett"], str):
            raise ForwardingError(f"{path}: {extension}: pikett must be a number or \"\"")
        out[extension] = entry["pikett"]
    return out


def chosen_numbers(follow_me: Mapping[str, tuple[str, ...]], pikett: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Every number an extension's owner chose in the console: follow-me and on-call."""
    return {ext: (*follow_me.get(ext, ()), *filter(None, (pikett.get(ext, ""),))) for ext in follow_me.keys() | pikett}


def check_number(number: str) -> str:
    """``number`` cleaned of spaces, dots, slashes and dashes, or :class:`ForwardingError`."""
    compact = re.sub(r"[\s./-]", "", number)
    if not NUMBER.fullmatch(compact):
        raise ForwardingError(f"not a phone number: {number!r} (digits, optionally starting with +)")
    return compact


def check_follow_me(numbers: list[str]) -> tuple[str, ...]:
    """The numbers, cleaned of spaces, or :class:`ForwardingError` naming the first bad one."""
    if len(numbers) > MAX_FOLLOW_ME:
        raise ForwardingError(f"at most {MAX_FOLLOW_ME} follow-me numbers, got {len(numbers)}")
    return tuple(check_number(n) for n in numbers)


def _update(data: Path, extension: str, key: str, value: object | None) -> None:
    """Set (or, with None, remove) one key of an extension's entry, under the file's lock."""
    data = Path(data)
    data.mkdir(parents=True, exist_ok=True)
    with locked(forwarding_path(data)):
        current = _read_raw(data)
        entry = current.pop(extension, {})
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
        if entry:
            current[extension] = entry
        write_text_atomically(forwarding_path(data), json.dumps(current, indent=2, sort_keys=True) + "\n")


def write_follow_me(data: Path, extension: str, numbers: tuple[str, ...] | None) -> None:
    """Set an extension's follow-me numbers (``None``: back to the deployment file's)."""
    _update(data, extension, "follow_me", list(numbers) if numbers is not None else None)


def pause_follow_me(data: Path, extension: str, paused: bool, configured: tuple[str, ...]) -> tuple[str, ...]:
    """Follow-me off (``paused``) or on again from the phone; the numbers that ring from now on.

    Off keeps the numbers in use (the console's, else ``configured``, the deployment file's)
    aside under ``paused``; on brings them back (without a ``paused`` list: the deployment
    file's again).  () when there is nothing to ring.  Other keys of the entry (``pikett``) stay."""
    data = Path(data)
    data.mkdir(parents=True, exist_ok=True)
    with locked(forwarding_path(data)):
        chosen = read_forwarding(data)
        entries = _read_raw(data)
        entry = entries.pop(extension, {})
        kept = entry.pop("paused", None)
        if paused:
            numbers = chosen.get(extension, configured)
            entry["follow_me"] = []
            if numbers:
                entry["paused"] = list(numbers)
        elif isinstance(kept, list) and kept and all(isinstance(n, str) for n in kept):
            entry["follow_me"] = kept
        elif extension in chosen and not chosen[extension]:
            entry.pop("follow_me", None)  # switched off without numbers of its own: the deployment's again
        if entry:
            entries[extension] = entry
        write_text_atomically(forwarding_path(data), json.dumps(entries, indent=2, sort_keys=True) + "\n")
    return () if paused else read_forwarding(data).get(extension, configured)


def write_pikett(data: Path, extension: str, number: str | None) -> None:
    """Set an extension's on-call number (``""``: off call; ``None``: back to the deployment file's)."""
    _update(data, extension, "pikett", number)


def pikett_plan(plan: Plan, pikett: Callable[[str], str]) -> Plan:
    """A group's ring plan with each member's on-call number in place of the member; members
    without one are left out (a plan nobody is on call in rings nobody: ``unavailable``)."""
    out = []
    for targets, timeout in plan:
        numbers = tuple(dict.fromkeys(n for n in (pikett(t) for t in targets) if n))
        if numbers:
            out.append((numbers, timeout))
    return tuple(out)
