"""PIN policy and hashing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.voicemail.pins import PinError, hash_pin, is_hash, validate_pin, verify_pin


@pytest.mark.parametrize(
    ("pin", "message"),
    [
        ("", "the PIN is empty"),
        ("12a4", "digits 0-9 only"),
        ("٣٤٥٦", "digits 0-9 only"),
        ("123", "4 to 12 digits"),
        ("0000", "one repeated digit"),
        ("1234", "consecutive digits"),
        ("9876", "consecutive digits"),
        ("8901", "consecutive digits"),
        ("2001", "must not be the mailbox number"),
    ],
)
def test_policy_refuses_guessable_pins(pin, message):
    with pytest.raises(PinError, match=message):
        validate_pin(pin, "2001")


def test_hash_is_salted_scrypt_and_verifies():
    h1, h2 = hash_pin("2580", "200"), hash_pin("2580", "200")
    assert h1 != h2 and h1.startswith("scrypt$16384$8$1$") and is_hash(h1)
    assert "2580" not in h1
    assert verify_pin("2580", h1) and verify_pin("2580", h2)
    assert not verify_pin("2581", h1)
    assert not verify_pin("", h1)
    assert not verify_pin("2580", "")
    assert not verify_pin("2580", "scrypt$x$8$1$AA==$AA==")
    assert not is_hash("2580")


@given(st.text(max_size=16), st.text(alphabet="0123456789", max_size=6))
def test_policy_accepts_or_raises_pin_error_only(pin, mailbox):
    try:
        validate_pin(pin, mailbox)
    except PinError:
        return
    assert pin.isdigit() and 4 <= len(pin) <= 12 and len(set(pin)) > 1 and pin != mailbox
