"""Each extension's own forwarding choices, which its owner changes in the console: the follow-me numbers.

They live in ``forwarding.json`` in the data folder, an object by extension number such as
``{"204": {"follow_me": ["+41797001204"]}}``; a missing file, or an extension missing from it,
means the deployment file's ``follow_me`` applies.  An entry with ``"follow_me": []`` turns
follow-me off for that extension.  A transfer reads the file when it starts
(:meth:`ivr.runtime.transfer.TransferSession`), so a change applies to the next call without a
reload; the console (:mod:`ivr.web`) writes it atomically under a lock.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ivr.runtime.atomic import locked, write_text_atomically
from ivr.storage.adminfile import read_json_file

FORWARDING_FILE = "forwarding.json"
# An extension (digits) or an E.164 / national number: what a transfer can ring.
NUMBER = re.compile(r"\+?[0-9]{2,20}")
MAX_FOLLOW_ME = 5


class ForwardingError(Exception):
    """A forwarding file or a number that cannot be used; the message says which."""


def forwarding_path(data: Path) -> Path:
    return Path(data) / FORWARDING_FILE


def read_forwarding(data: Path) -> dict[str, tuple[str, ...]]:
    """Follow-me numbers by extension, as set in the console ({} without the file)."""
    path = forwarding_path(data)
    raw = read_json_file(path, "forwarding", ForwardingError, default={})
    if not isinstance(raw, dict):
        raise ForwardingError(f'{path}: expected an object like {{"204": {{"follow_me": ["+41797001204"]}}}}')
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
        current = {k: {"follow_me": list(v)} for k, v in read_forwarding(data).items()}
        if numbers is None:
            current.pop(extension, None)
        else:
            current[extension] = {"follow_me": list(numbers)}
        write_text_atomically(forwarding_path(data), json.dumps(current, indent=2, sort_keys=True) + "\n")

