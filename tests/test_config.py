"""The deployment file: its reference (docs/deployment.md) stays true, and bad files say where they are bad."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from ivr import config as cfg
from ivr.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "deployment.md"

# section heading in the doc -> the dataclass whose fields are its keys
SECTIONS: dict[str, type] = {
    "[server]": cfg.ServerConfig,
    "[tts]": cfg.TtsConfig,
    "[[extensions]]": cfg.Extension,
    "[[mailboxes]]": cfg.Mailbox,
    "[[trunks]]": cfg.Trunk,
    "[smtp]": cfg.SmtpConfig,
    "[speech]": cfg.SpeechConfig,
    "[registrar]": cfg.RegistrarConfig,
    "[transfers]": cfg.TransferConfig,
    "[numbers]": cfg.NumbersConfig,
    "[storage]": cfg.StorageConfig,
    "[http]": cfg.HttpConfig,
    "[overload]": cfg.OverloadConfig,
    "[features]": cfg.FeaturesConfig,
}
# keys read from the file that are not fields of the section's dataclass
EXTRA_KEYS = {"[server]": {"data"}, "[prompts]": {"folders"}}


def documented_keys() -> dict[str, set[str]]:
    keys: dict[str, set[str]] = {}
    section = ""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        heading = re.fullmatch(r"## `(\[\[?\w+\]\]?)`", line)
        if heading:
            section = heading.group(1)
            keys[section] = set()
        row = re.match(r"\| `(\w+)` \|", line)
        if row and section:
            keys[section].add(row.group(1))
    return keys


def test_every_section_of_the_file_is_documented() -> None:
    config_sections = {f.name for f in dataclasses.fields(cfg.Config)} - {"path", "base", "data", "prompt_folders"}
    assert {s.strip("[]") for s in SECTIONS} == config_sections
    assert set(documented_keys()) == set(SECTIONS) | {"[prompts]"}


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_the_reference_lists_exactly_the_keys_the_loader_takes(section: str) -> None:
    fields = {f.name for f in dataclasses.fields(SECTIONS[section])} | EXTRA_KEYS.get(section, set())
    assert documented_keys()[section] == fields


def test_the_reference_lists_the_prompt_folders() -> None:
    assert documented_keys()["[prompts]"] == EXTRA_KEYS["[prompts]"]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ivr.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_gives_the_embedded_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.path is None
    assert config.server.listen == ("127.0.0.1", 5060)
    assert config.data == (tmp_path / "data").resolve()
    assert config.speech.engine == "pocketsphinx" and config.tts.engine == "espeak"


def test_relative_paths_are_resolved_against_the_files_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "deploy"
    folder.mkdir()
    path = write(folder, '[server]\ndata = "store"\nflows = ["main.ivr"]\n[prompts]\nfolders = ["sounds"]\n')
    monkeypatch.chdir(tmp_path)
    config = load_config(path)
    assert config.data == folder / "store"
    assert config.server.flows == (folder / "main.ivr",)
    assert config.prompt_folders == (folder / "sounds",)


def test_durations_in_every_spelling(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[server]\ndrain_timeout = "2m"\nmedia_timeout = "500ms"\nanswer_delay = 3\n'))
    assert (config.server.drain_timeout, config.server.media_timeout, config.server.answer_delay) == (120.0, 0.5, 3.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[registrar]\nrealmm = \"x\"\n", "[registrar]: unknown key(s) realmm"),
        ("[serverr]\n", "unknown section(s) serverr"),
        ("[server]\ndrain_timeout = \"soon\"\n", "server.drain_timeout: expected a duration like 30s"),
        ("[server]\nrtp_ports = \"3000-2000\"\n", "server.rtp_ports must look like 20000-29999"),
        ("[server]\nlisten = \"host:99999\"\n", "server.listen: port 99999 out of range"),
        ("[tts]\nengine = \"festival\"\n", "[tts] engine must be \"espeak\""),
        ("[speech]\nengine = \"vosk\"\n", "engine = \"vosk\" needs model"),
        ("[[extensions]]\nnumber = \"201\"\n[[extensions]]\nnumber = \"201\"\n", "extensions number 201 is defined twice"),
        ("[[mailboxes]]\nowner = \"x\"\n", "every entry of [[mailboxes]] needs a number"),
        ("[server\n", "ivr.toml: "),
    ],
)
def test_a_bad_file_names_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert str(caught.value).startswith(str(tmp_path / "ivr.toml"))
    assert message in str(caught.value)


def test_a_missing_file_is_an_error_not_the_defaults(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such deployment file"):
        load_config(tmp_path / "nowhere.toml")


def test_the_example_deployment_loads() -> None:
    config = load_config(ROOT / "flows" / "ivr.toml")
    assert config.extension("201") is not None and config.mailbox("201") is not None
    assert all(not m.pin_hash for m in config.mailboxes)  # shipped without PINs: set with `ivr mailbox set-pin`


def test_numbers_country_is_read_and_checked(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).numbers == cfg.NumbersConfig(country="")
    config = load_config(write(tmp_path, '[numbers]\ncountry = "CH"\n'))
    assert (config.numbers.country, config.numbers.country_code) == ("CH", "41")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, '[numbers]\ncountry = "XX"\n'))
    assert str(caught.value) == (
        f"{tmp_path / 'ivr.toml'}: [numbers]: unknown country 'XX'; "
        "use one of AT, AU, BE, CH, DE, FI, FR, GB, IE, LI, NL, NZ, SE"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, '[numbers]\ncountyr = "CH"\n'))
    assert str(caught.value) == f"{tmp_path / 'ivr.toml'}: [numbers]: unknown key(s) countyr"


@pytest.mark.parametrize("written", ["0435435570", "+41435435570", "0041435435570"])
def test_with_a_country_a_number_line_answers_its_national_and_international_forms(
    tmp_path: Path, written: str
) -> None:
    from ivr.runtime.deployment import load_flow

    flow = tmp_path / "f.ivr"
    flow.write_text(f"number {written} -> a\nnumber 100 -> b\nnumber default -> c\na:\n    hangup\nb:\n    hangup\n"
                    "c:\n    hangup\n", encoding="utf-8")
    config = load_config(write(tmp_path, '[numbers]\ncountry = "CH"\n'))
    program = load_flow([flow], config=config)
    for called in ("0435435570", "+41435435570", "0041435435570", "sip:043 543 55 70@example.com"):
        assert program.entry_for(called) == "a", called
    assert program.entry_for("100") == "b"
    assert program.entry_for("0435435571") == "c"
    assert program.entry_for("+49435435570") == "c"  # another country's number with the same digits


def test_without_a_country_a_national_number_matches_only_as_written(tmp_path: Path) -> None:
    from ivr.runtime.deployment import load_flow

    flow = tmp_path / "f.ivr"
    flow.write_text("number 0435435570 -> a\nnumber +41445550100 -> b\nnumber default -> c\n"
                    "a:\n    hangup\nb:\n    hangup\nc:\n    hangup\n", encoding="utf-8")
    program = load_flow([flow], config=load_config(write(tmp_path, "")))
    assert program.entry_for("0435435570") == "a"
    assert program.entry_for("+41435435570") == "c"
    assert program.entry_for("0041445550100") == "b"  # E.164 forms match each other, as before
    assert program.entry_for("0445550100") == "c"


@pytest.mark.parametrize("uri_user", ["0435435570", "%2B41435435570", "0041435435570"])
def test_an_invite_to_any_form_of_the_number_finds_the_entry(tmp_path: Path, uri_user: str) -> None:
    """The called number as the user agent parses it from a real INVITE, looked up as a call does."""
    from ivr.runtime.deployment import load_flow
    from ivr.sip.ua import IncomingCall, UserAgent

    flow = tmp_path / "f.ivr"
    flow.write_text("number 0435435570 -> a\nnumber default -> c\na:\n    hangup\nc:\n    hangup\n", encoding="utf-8")
    program = load_flow([flow], config=load_config(write(tmp_path, '[numbers]\ncountry = "CH"\n')))
    raw = (ROOT / "tests" / "data" / "sip" / "baresip_invite.sip").read_bytes()
    raw = raw.replace(b"INVITE sip:100@", b"INVITE sip:" + uri_user.encode() + b"@", 1)
    ua = UserAgent(local_host="127.0.0.1", local_port=5060)
    ua.receive(raw, ("127.0.0.1", 5062), "udp", 0.0)
    event = ua.next_event()
    assert isinstance(event, IncomingCall)
    assert program.entry_for(event.called) == "a"


def test_two_forms_of_one_number_bound_to_different_steps_are_an_error(tmp_path: Path) -> None:
    from ivr.runtime.deployment import check_flow

    flow = tmp_path / "f.ivr"
    flow.write_text("number 0435435570 -> a\nnumber +41435435570, 0435435570 -> b\nnumber 0041445550100 -> a\n"
                    "number +41445550100 -> b\na:\n    hangup\nb:\n    hangup\n", encoding="utf-8")
    config = load_config(write(tmp_path, '[numbers]\ncountry = "CH"\n'))
    shown = [f"{d.pos}: {d.message} ({d.hint})" for d in check_flow([flow], config=config)]
    assert shown == [
        f"{flow}:2:1: number +41435435570 is the same as 0435435570, bound to 'a' and 'b' (with [numbers] country = "
        f'"CH" a national number and its international form are one; the first is at {flow}:1:1)',
        f"{flow}:2:1: number 0435435570 is bound twice, to 'a' and 'b' (the first is at {flow}:1:1)",
        f"{flow}:4:1: number +41445550100 is the same as 0041445550100, bound to 'a' and 'b' "
        f"(+41..., 0041... and 41... are one number; the first is at {flow}:3:1)",
    ]
    without = [d.message for d in check_flow([flow], config=load_config(write(tmp_path, "")))]
    assert without == [
        "number 0435435570 is bound twice, to 'a' and 'b'",
        "number +41445550100 is the same as 0041445550100, bound to 'a' and 'b'",
    ]


def test_the_in_call_codes_and_the_recording_limit(tmp_path: Path) -> None:
    path = tmp_path / "ivr.toml"
    path.write_text('[features]\nrecord = "*9"\nadd_party = ""\nrecord_max_length = "90m"\n'
                    '[[extensions]]\nnumber = "201"\nmay_record = true\n')
    config = load_config(path)
    assert (config.features.record, config.features.add_party, config.features.record_max_length) == ("*9", "", 5400.0)
    extension = config.extension("201")
    assert extension is not None and extension.may_record
    assert config.features.voicemail == "*97"
    path.write_text('[features]\nrecord_max_length = "0s"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: [features].record_max_length: must be more than 0 s"
