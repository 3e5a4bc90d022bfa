"""The control socket's wire format (ivr.runtime.controlwire): round trips, split reads, bad lines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.runtime.controlwire import (
    ControlProtocolError,
    Decoder,
    Failure,
    Records,
    Reply,
    Request,
    encode,
    parse,
)

MESSAGES = [
    Request(1, "calls"),
    Request(2, "transfer", {"call_id": "a@b", "to": "202"}),
    Reply(2, {"call_id": "a@b", "to": "202", "transferring": True}),
    Reply(3, "digraph flows {}"),
    Failure(4, 404, "no call 'x' is up"),
    Records([{"ts": "2026-12-06T19:01:21.123Z", "call_id": "a", "event": "incoming", "caller": "Zoë"}]),
]


@pytest.mark.parametrize("message", MESSAGES)
def test_every_message_survives_the_round_trip(message: object) -> None:
    line = encode(message)  # type: ignore[arg-type]
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse(line[:-1]) == message


def test_the_wire_format_is_one_json_object_per_line() -> None:
    assert encode(Request(7, "calls")) == b'{"id":7,"op":"calls","args":{}}\n'
    assert encode(Failure(7, 403, "nope")) == b'{"id":7,"status":403,"error":"nope"}\n'
    assert encode(Records([])) == b'{"records":[]}\n'


def test_the_decoder_joins_lines_split_anywhere() -> None:
    stream = b"".join(encode(m) for m in MESSAGES)  # type: ignore[arg-type]
    for cut in range(len(stream) + 1):
        decoder = Decoder()
        assert decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) == MESSAGES


@pytest.mark.parametrize("line, error", [
    (b"{nope", "not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    (b"[1]", "not a JSON object: b'[1]'"),
    (b'{"id": "1", "op": "calls", "args": {}}', "'id' must be int, got '1'"),
    (b'{"id": true, "result": 1}', "'id' must be int, got True"),
    (b'{"id": 1, "op": "calls"}', "'args' must be dict, got None"),
    (b'{"id": 1, "status": "404", "error": "x"}', "'status' must be int, got '404'"),
    (b'{"id": 1}', "message 1 has neither op, result nor error"),
    (b'{"records": {}}', "'records' must be list, got {}"),
])
def test_a_bad_line_says_what_is_wrong(line: bytes, error: str) -> None:
    with pytest.raises(ControlProtocolError) as exc:
        parse(line)
    assert str(exc.value) == error


def test_an_overlong_line_is_refused_before_it_ends() -> None:
    decoder = Decoder(max_line=10)
    with pytest.raises(ControlProtocolError, match=r"^line of over 10 bytes$"):
        decoder.feed(b'{"records": [1, 2, 3]')
    with pytest.raises(ControlProtocolError, match=r"^line of 22 bytes: over 10$"):
        Decoder(max_line=10).feed(b'{"records": [1, 2, 3]}\n')


@given(st.binary(max_size=200))
def test_any_bytes_decode_to_messages_or_our_error(data: bytes) -> None:
    try:
        Decoder().feed(data + b"\n")
    except ControlProtocolError:
        pass
