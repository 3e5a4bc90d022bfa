"""SIGHUP reloads ``ivr serve``: new calls run the new flow, running calls keep theirs, a broken flow changes nothing.

The flow file is rewritten between calls, the server gets SIGHUP, and the JSON call log
says which flow each sipp call ran (its steps and the texts it said).  Every wait is on a
log record (``reloaded``, ``reload_failed``...), never on a sleep.
"""

from __future__ import annotations

import dataclasses
import io
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import numpy as np
import pytest
import soundfile

from ivr.config import Config, Extension, Mailbox, ServerConfig, SmtpConfig, TtsConfig
from ivr.runtime.calllog import CallLog
from ivr.runtime.reload import changed_sections, keep_restart_only
from ivr.runtime.services import Services
from ivr.runtime.settings import ServeSettings

F = TypeVar("F", bound=Callable[..., Any])


def peer(test: F) -> F:
    """A test with real peers: ivr serve and sipp (the unit tests at the end need neither)."""
    for mark in (
        pytest.mark.peer,
        pytest.mark.slow,
        pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed"),
    ):
        test = mark(test)
    return test


IvrServer = Any  # conftest.IvrServer
Sipp = Callable[..., Any]

# Flow A re-prompts every second or so for as long as the caller stays: a call that runs
# across a reload keeps logging A's texts if (and only if) it kept A's program.
FLOW_A = """\
number default -> a_menu

menu a_menu:
    ask "Line A. Press 1."
    wait 1s, retry 30 times
    1 -> a_one
    exhausted -> hangup

a_one:
    say "A one."
    hangup
"""

FLOW_B = """\
number default -> b_menu

menu b_menu:
    ask "Line B. Press 2."
    wait 1s, retry 30 times
    2 -> b_two
    exhausted -> hangup

b_two:
    say "B two."
    hangup
"""

# Line 5 jumps to a step that does not exist: the check names file, line and column.
FLOW_BROKEN = """\
number default -> b_start

b_start:
    say "Line B."
    -> nowhere
"""


def in_background(run: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(run()), daemon=True)
    thread.start()
    return thread, out


def reload(server: IvrServer, outcome: str) -> dict[str, Any]:
    """SIGHUP, then the record that ends this reload (``reloaded`` or ``reload_failed``)."""
    before = len(server.records)
    server.proc.send_signal(signal.SIGHUP)
    return server.wait_for(
        lambda r: r.get("event") == outcome and server.records.index(r) >= before, timeout=60, what=outcome
    )


def serve_flow_a(ivr_server: Callable[..., IvrServer], tmp_path: Path, **options: Any) -> tuple[IvrServer, Path]:
    """``ivr serve`` on ``main.ivr`` holding FLOW_A; the file, for the test to rewrite before a SIGHUP."""
    flow = tmp_path / "main.ivr"
    flow.write_text(FLOW_A)
    return ivr_server(flow, **options), flow


def first_step_of_a_new_call(server: IvrServer, sipp: Sipp) -> str:
    """A new sipp call (it hangs up itself): the flow step it started in, A's or B's."""
    call = sipp("basic_caller_bye.xml", server)
    call.check()
    return str(server.steps(call.call_id)[0])


def said(server: IvrServer, call_id: str) -> list[str]:
    return [str(r.get("text", "")) for r in server.call_records(call_id) if r.get("action") == "say"]


@peer
def test_new_calls_take_the_new_flow_and_a_running_call_keeps_its_own(
    ivr_server: Callable[..., IvrServer], sipp: Sipp, tmp_path: Path
) -> None:
    server, flow = serve_flow_a(ivr_server, tmp_path)
    thread, out = in_background(lambda: sipp("held_call.xml", server, extra=("-d", "10000")))
    held = server.wait_for(lambda r: r.get("action") == "answer", what="the held call answered")["call_id"]
    server.wait_for(lambda r: r.get("call_id") == held and r.get("action") == "say", what="held call's prompt")

    flow.write_text(FLOW_B)
    reloaded = reload(server, "reloaded")
    assert reloaded["flows"] == [str(flow)]
    assert reloaded["calls_on_old"] == 1
    assert reloaded["entries"] == ["default"] and reloaded["texts"] >= 2
    mark = server.records.index(reloaded)

    new_call = sipp("basic_caller_bye.xml", server)
    new_call.check()
    assert server.steps(new_call.call_id)[:1] == ["b_menu"]
    assert any("Line B" in text for text in said(server, new_call.call_id))

    thread.join(60)
    out[0].check()
    server.wait_for(lambda r: r.get("call_id") == held and r.get("event") == "ended", what="held call ended")
    after = [r for r in server.records[mark:] if r.get("call_id") == held and r.get("action") == "say"]
    assert after, "the held call said nothing after the reload"
    assert all("Line A" in str(r.get("text")) for r in after)  # re-prompts of A, never B's
    assert set(server.steps(held)) == {"a_menu"}


@peer
def test_a_broken_flow_is_reported_and_the_old_one_keeps_serving(
    ivr_server: Callable[..., IvrServer], sipp: Sipp, tmp_path: Path
) -> None:
    server, flow = serve_flow_a(ivr_server, tmp_path)

    flow.write_text(FLOW_BROKEN)
    failed = reload(server, "reload_failed")
    assert failed["stage"] == "check"
    assert any(d.startswith(f"{flow}:5:") and "nowhere" in d for d in failed["diagnostics"]), failed
    assert f"{flow}:5:" in failed["message"]
    assert not any(r.get("event") == "reloaded" for r in server.records)

    assert first_step_of_a_new_call(server, sipp) == "a_menu"

    flow.write_text(FLOW_B)  # fixed: the next SIGHUP takes it
    reload(server, "reloaded")
    assert first_step_of_a_new_call(server, sipp) == "b_menu"


@peer
def test_a_directory_the_deployment_does_not_cover_fails_the_reload(
    ivr_server: Callable[..., IvrServer], sipp: Sipp, tmp_path: Path
) -> None:
    """The reload checks the flow against the deployment, as the start does: a directory person
    whose extension the deployment lacks is an error at the directory file's line."""
    server, flow = serve_flow_a(ivr_server, tmp_path)
    staff = tmp_path / "staff.csv"
    staff.write_text("first_name,last_name,extension\nBob,Miller,299\n")
    flow.write_text(
        'directory staff from "staff.csv"\n'
        + FLOW_B.replace("    2 -> b_two\n", "    2 -> b_two\n    9 -> find\n")
        + "\nfind:\n    directory staff by keys\n        else -> hangup\n"
    )
    failed = reload(server, "reload_failed")
    assert failed["stage"] == "check"
    assert failed["diagnostics"] == [
        f"{staff}:2:1: error: Bob Miller: extension 299 is not in ivr.toml "
        "(hint: add it under [[extensions]], or correct the directory file)"
    ]
    assert first_step_of_a_new_call(server, sipp) == "a_menu"


@peer
def test_a_sighup_during_a_reload_reloads_again_so_the_latest_files_win(
    ivr_server: Callable[..., IvrServer], sipp: Sipp, tmp_path: Path
) -> None:
    server, flow = serve_flow_a(ivr_server, tmp_path)
    flow.write_text(FLOW_BROKEN)
    server.proc.send_signal(signal.SIGHUP)
    # Two signals sent back to back may reach the process as one: the second goes once the
    # first is being handled, most likely while that reload runs (then it is queued).
    server.wait_for(lambda r: r.get("event") == "reloading", what="reloading")
    flow.write_text(FLOW_B)  # the first reload may read either file; the second reads this one
    server.proc.send_signal(signal.SIGHUP)

    def outcomes() -> list[str]:
        return [str(r["event"]) for r in server.records if r.get("event") in ("reloaded", "reload_failed")]

    server.wait_for(lambda r: len(outcomes()) == 2, timeout=60, what="two reloads")
    assert outcomes()[-1] == "reloaded"
    assert first_step_of_a_new_call(server, sipp) == "b_menu"
    assert len(outcomes()) == 2  # no third reload


@peer
def test_an_extension_added_by_a_reload_can_register(
    ivr_server: Callable[..., IvrServer], sipp: Sipp, tmp_path: Path
) -> None:
    server, flow = serve_flow_a(ivr_server, tmp_path)
    login = {"service": "301", "extra": ("-au", "301", "-ap", "secret-301")}
    before = sipp("register_auth.xml", server, **login)
    # no such extension yet: the credentials are challenged again (who exists is not told)
    assert before.returncode != 0 and len(before.received("SIP/2.0 401")) == 2
    assert not before.received("SIP/2.0 200")

    toml = tmp_path / "ivr.toml"
    toml.write_text(toml.read_text() + '\n[[extensions]]\nnumber = "301"\npassword = "secret-301"\n')
    reloaded = reload(server, "reloaded")
    assert reloaded["changed"] == ["extensions"]
    sipp("register_auth.xml", server, **login).check()  # 401, then 200 with the new password
    registered = server.wait_for(lambda r: r.get("event") == "register" and r.get("status") == 200, what="200")
    assert registered["aor"] == "301"


@peer
def test_a_trunk_added_by_a_reload_registers_and_is_unregistered_at_the_stop(
    ivr_server: Callable[..., IvrServer], tmp_path: Path
) -> None:
    registrar_port = free_udp_port()
    folder = tmp_path / "carrier"
    folder.mkdir()
    carrier = subprocess.Popen(
        [shutil.which("sipp") or "sipp", "-sf", str(Path(__file__).parent / "scenarios" / "registrar_trunk.xml"),
         "-i", "127.0.0.1", "-p", str(registrar_port), "-m", "1", "-nostdin", "-timeout", "60s", "-timeout_error",
         "-trace_msg", "-message_file", str(folder / "messages.log")],
        cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        server, flow = serve_flow_a(ivr_server, tmp_path)
        toml = tmp_path / "ivr.toml"
        toml.write_text(
            toml.read_text()
            + f'\n[[trunks]]\nname = "carrier"\nhost = "127.0.0.1"\nport = {registrar_port}\nregister = true\n'
        )
        assert reload(server, "reloaded")["changed"] == ["trunks"]
        registered = server.wait_for(lambda r: r.get("event") == "trunk_registered", what="trunk_registered")
        assert registered["trunk"] == "carrier"

        server.terminate()  # the stop un-REGISTERs the trunk the reload added
        assert server.wait_exit(30) == 0
        out, _ = carrier.communicate(timeout=30)
        assert carrier.returncode == 0, out[-2000:]
        trace = (folder / "messages.log").read_text(errors="replace")
        assert trace.count("REGISTER sip:") == 2 and re.search(r"expires[=:]\s*0\b", trace, re.I)
    finally:
        if carrier.poll() is None:
            carrier.kill()
            carrier.communicate()


@peer
def test_the_first_mailboxes_of_a_reload_recover_their_messages_off_the_event_loop(tmp_path: Path, tts_cache: Path) -> None:
    from tests.loopguard import LOOP_GUARD, refused
    from tests.peers.conftest import start_ivr

    flow = tmp_path / "main.ivr"
    flow.write_text(FLOW_A)
    cut = tmp_path / "data" / "voicemail" / "200" / "incoming" / "1700000000-201-0a1b2c3d.wav"
    cut.parent.mkdir(parents=True)
    soundfile.write(cut, np.zeros(16000, np.int16), 8000)  # a message a crash cut short, 2 s
    server = start_ivr(tmp_path, [flow], tts_cache=tts_cache, env=LOOP_GUARD)
    try:
        toml = tmp_path / "ivr.toml"
        toml.write_text(toml.read_text() + '\n[[mailboxes]]\nnumber = "200"\n')
        reload(server, "reloaded")
        recovered = server.wait_for(lambda r: r.get("event") == "recovered", what="recovered")
        assert recovered["message"] == "recovered 1 voicemail message(s)"
    finally:
        server.stop()
    assert refused(server.lines) == []  # recovery read the voicemail index in a storage worker


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@peer
def test_settings_that_need_a_restart_are_named_and_the_rest_applies(
    ivr_server: Callable[..., IvrServer], tmp_path: Path
) -> None:
    server, flow = serve_flow_a(ivr_server, tmp_path)
    toml = tmp_path / "ivr.toml"  # the harness's deployment file
    text = toml.read_text()
    old_ports = next(line for line in text.splitlines() if line.startswith("rtp_ports"))
    toml.write_text(text.replace(old_ports, 'rtp_ports = "31000-31099"\nmax_calls = 7'))

    reloaded = reload(server, "reloaded")
    ignored = server.wait_for(lambda r: r.get("event") == "reload_ignored", what="reload_ignored")
    assert ignored["settings"] == ["rtp_ports"]
    assert server.records.index(ignored) < server.records.index(reloaded)
    assert reloaded["max_calls"] == 7
    assert reloaded["changed"] == ["server"]


@peer
def test_a_bad_deployment_file_fails_the_reload_and_sighup_while_draining_is_skipped(
    ivr_server: Callable[..., IvrServer], sipp: Sipp, tmp_path: Path
) -> None:
    server, flow = serve_flow_a(ivr_server, tmp_path, extra=("--drain-timeout", "60s"))
    toml = tmp_path / "ivr.toml"
    good = toml.read_text()
    toml.write_text(good + '[server2]\n')
    failed = reload(server, "reload_failed")
    assert failed["stage"] == "config" and "unknown section(s) server2" in failed["message"]
    toml.write_text(good)

    thread, out = in_background(lambda: sipp("held_call.xml", server, extra=("-d", "4000")))
    server.wait_for(lambda r: r.get("action") == "answer", what="the held call answered")
    server.terminate()
    server.wait_for(lambda r: r.get("event") == "draining", what="draining")
    server.proc.send_signal(signal.SIGHUP)
    skipped = server.wait_for(lambda r: r.get("event") == "reload_skipped", what="reload_skipped")
    assert skipped["reason"] == "draining"
    thread.join(60)
    out[0].check()
    assert server.wait_exit(30) == 0
    assert [r.get("event") for r in server.records if str(r.get("event", "")).startswith("reload")] == [
        "reloading", "reload_failed", "reload_skipped"
    ]


# --------------------------------------------------------------------------- unit level


def test_serve_help_documents_sighup_and_max_calls() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ivr", "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "SIGHUP reloads" in text and "reload_failed" in text and "--max-calls N" in text
    assert "SIGHUP while draining is ignored" in text


def test_settings_that_need_a_restart_keep_their_old_values() -> None:
    current = ServeSettings(config=Config(), listen=("127.0.0.1", 5060), drain_timeout=30.0)
    fresh_config = dataclasses.replace(
        Config(),
        server=ServerConfig(rtp_ports=(40000, 40999), max_calls=9, answer_delay=2.0),
        smtp=SmtpConfig(host="mail.example.com"),
        tts=TtsConfig(voice="en-gb"),
    )
    fresh = ServeSettings(config=fresh_config, listen=("0.0.0.0", 5080), drain_timeout=10.0)
    settings, restart = keep_restart_only(current, fresh)
    assert restart == ("listen", "rtp_ports", "smtp")
    assert settings.listen == ("127.0.0.1", 5060)
    assert settings.config.server.rtp_ports == (20000, 29999) and settings.config.smtp == SmtpConfig()
    # everything else is the new file's
    assert (settings.config.server.max_calls, settings.config.server.answer_delay) == (9, 2.0)
    assert settings.config.tts.voice == "en-gb" and settings.drain_timeout == 10.0
    assert changed_sections(current.config, settings.config) == ("server", "tts")


def test_a_new_generation_shares_the_journal_and_rebuilds_what_changed(tmp_path: Path) -> None:
    config = Config(data=tmp_path)
    program = SimpleNamespace(settings=SimpleNamespace(), states={})
    old = Services(config=config, program=program, ua=None, clock=None, calllog=CallLog(io.StringIO()),
                   contact_host="127.0.0.1", media_host="127.0.0.1")
    journal, registrar, tts = old.journal, old.registrar(), old.tts
    extension = Extension(number="201", contacts=("sip:201@192.0.2.5",))
    new_program = SimpleNamespace(settings=SimpleNamespace(), states={})
    new = old.reloaded(dataclasses.replace(config, extensions=(extension,)), new_program)
    try:
        assert new.program is new_program and old.program is program  # running calls keep theirs
        assert new.journal is journal  # one writer for the process
        assert new.tts is tts  # [tts] unchanged: kept
        assert new.registrar() is not registrar and new.registrar().store is registrar.store
        assert new.contacts_for("201") == ["sip:201@192.0.2.5"]
        assert old.contacts_for("201") == []  # the old generation still has the old extensions
        assert new.legs is old.legs and new.executor is old.executor
    finally:
        new.close_journal()
        old.executor.shutdown()


def test_a_new_generation_names_new_mailbox_owners_and_dates_mail_in_the_new_zone(tmp_path: Path) -> None:
    config = Config(data=tmp_path, mailboxes=(Mailbox(number="200", owner="Sales"),))
    program = SimpleNamespace(settings=SimpleNamespace(timezone="Europe/Zurich"), states={})
    old = Services(config=config, program=program, ua=None, clock=None, calllog=CallLog(io.StringIO()),
                   contact_host="127.0.0.1", media_host="127.0.0.1")
    mailer = old.voicemail.mailer
    assert mailer.owners == {"200": "Sales"} and str(mailer.tz) == "Europe/Zurich"
    boxes = (Mailbox(number="200", owner="Sales team"), Mailbox(number="201", owner="Alice Johnson"))
    new = old.reloaded(dataclasses.replace(config, mailboxes=boxes),
                       SimpleNamespace(settings=SimpleNamespace(timezone="America/New_York"), states={}))
    try:
        assert new.voicemail is old.voicemail  # one store and mail thread for the process
        assert mailer.owners == {"200": "Sales team", "201": "Alice Johnson"}
        assert str(mailer.tz) == "America/New_York"
    finally:
        new.close_journal()
        old.executor.shutdown()
