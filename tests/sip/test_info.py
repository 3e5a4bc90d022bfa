"""SIP INFO key bodies (ivr.sip.info): the Yealink capture, the mixed-up formats phones send, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.sip.info import DtmfBody, DtmfBodyError
from ivr.sip.message import Request, parse_message

DATA = Path(__file__).resolve().parents[1] / "data" / "sip"


def test_yealink_info_body_round_trips() -> None:
    info = parse_message((DATA / "yealink_info_dtmf.sip").read_bytes())
    assert isinstance(info, Request)
    key = DtmfBody.parse(info.headers["Content-Type"], info.body)
    assert key == DtmfBody("5", 160)
    assert bytes(key) == info.body == b"Signal=5\r\nDuration=160\r\n"


@pytest.mark.parametrize(
    "content_type, body, expected",
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", DtmfBody("5", 160)),
        ("Application/DTMF-Relay; charset=utf-8", b"Signal= #\r\nDuration= 250", DtmfBody("#", 250)),
        ("application/dtmf-relay", b"Signal=10\r\nDuration=100", DtmfBody("*", 100)),
        ("application/dtmf-relay", b"Signal=11", DtmfBody("#", 250)),
        ("application/dtmf-relay", b"signal=b\nduration=80\n", DtmfBody("B", 80)),
        ("application/dtmf", b"7", DtmfBody("7", 250)),
        ("application/dtmf", b"*\r\n", DtmfBody("*", 250)),
        # the two formats mixed up, and keys written as RFC 4733 event codes
        ("application/dtmf", b"Signal=9\r\nDuration=80\r\n", DtmfBody("9", 80)),
        ("application/dtmf-relay", b"7\r\n", DtmfBody("7", 250)),
        ("application/dtmf", b"10", DtmfBody("*", 250)),
        ("application/dtmf", b"12 ", DtmfBody("A", 250)),
        ("application/dtmf-relay", b"Signal=15\r\nDuration= 90", DtmfBody("D", 90)),
        # not a key body: nothing to report, nothing wrong either
        ("application/sdp", b"v=0\r\n", None),
        ("text/plain", b"Signal=1", None),
        ("application/dtmf", b"", None),
    ],
)
def test_parse(content_type: str, body: bytes, expected: DtmfBody | None) -> None:
    assert DtmfBody.parse(content_type, body) == expected


@pytest.mark.parametrize(
    "body, message",
    [
        (b"Signal=16\r\nDuration=100", "the DTMF body names no key (0-9, *, #, A-D): 'Signal=16\\r\\nDuration=100'"),
        (b"Duration=100", "the DTMF body names no key (0-9, *, #, A-D): 'Duration=100'"),
        (b"Signal=X\r\n", "the DTMF body names no key (0-9, *, #, A-D): 'Signal=X\\r\\n'"),
        (b"Signal=\r\n", "the DTMF body names no key (0-9, *, #, A-D): 'Signal=\\r\\n'"),
        (b"Signal=0" + b"0" * 5000, "the DTMF body names no key (0-9, *, #, A-D): 'Signal=" + "0" * 33 + "'"),
    ],
)
def test_a_dtmf_body_without_a_key_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(DtmfBodyError) as info:
        DtmfBody.parse("application/dtmf-relay", body)
    assert str(info.value) == message
    assert (info.value.status, info.value.reason) == (400, "Bad DTMF Body")


@settings(deadline=None)  # timing is not under test; a loaded CI machine must not fail it
@given(st.text(max_size=40), st.binary(max_size=80))
def test_any_body_is_a_key_nothing_or_our_error(content_type: str, body: bytes) -> None:
    try:
        key = DtmfBody.parse(content_type, body)
    except DtmfBodyError:
        return
    assert key is None or (key.digit in "0123456789*#ABCD" and key.duration_ms >= 0)
