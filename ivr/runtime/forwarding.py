"""Each extension's own forwarding choices, which its owner changes in the console: the follow-me numbers.

They live in ``forwarding.json`` in the data folder, an object by extension number such as
``{"204": {"follow_me": ["+41797001204"]}}``; a missing file, or an extension missing from it,
means the deployment file's ``follow_me`` applies.  An entry with ``"follow_me": []`` turns
follow-me off for that extension.  Follow-me switched off from the phone (``*50``, ivr.runtime.featurecodes) keeps the numbers
aside: ``{"204": {"follow_me": [], "paused": ["+41797001204"]}}``; switched on again (``*51``)
they come back (:func:`pause_follow_me`).  A transfer reads the file when it starts
(:meth:`ivr.runtime.transfer.TransferSession`), so a change applies to the next call without a
reload; the console (:mod:`ivr.web`) writes it atomically under a lock.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ivr.runtime.atomic import locked, write_text_atomically

FORWARDING_FILE = "forwarding.json"
# An extension (digits) or an E.164 / national number: what a transfer can ring.
NUMBER = re.compile(r"\+?[0-9]{2,20}")
MAX_FOLLOW_ME = 5


class ForwardingError(Exception):
    """A forwarding file or a number that cannot be used; the message says which."""


def forwarding_path(data: Path) -> Path:
    return Path(data) / FORWARDING_FILE


def _read_entries(data: Path) -> dict[str, Any]:
    path = forwarding_path(data)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ForwardingError(f"{path}: cannot read forwarding: {exc}") from None
    if not isinstance(raw, dict):
        raise ForwardingError(f'{path}: expected an object like {{"204": {{"follow_me": ["+41797001204"]}}}}')
    return raw


def read_forwarding(data: Path) -> dict[str, tuple[str, ...]]:
    """Follow-me numbers by extension, as set in the console ({} without the file)."""
    path = forwarding_path(data)
    raw = _read_entries(data)
    out: dict[str, tuple[str, ...]] = {}
    for extension, entry in raw.items():
        numbers = entry.get("follow_me") if isinstance(entry, dict) else None
        if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
            raise ForwardingError(f"{path}: {extension}: follow_me must be a list of numbers")
        out[str(extension)] = tuple(numbers)
    return out


def check_follow_me(numbers: list[str]) -> tuple[str, ...]:
    """The numbers, cleaned of spaces, or :class:`ForwardingError` naming the first bad one."""
    if len(numbers) > MAX_FOLLOW_ME:
        raise ForwardingError(f"at most {MAX_FOLLOW_ME} follow-me numbers, got {len(numbers)}")
    cleaned = []
    for number in numbers:
        compact = re.sub(r"[\s./-]", "", number)
        if not NUMBER.fullmatch(compact):
            raise ForwardingError(f"not a phone number: {number!r} (digits, optionally starting with +)")
        cleaned.append(compact)
    return tuple(cleaned)


def write_follow_me(data: Path, extension: str, numbers: tuple[str, ...] | None) -> None:
    """Set an extension's follow-me numbers (``None``: back to the deployment file's)."""
    data = Path(data)
    data.mkdir(parents=True, exist_ok=True)
    with locked(forwarding_path(data)):
        read_forwarding(data)  # a damaged file raises: never overwrite what we can't read
        current = _read_entries(data)
        if numbers is None:
            current.pop(extension, None)
        else:
            current[extension] = {"follow_me": list(numbers)}
        _write_entries(data, current)


def _write_entries(data: Path, entries: dict[str, Any]) -> None:
    write_text_atomically(forwarding_path(data), json.dumps(entries, indent=2, sort_keys=True) + "\n")


def pause_follow_me(data: Path, extension: str, paused: bool, configured: tuple[str, ...]) -> tuple[str, ...]:
    """Follow-me off (``paused``) or on again from the phone; the numbers that ring from now on.

    Off keeps the numbers in use (the console's, else ``configured``, the deployment file's)
    aside under ``paused``; on brings them back (without a ``paused`` list: the deployment
    file's again).  () when there is nothing to ring."""
    data = Path(data)
    data.mkdir(parents=True, exist_ok=True)
    with locked(forwarding_path(data)):
        chosen = read_forwarding(data)
        entries = _read_entries(data)
        entry = entries.get(extension)
        if paused:
            numbers = chosen.get(extension, configured)
            if numbers:
                entries[extension] = {"follow_me": [], "paused": list(numbers)}
            else:
                entries[extension] = {"follow_me": []}
            _write_entries(data, entries)
            return ()
        kept = entry.get("paused") if isinstance(entry, dict) else None
        if isinstance(kept, list) and kept and all(isinstance(n, str) for n in kept):
            entries[extension] = {"follow_me": kept}
        elif extension in chosen and not chosen[extension]:
            entries.pop(extension)  # switched off without numbers of its own: the deployment's again
        _write_entries(data, entries)
        return read_forwarding(data).get(extension, configured)

