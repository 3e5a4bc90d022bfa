"""No path outside the prompt and data folders is reachable from a request or a key press.

Every place a value the caller chooses (From / Request-URI user parts, Call-ID, keys)
becomes part of a file name or a file reference, tried with ``../``, absolute paths,
NUL, CR/LF, bytes that are not UTF-8 and very long values:

* the caller and called numbers the user agent hands to the flow (``party_text``);
* ``play "...{var}..."`` in a flow (the machine) and the prompt store resolving it;
* recording file names (Call-ID), voicemail files and greetings (mailbox, caller);
* the TTS cache file (text with a caller's number in it);
* the Voice2Mail e-mail built from the stored caller.
"""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from ivr.config import SmtpConfig
from ivr.dsl import events as ev
from ivr.dsl.loader import load_flow
from ivr.dsl.machine import Machine
from ivr.media.prompts import PromptPathError, PromptStore
from ivr.media.tts import TtsEngine
from ivr.runtime.call import _safe
from ivr.sip.events import IncomingCall
from ivr.sip.message import parse_message
from ivr.sip.ua import MAX_PARTY_CHARS, UserAgent, party_text
from ivr.voicemail.mailer import Voice2Mail
from ivr.voicemail.store import VoicemailStore, check_box

DATA = Path(__file__).resolve().parents[1] / "data" / "sip"
T0 = 1_795_000_000.0

NASTY = [
    "../../../../etc/passwd",
    "/etc/passwd",
    "data:voicemail/200/greetings/unavailable",
    "a\x00b",
    "line\r\nBcc: evil@example.com",
    "caf\udcc3\udca9",  # bytes that were not UTF-8, as surrogateescape keeps them
    "9" * 5000,
]


def silence(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 800)
    return path


# --------------------------------------------------------------------------- what the flow gets


@pytest.mark.parametrize(
    "escaped, expected",
    [
        ("%2B41791112233", "+41791112233"),
        ("a%0D%0ABcc%3A%20x", "a\ufffd\ufffdBcc: x"),
        ("nul%00byte", "nul\ufffdbyte"),
        ("bad%FFutf8", "bad\ufffdutf8"),
        ("..%2F..%2Fetc", "../../etc"),  # left for the places that use it to refuse
    ],
)
def test_party_text_is_printable(escaped: str, expected: str) -> None:
    assert party_text(escaped) == expected
    assert party_text("1" * 10_000) == "1" * MAX_PARTY_CHARS


def test_an_invite_from_a_crafted_caller_reaches_the_flow_cleaned() -> None:
    raw = (DATA / "baresip_invite.sip").read_bytes()
    crafted = b"<sip:" + b"x%0D%0ABcc%3A%20evil%00" + b"\xff" + b"@127.0.0.1>"
    raw = raw.replace(b"From: \"Alice\" <sip:alice@127.0.0.1>", b"From: " + crafted, 1)
    assert b"From: " + crafted in raw
    assert parse_message(raw)  # still a valid INVITE: the flow will see this caller
    ua = UserAgent(local_host="127.0.0.1", local_port=5060)
    ua.receive(raw, ("127.0.0.1", 5062), "udp", 0.0)
    event = ua.next_event()
    assert isinstance(event, IncomingCall)
    assert event.caller.isprintable() and "\r" not in event.caller and "\x00" not in event.caller
    assert event.caller.startswith("x\ufffd\ufffdBcc: evil")
    event.caller.encode("utf-8")  # storable in the voicemail index, sendable in a header


# --------------------------------------------------------------------------- play paths in a flow


def machine(tmp_path: Path, play: str, caller: str) -> ev.Play:
    flow = tmp_path / "flow.ivr"
    flow.write_text(f'number default -> start\n\nstart:\n    play "{play}"\n    hangup\n', encoding="utf-8")
    m = Machine(load_flow([flow]), caller=caller, called="100")  # type: ignore[arg-type]
    (action,) = [a for a in m.start(T0) if isinstance(a, ev.Play)]
    return action


@pytest.mark.parametrize("template", ["{caller}", "{caller}.wav", "greetings/{caller}.wav"])
@pytest.mark.parametrize("caller", NASTY)
def test_a_variable_in_a_play_path_never_leaves_the_prompt_folders(
    tmp_path: Path, template: str, caller: str
) -> None:
    """Before: ``play "{caller}.wav"`` with a caller of ``data:voicemail/200/...`` played that
    mailbox's greeting (or message) from the data folder."""
    prompts, data = tmp_path / "prompts", tmp_path / "data"
    silence(prompts / "greetings" / "hello.wav")
    secret = silence(data / "voicemail" / "200" / "greetings" / "unavailable.wav")
    play = machine(tmp_path, template, caller)
    assert not play.path.startswith("data:")
    store = PromptStore([prompts], data_dir=data)
    with pytest.raises((PromptPathError, FileNotFoundError, ValueError, OSError)) as err:
        store.load(play.path)
    assert str(secret) not in str(err.value)


def test_a_data_path_the_flow_writes_itself_still_plays(tmp_path: Path) -> None:
    silence(tmp_path / "data" / "recordings" / "m.wav")
    play = machine(tmp_path, "data:recordings/{caller}.wav", "m")
    assert play.path == "data:recordings/m.wav"
    assert PromptStore([tmp_path], data_dir=tmp_path / "data").load(play.path).pcm.size == 800
    escape = machine(tmp_path, "data:recordings/{caller}.wav", "../../flow")
    with pytest.raises(PromptPathError):
        PromptStore([tmp_path], data_dir=tmp_path / "data").load(escape.path)


# --------------------------------------------------------------------------- files named after a request


@pytest.mark.parametrize("call_id", [*NASTY, "a84b4c76e66710@pc33.atlanta.example.com"])
def test_recording_file_names_from_a_call_id_stay_one_plain_name(call_id: str) -> None:
    name = _safe(call_id)
    assert name and len(name) <= 48
    assert all(c.isascii() and (c.isalnum() or c in "-_") for c in name)


@pytest.mark.parametrize("box", ["../200", "/etc", "..", ".", "200/../../x", "2\x000", "9" * 41, ""])
def test_voicemail_box_names_are_checked(box: str) -> None:
    with pytest.raises(ValueError):
        check_box(box)


@pytest.mark.parametrize("caller", NASTY)
def test_voicemail_files_stay_in_the_box_whoever_calls(tmp_path: Path, caller: str) -> None:
    store = VoicemailStore(tmp_path)
    incoming = store.incoming_path("200", caller, T0)
    assert incoming.parent == tmp_path.resolve() / "voicemail" / "200" / "incoming"
    assert len(incoming.name) < 100
    source = silence(incoming)
    message = store.add("200", caller=party_text(caller), duration=0.1, source=source, received_at=T0)
    assert message.path.parent == tmp_path.resolve() / "voicemail" / "200"
    assert store.list("200")[0].caller == party_text(caller)


def test_tts_cache_files_are_named_by_hash(tmp_path: Path) -> None:
    engine = TtsEngine(tmp_path / "tts-cache")
    for caller in NASTY:
        path = engine.path_for(f"You called from {party_text(caller)}")
        assert path.parent.parent == tmp_path / "tts-cache"
        assert len(path.stem) == 64 and all(c in "0123456789abcdef" for c in path.stem)


# --------------------------------------------------------------------------- Voice2Mail


def test_voice2mail_builds_a_clean_mail_for_a_caller_stored_with_control_characters(tmp_path: Path) -> None:
    """Before: a CR/LF in the stored caller made build() raise, which ended the delivery round
    and held up every e-mail queued behind that one, on every retry."""
    store = VoicemailStore(tmp_path)
    source = silence(tmp_path / "in.wav")
    store.add("200", caller="x\r\nBcc: evil@example.com", duration=1.0, source=source,
              received_at=T0, notify=["alice@example.com"])
    mailer = Voice2Mail(store, SmtpConfig(host="127.0.0.1", port=9))
    (item,) = store.due_mail(T0 + 1)
    mail = mailer.build(item)
    assert "Bcc" not in mail.keys()
    assert "\n" not in mail["Subject"] and "evil@example.com" in mail["Subject"]
    mail.as_bytes()  # serialisable as it would be sent


# --------------------------------------------------------------------------- the call journal


def test_text_that_was_not_utf8_does_not_stop_the_journal(tmp_path: Path) -> None:
    """Before: a value holding a surrogate (bytes that were not UTF-8) raised in the journal's
    writer thread, which died: that call and every later one went unjournalled."""
    from ivr.runtime.journal import Journal

    journal = Journal.open(tmp_path)
    journal.started("bad-\udcd6", "caf\udcc3", "100", at=1.0)
    journal.ended("bad-\udcd6", outcome="hangup", detail="\udcff", cause="bye", at=2.0)
    journal.started("next-call", "+41791112233", "100", at=3.0)
    journal.flush()
    rows = {row.call_id: row for row in journal.query()}
    assert set(rows) == {"bad-?", "next-call"}  # the writer lived on
    assert rows["bad-?"].caller == "caf?" and rows["bad-?"].ended == 2.0
    journal.close()
