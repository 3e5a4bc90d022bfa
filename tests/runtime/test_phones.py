"""Calls from phones (ivr.runtime.phones): who calls, the dial plan as a flow, trunk permission, busy lines."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest

from ivr.config import Config, ConfigError, load_config
from ivr.dsl.compiler import Program
from ivr.dsl.schedule import parse_local
from ivr.runtime import phones, sipconfig
from ivr.runtime.calllog import CallLog
from ivr.runtime.deployment import load_flow
from ivr.runtime.services import Services
from ivr.runtime.simulate import Scenario, simulate
from ivr.sip.auth import authorization_for
from ivr.sip.events import IncomingCall
from ivr.sip.message import Request, parse_message
from ivr.sip.registrar import RegistrationStore

DEPLOYMENT = """\
[server]
data = "{data}"

[[extensions]]
number = "100"
password = "rcp-secret"
may_call_out = true
allow = ["+4179*"]
caller_id = "+41435435599"

[[extensions]]
number = "201"
username = "alice"
password = "ajo-secret"

[[extensions]]
number = "202"
password = "mbe-secret"
call_waiting = true

[[trunks]]
name = "carrier"
host = "192.0.2.99"
allow = ["+41*"]
"""

FLOW = """\
number +41435435570 -> welcome
number internal -> dial_plan

welcome:
    say "Welcome."

dial_plan:
    when called == "0" -> reception
    otherwise -> dial

reception:
    transfer to 100 for 20s
        else -> hangup

dial:
    transfer to {called} for 30s
        else -> hangup
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "ivr.toml").write_text(DEPLOYMENT.format(data=tmp_path / "data"), encoding="utf-8")
    return load_config(tmp_path / "ivr.toml")


@pytest.fixture
def program(tmp_path: Path, config: Config) -> Program:
    (tmp_path / "flow.ivr").write_text(FLOW, encoding="utf-8")
    return load_flow([tmp_path / "flow.ivr"], config=config)


def invite(caller: str, called: str, extra: str = "") -> IncomingCall:
    head = (f"INVITE sip:{called}@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-1\r\n"
            f"From: <sip:{caller}@192.0.2.1>;tag=a\r\nTo: <sip:{called}@192.0.2.1>\r\nCall-ID: c1\r\n"
            f"CSeq: 1 INVITE\r\nContact: <sip:{caller}@192.0.2.9>\r\n{extra}Content-Length: 0\r\n\r\n")
    request = parse_message(head.encode())
    assert isinstance(request, Request)
    return IncomingCall("c1", request, None, caller, called, ("192.0.2.9", 5060))


def answer(registrar: object, user: str, password: str, called: str, now: float) -> str:
    challenge = registrar.challenger.challenge(now, algorithms=("MD5",))[0]  # type: ignore[attr-defined]
    value = authorization_for(challenge, "INVITE", f"sip:{called}@192.0.2.1", user, password, "cn", 1)
    return f"Proxy-Authorization: {value}\r\n"


def test_who_calls(config: Config) -> None:
    registrar = sipconfig.registrar(config, store=RegistrationStore())
    now = 1_800_000_000.0
    assert phones.identify(config, registrar, invite("+41791112233", "202"), now) is None  # from outside
    challenge = phones.identify(config, registrar, invite("alice", "202"), now)
    assert isinstance(challenge, phones.Refusal) and challenge.status == 407
    assert challenge.headers[0][0] == "Proxy-Authenticate" and challenge.headers[0][1].startswith("Digest ")
    good = answer(registrar, "alice", "ajo-secret", "202", now)
    caller = phones.identify(config, registrar, invite("201", "202", good), now)
    assert isinstance(caller, phones.PhoneCaller) and caller.extension.number == "201"
    wrong = phones.identify(config, registrar, invite("201", "202", answer(registrar, "alice", "x", "202", now)), now)
    assert isinstance(wrong, phones.Refusal) and wrong.status == 407
    other = phones.identify(config, registrar, invite("202", "100", answer(registrar, "alice", "ajo-secret", "100", now)),
                            now)
    assert other == phones.Refusal(403, "Forbidden (alice may not call as 202)")


def test_the_dial_plan_is_the_flows_internal_entry_and_no_caller_can_dial_it(program: Program) -> None:
    assert phones.dial_plan(program) == (program, "dial_plan")
    with pytest.raises(LookupError):
        program.entry_for("internal")
    built_in, entry = phones.dial_plan(Program(states={}, entries={"default": "x"}))  # no `number internal`
    assert entry == "dial" and built_in.internal_entry == "dial"


def run(program: Program, config: Config, caller: str, called: str, *, phone: bool = True) -> list[str]:
    scenario = Scenario(start=parse_local("2026-11-23 10:00", "UTC"), caller=caller, phone=phone, called=called)
    return simulate(program, scenario, config=config).text


def test_a_dial_plan_of_its_own_sends_0_to_the_reception(program: Program, config: Config) -> None:
    lines = run(program, config, "201", "0")
    assert "phone: 201 (dial plan)" in lines and "step: reception" in lines and "answered by 100" in lines
    lines = run(program, config, "201", "202")
    assert "step: dial" in lines and "answered by 202" in lines


def test_calling_out(program: Program, config: Config) -> None:
    named = phones.literal_numbers(program, config)
    assert phones.trunk_permission(None, "+41791234567", "+41791234567", named, config) == (
        "+41791234567 was not dialled by an authenticated phone and is named nowhere in the deployment")
    reception = phones.PhoneCaller(config.extensions[0])
    alice = phones.PhoneCaller(config.extensions[1])
    assert phones.trunk_permission(reception, "+41791234567", "+41791234567", named, config) == ""
    assert phones.trunk_permission(reception, "+41441234567", "+41441234567", named, config) == (
        "+41441234567 is not in extension 100's allow patterns")
    assert phones.trunk_permission(alice, "+41791234567", "+41791234567", named, config) == (
        "extension 201 may not call out (may_call_out = false)")
    assert phones.presented_number(reception) == "+41435435599" and phones.presented_number(None) == ""
    assert "answered by +41791234567" in run(program, config, "100", "+41791234567")
    assert "failed" in run(program, config, "201", "+41791234567")


def test_the_numbers_the_deployment_names_are_computed_once_per_reload(
    program: Program, config: Config, tmp_path: Path
) -> None:
    """Program and config are fixed for a generation of Services: the walk over the flow's
    states happens once, and a reload (new settings) computes it again."""
    services = Services(config=config, program=program, ua=None, clock=None,  # type: ignore[arg-type]
                        calllog=CallLog(io.StringIO()), contact_host="127.0.0.1", media_host="127.0.0.1")
    try:
        first = services.literal_numbers
        assert first == frozenset({"100"}) and services.literal_numbers is first  # built once, then kept
        forwarding = dataclasses.replace(config.extensions[1], forward_busy="+41791234567")
        new = services.reloaded(dataclasses.replace(config, extensions=(config.extensions[0], forwarding,
                                                                        *config.extensions[2:])), program)
        assert new.literal_numbers == frozenset({"100", "+41791234567"}) and services.literal_numbers is first
        assert phones.trunk_permission(None, "+41791234567", "", new.literal_numbers, new.config) == ""
        assert phones.trunk_permission(None, "+41791234567", "", services.literal_numbers, config) != ""
    finally:
        services.executor.shutdown()


def test_lines_and_busy(config: Config) -> None:
    lines, heard = phones.Lines(), []
    lines.watchers.append(lambda ext, state: heard.append((ext, state)))
    lines.set("201", "a", "early")
    lines.set("201", "a", "confirmed")
    assert phones.busy(config, lines, "201")
    lines.set("202", "b", "confirmed")
    assert not phones.busy(config, lines, "202")  # call waiting: a second call rings
    lines.clear("201", "a")
    lines.clear("201", "a")
    assert heard == [("201", "early"), ("201", "confirmed"), ("202", "confirmed"), ("201", "terminated")]


def test_forwarding_targets_are_checked(tmp_path: Path) -> None:
    (tmp_path / "ivr.toml").write_text('[[extensions]]\nnumber = "201"\nforward_busy = "sales"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "ivr.toml")
    assert str(info.value).endswith(
        "extensions[0].forward_busy: 'sales' is neither an extension, a telephone number nor \"voicemail\"")
