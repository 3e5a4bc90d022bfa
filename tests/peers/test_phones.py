"""Calls from the company's phones against a live ``ivr serve``, with real clients.

The deployment has extensions 201 and 202 (baresip phones that register with digest),
100 (allowed to call out, showing its own number) and a trunk that is a sipp ``uas``
on a port of this test.  The inbound flow (tests/peers/flows/dial_anything.ivr) is as
careless as a flow can be: it transfers a caller to whatever number was called.

* Two baresip phones register and call each other by extension: 201 dials 202, 202
  answers (``answermode=auto``), and each hears the other's microphone (a tone of its
  own frequency) through ivr's bridge.
* A stranger (sipp) calls an external number: without credentials it only runs the
  inbound flow, whose transfer is refused; claiming to be 201 it gets 407, and 407 again
  with a wrong password.  The trunk receives nothing.
* Extension 100 calls out: the trunk gets the INVITE with 100's own number in From.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from tests.peers.conftest import FLOWS, SIPP, free_port

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sipp") is None or shutil.which("baresip") is None,
                       reason="sipp (sip-tester) and baresip (baresip-core) are needed"),
]

IvrServer = Any
PASSWORDS = {"201": "desk-201-secret", "202": "desk-202-secret", "100": "desk-100-secret"}


class Trunk:
    """The carrier: a sipp uas on a port of ours, answering one call, tracing what it receives."""

    def __init__(self, folder: Path) -> None:
        assert SIPP is not None
        folder.mkdir()
        self.folder = folder
        self.port = free_port()
        self.proc = subprocess.Popen(
            [SIPP, "-sn", "uas", "-i", "127.0.0.1", "-p", str(self.port), "-mp", str(free_port(span=4)),
             "-m", "1", "-nostdin", "-timeout", "60s", "-trace_msg", "-message_file", str(folder / "messages.log")],
            cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def messages(self) -> str:
        path = self.folder / "messages.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait(self, timeout: float = 40.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def pbx(ivr_server: Callable[..., IvrServer], tmp_path: Path) -> Iterator[tuple[IvrServer, Trunk]]:
    trunk = Trunk(tmp_path / "trunk")
    extensions = "".join(
        f'[[extensions]]\nnumber = "{n}"\nusername = "{n}"\npassword = "{p}"\n'
        + ('may_call_out = true\nallow = ["+4179*"]\ncaller_id = "+41435435599"\n' if n == "100" else "")
        + "\n"
        for n, p in PASSWORDS.items()
    )
    server = ivr_server(
        FLOWS / "dial_anything.ivr",
        sections=extensions + (
            f'[[trunks]]\nname = "carrier"\nhost = "127.0.0.1"\nport = {trunk.port}\n'
            'allow = ["+41*"]\ncaller_id = "+41435435570"\n'
        ),
        extra=("--drain-timeout", "1s"),
    )
    yield server, trunk
    trunk.stop()


def tone(path: Path, hz: float, seconds: float) -> Path:
    t = np.arange(int(seconds * 8000)) / 8000
    soundfile.write(path, (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16), 8000, subtype="PCM_16")
    return path


def account(number: str, server: IvrServer, answer: bool = False) -> str:
    auto = ";answermode=auto" if answer else ""
    return (f"<sip:{number}@127.0.0.1:{server.port}>;auth_pass={PASSWORDS[number]};regint=300"
            f";audio_codecs=PCMU,PCMA{auto}")


def registered(server: IvrServer, number: str) -> None:
    server.wait_for(lambda r: r.get("event") == "register" and r.get("status") == 200 and r.get("aor") == number,
                    what=f"{number} registered")


def ivr_phones(server: IvrServer) -> list[dict[str, Any]]:
    out = subprocess.run([sys.executable, "-m", "ivr", "phones", "--config", str(server.data.parent / "ivr.toml"),
                          "--data", str(server.data), "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def dominant_hz(path: Path) -> float:
    heard, _ = soundfile.read(path, dtype="int16")
    heard = heard.astype(np.float64)
    assert np.sqrt(np.mean(heard**2)) > 300, "silence"
    spectrum = np.abs(np.fft.rfft(heard))
    return float(np.argmax(spectrum[10:]) + 10) * 8000 / len(heard)


def test_two_registered_phones_call_each_other_by_extension(
    pbx: tuple[IvrServer, Trunk], baresip: Callable[..., Any], tmp_path: Path
) -> None:
    server, trunk = pbx
    callee = baresip(tone(tmp_path / "b.wav", 700, 30), account("202", server, answer=True))
    registered(server, "202")
    caller = baresip(tone(tmp_path / "a.wav", 440, 6), account("201", server))  # hangs up when its mic ends
    registered(server, "201")
    caller.command("dial", f"sip:202@127.0.0.1:{server.port}")
    caller.wait_event("CALL_ESTABLISHED")
    callee.wait_event("CALL_ESTABLISHED")
    during = ivr_phones(server)  # `ivr phones` while they talk
    assert [(e["extension"], e["state"]) for e in during] == [("201", "confirmed"), ("202", "confirmed"),
                                                                ("100", "terminated")]
    assert during[0]["registrations"][0]["user_agent"].startswith("baresip")
    assert during[2]["registrations"] == []
    caller.wait_event("CALL_CLOSED", timeout=40)
    callee.wait_event("CALL_CLOSED", timeout=20)
    phone = server.wait_for(lambda r: r.get("event") == "phone_caller", what="the call from 201")
    assert phone["extension"] == "201"
    done = server.wait_for(lambda r: r.get("event") == "transfer_done", what="the bridge")
    assert done["outcome"] == "answered" and done["target"] == "202"
    assert abs(dominant_hz(callee.heard()) - 440) < 15  # 202 hears 201's microphone
    assert abs(dominant_hz(caller.heard()) - 700) < 15  # and 201 hears 202's
    assert trunk.messages() == ""


def test_a_stranger_never_reaches_the_trunk(pbx: tuple[IvrServer, Trunk], sipp: Callable[..., Any]) -> None:
    server, trunk = pbx
    # Without credentials: the inbound flow runs, and its transfer to the number called is refused.
    result = sipp("basic_ivr_bye.xml", server, service="+41791234567")
    result.check()
    refused = server.wait_for(lambda r: r.get("event") == "transfer_target_unreachable", what="the refusal")
    assert refused["reason"] == (
        "+41791234567 was not dialled by an authenticated phone and is named nowhere in the deployment"
    )
    # Claiming to be 201: challenged, and a wrong password gets the challenge again.
    result = sipp("claim_extension.xml", server, service="+41791234567", variables={"user": "201"},
                  extra=("-au", "201", "-ap", "not-the-password",
                         "-auth_uri", f"+41791234567@127.0.0.1:{server.port}"))  # its digest is for the Request-URI
    result.check()
    assert len(result.received("SIP/2.0 407")) == 2
    rejects = [r for r in server.call_records(result.call_id) if r.get("action") == "reject"]
    assert [r["status"] for r in rejects] == [407, 407]
    assert trunk.messages() == ""


def test_an_allowed_user_calls_out_through_the_trunk_showing_its_number(
    pbx: tuple[IvrServer, Trunk], baresip: Callable[..., Any], tmp_path: Path
) -> None:
    server, trunk = pbx
    phone = baresip(tone(tmp_path / "c.wav", 440, 3), account("100", server))
    registered(server, "100")
    phone.command("dial", f"sip:+41791234567@127.0.0.1:{server.port}")
    phone.wait_event("CALL_ESTABLISHED")
    phone.wait_event("CALL_CLOSED", timeout=40)
    assert trunk.wait() == 0  # the carrier took the call and saw its BYE
    invite = next(m for m in trunk.messages().split("\n\n") if "INVITE sip:+41791234567@" in m)
    assert "From: <sip:+41435435599@" in invite or "From: sip:+41435435599@" in invite, invite


def test_directed_pickup_takes_the_call_ringing_a_colleague(
    pbx: tuple[IvrServer, Trunk], baresip: Callable[..., Any], tmp_path: Path
) -> None:
    server, _ = pbx
    colleague = baresip(tone(tmp_path / "b.wav", 700, 30), account("202", server))  # rings, nobody answers
    registered(server, "202")
    picker = baresip(tone(tmp_path / "a.wav", 440, 30), account("201", server))
    registered(server, "201")
    caller = baresip(tone(tmp_path / "c.wav", 300, 6))  # from outside, calls 202; hangs up after 6 s
    caller.command("dial", f"sip:202@127.0.0.1:{server.port}")
    colleague.wait_event("CALL_INCOMING")
    picker.command("dial", f"sip:**202@127.0.0.1:{server.port}")
    picker.wait_event("CALL_ESTABLISHED")
    colleague.wait_event("CALL_CLOSED")  # 202 stops ringing
    caller.wait_event("CALL_CLOSED", timeout=40)
    answered = server.wait_for(lambda r: r.get("action") == "answer" and r.get("pickup"), what="the pickup")
    assert answered["pickup"] == "201"
    assert abs(dominant_hz(picker.heard()) - 300) < 15  # 201 talks with the caller
