"""Keys sent by SIP INFO: the ``application/dtmf-relay`` and ``application/dtmf`` bodies.

Neither type has an RFC; this module reads them the way phones and PBXs write
them.  ``application/dtmf-relay`` (Cisco, Yealink, Asterisk) carries a
``Signal=5`` line and an optional ``Duration=160`` line (milliseconds);
``application/dtmf`` carries the key alone.  Phones mix the two up, so either
body is read under either type, and a key may also be written as its RFC 4733
event code (10 and 11 for * and #, 12-15 for A-D).  Content-type parameters and
case are ignored.

The user agent answers an INFO whose DTMF body names no key with 400
(:attr:`DtmfBodyError.status`) and reports the others as ``DtmfInfo`` events;
RFC 4733 packets and in-band tones are the media layer's (ivr.media.dtmf).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULT_DURATION", "DTMF_TYPES", "DtmfBody", "DtmfBodyError"]

#: The keys, indexed by their RFC 4733 event code (16, flash, is not a key).
KEYS = "0123456789*#ABCD"
DTMF_TYPES = ("application/dtmf-relay", "application/dtmf")
DEFAULT_DURATION = 250  # ms, when the body gives none (Cisco's default)

_SIGNAL = re.compile(r"(?im)^\s*signal\s*=\s*(\S+)\s*$")
_DURATION = re.compile(r"(?im)^\s*duration\s*=\s*(\d+)\s*$")


class DtmfBodyError(ValueError):
    """An INFO body of a DTMF type that names no key; answer it with ``status`` and ``reason``."""

    status = 400
    reason = "Bad DTMF Body"


@dataclass(frozen=True)
class DtmfBody:
    """One key press carried by a SIP INFO body."""

    digit: str
    duration_ms: int = DEFAULT_DURATION

    @classmethod
    def parse(cls, content_type: str, body: bytes) -> DtmfBody | None:
        """The key of an INFO body; None when the type is not a DTMF one or the body is empty.

        A DTMF type whose body names no key raises :class:`DtmfBodyError`.
        """
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in DTMF_TYPES or not body:
            return None
        text = body.decode("utf-8", "replace")
        signal = _SIGNAL.search(text)
        if signal is None:
            return cls._key(text.strip(), DEFAULT_DURATION, text)
        duration = _DURATION.search(text)
        return cls._key(signal.group(1), int(duration.group(1)) if duration else DEFAULT_DURATION, text)

    @classmethod
    def _key(cls, value: str, duration: int, text: str) -> DtmfBody:
        value = value.upper()
        if value.isdecimal():  # an event code; no code has more than two digits
            value = KEYS[int(value)] if len(value) <= 2 and int(value) < len(KEYS) else ""
        if len(value) != 1 or value not in KEYS:
            raise DtmfBodyError(f"the DTMF body names no key (0-9, *, #, A-D): {text[:40]!r}")
        return cls(value, duration)

    def __bytes__(self) -> bytes:
        """The ``application/dtmf-relay`` body, as Yealink and Cisco phones write it."""
        return f"Signal={self.digit}\r\nDuration={self.duration_ms}\r\n".encode()
