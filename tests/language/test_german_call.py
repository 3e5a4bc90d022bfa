"""A German caller on the example flows' Swiss line leaves a message, then listens to it: every
sentence after the language choice is German (on the trace) and spoken by the German voice (the
TTS cache holds each of them in espeak-ng's ``de`` voice and none in the deployment's English one)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ivr.config import load_config
from ivr.dsl.schedule import parse_local
from ivr.media.tts import TtsEngine
from ivr.runtime.deployment import load_flow
from ivr.runtime.simulate import Scenario, SimulationResult, parse_inputs, simulate
from ivr.voicemail.pins import hash_pin

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_config(ROOT / "flows" / "ivr.toml")
SWISS_LINE = "+41435435577"
CHOICE = ["Grüezi. Für Deutsch drücken Sie 1.", "Bonjour. Pour le français, appuyez sur 2."]
WELCOME = (
    "Willkommen bei Acme. Für den Verkauf drücken Sie 1. Um eine Person nach Namen zu erreichen, drücken Sie 9. "
    "Um eine Nachricht zu hinterlassen, drücken Sie 2."
)
LEAVING = [
    WELCOME,
    "Sales team ist zurzeit nicht erreichbar. Bitte hinterlassen Sie nach dem Signalton eine Nachricht und "
    "drücken Sie die Rautetaste, wenn Sie fertig sind.",
    "Ihre Nachricht wurde gespeichert. Auf Wiederhören.",
]
MAIN_MENU = (
    "Um Ihre Nachrichten abzuhören, drücken Sie 1. Für die Mailbox-Einstellungen drücken Sie 0. "
    "Zum Beenden drücken Sie die Sterntaste."
)
RETRIEVING = [
    WELCOME,
    "Bitte geben Sie Ihre Mailbox-Nummer ein und drücken Sie dann die Rautetaste.",
    "Bitte geben Sie Ihre PIN ein und drücken Sie dann die Rautetaste.",
    "Sie haben eine neue Nachricht und keine gespeicherten Nachrichten.",
    MAIN_MENU,
    "Neue Nachricht eins von eins. Empfangen am Montag, dem dreiundzwanzigsten November um zehn Uhr sieben, "
    "von plus 4 1 7 9 1 1 1 2 2 3 3.",
    "Um diese Nachricht zu wiederholen, drücken Sie 1. Zum Speichern drücken Sie 2. Zum Löschen drücken Sie 3. "
    "Für die vorherige Nachricht drücken Sie 4. Für die nächste Nachricht drücken Sie 6. "
    "Für das Hauptmenü drücken Sie die Sterntaste.",
    "Nachricht gespeichert.",
    "Keine weiteren Nachrichten.",
    MAIN_MENU,
    "Auf Wiederhören.",
]


def said(result: SimulationResult) -> list[str]:
    return [line.data["text"] for line in result.lines if line.kind == "say"]


@pytest.mark.slow
def test_a_german_caller_leaves_a_message_and_listens_to_it_in_german(tmp_path: Path) -> None:
    boxes = tuple(
        dataclasses.replace(box, pin_hash=hash_pin("2580", box.number)) if box.number == "200" else box
        for box in CONFIG.mailboxes
    )
    config = dataclasses.replace(CONFIG, mailboxes=boxes, data=tmp_path / "deployment")  # a fresh TTS cache
    program = load_flow(CONFIG.server.flows, prompt_folders=CONFIG.prompt_folders, config=config)
    calls = tmp_path / "calls"
    calls.mkdir()

    def call(at: str, inputs: str) -> SimulationResult:
        start = parse_local(at, program.settings.timezone)
        scenario = Scenario(start=start, caller="+41791112233", called=SWISS_LINE, inputs=tuple(parse_inputs(inputs)))
        return simulate(program, scenario, config=config, data=calls)

    left = call("2026-11-23 10:07", "1 2")
    assert said(left) == CHOICE + LEAVING
    assert "voicemail saved" in left.text

    heard = call("2026-11-23 10:30", "1 * 200# 2580# 1 2 *")
    assert said(heard) == CHOICE + RETRIEVING
    assert "play: data:voicemail/200/" in "\n".join(heard.text)

    engine = TtsEngine.in_data_folder(config.data, config.tts)
    for text in LEAVING + RETRIEVING:
        assert engine.path_for(text, voice="de").is_file(), f"not rendered in the German voice: {text}"
        assert not engine.path_for(text, voice="en-us").is_file(), f"rendered in the English voice: {text}"
    assert engine.path_for(CHOICE[1], voice="fr-ch").is_file()  # flows/ivr.toml: [tts.voices] fr = "fr-ch"
