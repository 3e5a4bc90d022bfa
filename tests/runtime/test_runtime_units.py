"""Pieces of the server that need no sockets: the call log's lines, what start-up prepares."""

from __future__ import annotations

import io
import json
from pathlib import Path

from ivr.config import Config, ServerConfig
from ivr.dsl import events as ev
from ivr.runtime.calllog import CallLog, describe
from ivr.runtime.deployment import load_flow
from ivr.runtime.prepare import music_sources, uses_speech
from ivr.runtime.server import contact_address
from ivr.runtime.trace import action_from_record

FLOWS = Path(__file__).resolve().parents[1] / "peers" / "flows"
REPO = Path(__file__).resolve().parents[2]


def test_call_record_is_one_json_line_with_the_call_keys() -> None:
    out = io.StringIO()
    CallLog(out).call("abc@h", caller="+4179", called="100", state="welcome", event="key", digit="5", via="rtp")
    line = out.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    record = json.loads(line)
    assert {k: record[k] for k in ("call_id", "caller", "called", "state", "event", "digit", "via")} == {
        "call_id": "abc@h", "caller": "+4179", "called": "100", "state": "welcome", "event": "key", "digit": "5", "via": "rtp",
    }
    assert record["ts"].endswith("Z")


def test_text_format_quotes_values_with_spaces() -> None:
    out = io.StringIO()
    log = CallLog(out, fmt="text")
    log.call("c1", caller="", called="100", state="welcome", action="say", text="Hello there")
    log.server("listening", "listening on udp:127.0.0.1:5060 tcp:127.0.0.1:5060")
    first, second = out.getvalue().splitlines()
    assert 'caller=""' in first and 'text="Hello there"' in first and "action=say" in first
    assert second.endswith("listening on udp:127.0.0.1:5060 tcp:127.0.0.1:5060")


def test_describe_gives_the_fields_of_events_and_actions() -> None:
    assert describe(ev.Key("7")) == {"digit": "7"}
    assert describe(ev.Say("Hi", 3)) == {
        "text": "Hi", "prompt_id": 3, "voice": "", "language": "", "barge_in": True, "message": ""
    }
    plan = describe(ev.Transfer(plan=((("201", "202"), 25.0),)))
    assert plan["plan"] == [[["201", "202"], 25.0]]  # JSON lists, read back by ivr.runtime.trace
    assert action_from_record({"action": "transfer", **plan}) == ev.Transfer(plan=((("201", "202"), 25.0),))


def test_contact_address_prefers_public_then_listen_host() -> None:
    assert contact_address(Config(server=ServerConfig(public_address="198.51.100.7")), "127.0.0.1") == "198.51.100.7"
    assert contact_address(Config(), "192.0.2.10") == "192.0.2.10"
    assert contact_address(Config(), "0.0.0.0") not in ("0.0.0.0", "")


def test_startup_finds_hold_music_and_speech_in_a_flow() -> None:
    acme = load_flow([REPO / "flows" / "acme.ivr"], prompt_folders=[REPO / "prompts"])
    assert music_sources(acme) == {"moh/"}
    assert uses_speech(acme)
    menu = load_flow([FLOWS / "menu.ivr"])
    assert music_sources(menu) == set() and not uses_speech(menu)
    assert uses_speech(load_flow([FLOWS / "speech.ivr"]))


def test_threaded_log_keeps_order_and_close_writes_everything() -> None:
    out = io.StringIO()
    log = CallLog(out, threaded=True)
    for n in range(500):
        log.call("c", caller="", called="", state="s", event="key", n=n)
    log.close()
    assert [json.loads(line)["n"] for line in out.getvalue().splitlines()] == list(range(500))
