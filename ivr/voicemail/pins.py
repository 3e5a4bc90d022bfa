"""Mailbox PINs: policy, salted scrypt hashes, constant-time checks.

A PIN is stored only as ``scrypt$N$r$p$<salt b64>$<hash b64>`` (hashlib.scrypt,
16-byte random salt), in the deployment file's ``pin_hash``.  The policy
refuses PINs a caller could guess in three tries: empty, too short, one
repeated digit (0000), a run up or down (1234, 9876), or the mailbox number.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

MIN_LENGTH = 4
MAX_LENGTH = 12
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
PREFIX = "scrypt"


class PinError(ValueError):
    """A PIN the policy refuses; the message says why, for the admin setting it."""


def validate_pin(pin: str, mailbox: str = "") -> None:
    """Raise PinError unless ``pin`` is an acceptable PIN for ``mailbox``."""
    if not pin:
        raise PinError("the PIN is empty")
    if not pin.isdigit() or not pin.isascii():
        raise PinError("a PIN has digits 0-9 only (callers type it on a keypad)")
    if not MIN_LENGTH <= len(pin) <= MAX_LENGTH:
        raise PinError(f"a PIN has {MIN_LENGTH} to {MAX_LENGTH} digits")
    if len(set(pin)) == 1:
        raise PinError("a PIN of one repeated digit is too easy to guess")
    steps = {(int(b) - int(a)) % 10 for a, b in zip(pin, pin[1:], strict=False)}
    if steps in ({1}, {9}):
        raise PinError("a PIN of consecutive digits (like 1234) is too easy to guess")
    if mailbox and pin in (mailbox, mailbox[::-1]):
        raise PinError("the PIN must not be the mailbox number")


def hash_pin(pin: str, mailbox: str = "") -> str:
    """Validate ``pin`` and return its salted scrypt hash for ``pin_hash``."""
    validate_pin(pin, mailbox)
    salt = secrets.token_bytes(16)
    digest = _scrypt(pin, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join([PREFIX, str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)])


def verify_pin(pin: str, pin_hash: str) -> bool:
    """True when ``pin`` matches ``pin_hash``; False for any other PIN or an unusable hash."""
    parts = pin_hash.split("$")
    if len(parts) != 6 or parts[0] != PREFIX or not pin:
        return False
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, expected = base64.b64decode(parts[4]), base64.b64decode(parts[5])
        digest = _scrypt(pin, salt, n, r, p, len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def is_hash(value: str) -> bool:
    """Whether ``value`` looks like a hash made by :func:`hash_pin` (not a PIN written in clear)."""
    return value.startswith(PREFIX + "$") and value.count("$") == 5


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int, length: int = 32) -> bytes:
    return hashlib.scrypt(
        pin.encode(), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=64 * 1024 * 1024
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
