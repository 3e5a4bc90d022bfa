"""Follow-me numbers an extension's owner sets in the console (ivr.runtime.forwarding) ring on the next transfer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ivr.config import load_config
from ivr.dsl.schedule import parse_local
from ivr.runtime.deployment import load_flow
from ivr.runtime.forwarding import (
    ForwardingError,
    check_follow_me,
    read_forwarding,
    read_pikett,
    write_follow_me,
    write_pikett,
)
from ivr.runtime.simulate import Scenario, simulate

DEPLOYMENT = """\
[server]
data = "{data}"
[prompts]
folders = ["prompts"]
[[extensions]]
number = "204"
password = "tzu-8Bn5-hR2g"
follow_me = ["+41797001204"]
may_call_out = {may_call_out}
[[mailboxes]]
number = "200"
[[trunks]]
name = "carrier"
host = "192.0.2.99"
allow = ["+41797001*"]
"""
FLOW = "number 100 -> s\ns:\n    transfer to 204 for 20s else voicemail 200\n"


def invites(tmp_path: Path, may_call_out: bool = True) -> list[str]:
    (tmp_path / "prompts").mkdir(exist_ok=True)
    (tmp_path / "ivr.toml").write_text(DEPLOYMENT.format(data=tmp_path / "data", may_call_out=str(may_call_out).lower()))
    (tmp_path / "flow.ivr").write_text(FLOW)
    config = load_config(tmp_path / "ivr.toml")
    program = load_flow([tmp_path / "flow.ivr"], prompt_folders=config.prompt_folders, config=config)
    scenario = Scenario(start=parse_local("2026-11-23 10:00", "Europe/Zurich"), caller="+41791112233",
                        no_answer=frozenset({"204"}))
    result = simulate(program, scenario, config=config)
    return [r["uri"].split("@")[0] for r in result.records if r.get("event") == "leg_invite"]


def outside(legs: list[str]) -> set[str]:
    """The numbers a trunk was asked to ring (not the phones)."""
    return {leg for leg in legs if leg.startswith("sip:+")}


@pytest.mark.parametrize(("choice", "may_call_out", "rung"), [
    pytest.param(None, True, {"sip:+41797001204"}, id="the deployment file's without a choice in the console"),
    pytest.param(("+41797001999",), True, {"sip:+41797001999"}, id="the owner's choice replaces the deployment file's"),
    # the trunk is the deployment's, not the user's to choose
    pytest.param(("+41797001999",), False, set(), id="an owner who may not call out cannot send calls out"),
    pytest.param((), True, set(), id="an empty choice turns follow-me off"),
])
def test_follow_me_rings_the_owners_choice_within_their_permission(
    tmp_path: Path, choice: tuple[str, ...] | None, may_call_out: bool, rung: set[str]
) -> None:
    if choice is not None:
        write_follow_me(tmp_path / "data", "204", choice)
    assert outside(invites(tmp_path, may_call_out)) == rung


def test_no_choice_brings_the_deployment_files_follow_me_back(tmp_path: Path) -> None:
    write_follow_me(tmp_path / "data", "204", ())
    write_follow_me(tmp_path / "data", "204", None)
    assert read_forwarding(tmp_path / "data") == {}
    assert "sip:+41797001204" in invites(tmp_path)


def test_numbers_are_cleaned_of_spaces() -> None:
    assert check_follow_me(["+41 79 700 12 04", "201"]) == ("+41797001204", "201")


@pytest.mark.parametrize(("numbers", "message"), [
    (["sip:evil@x"], r"^not a phone number: 'sip:evil@x' \(digits, optionally starting with \+\)$"),
    (["201"] * 6, "^at most 5 follow-me numbers, got 6$"),
])
def test_a_bad_number_is_refused_by_name(numbers: list[str], message: str) -> None:
    with pytest.raises(ForwardingError, match=message):
        check_follow_me(numbers)


@pytest.mark.parametrize(("entry", "read", "message"), [
    ({"follow_me": "+4179"}, read_forwarding, "204: follow_me must be a list of numbers$"),
    ({"pikett": 41}, read_pikett, '204: pikett must be a number or ""$'),
])
def test_a_damaged_file_is_named(
    tmp_path: Path, entry: dict[str, object], read: Callable[[Path], object], message: str
) -> None:
    (tmp_path / "forwarding.json").write_text(json.dumps({"204": entry}))
    with pytest.raises(ForwardingError, match=message):
        read(tmp_path)


# ------------------------------------------------------------------ the on-call (Pikett) number

PIKETT_DEPLOYMENT = """\
[server]
data = "{data}"
[prompts]
folders = ["prompts"]
[[extensions]]
number = "206"
password = "dng-6Pq4-sF1u"
pikett = "+41797001206"
may_call_out = true
[[extensions]]
number = "210"
password = "jwe-2Gt8-mC4v"
may_call_out = {may_call_out}
[[mailboxes]]
number = "300"
[[trunks]]
name = "carrier"
host = "192.0.2.99"
allow = ["+41797001*"]
"""
PIKETT_FLOW = ("number 100 -> s\ns:\n    transfer to pikett engineers\n        else -> voicemail 300\n"
               "group engineers:\n    ring 206, 210 together for 20s\n    else -> voicemail 300\n")


def pikett_call(tmp_path: Path, may_call_out: bool = True) -> tuple[list[str], str]:
    """The numbers a call to the flow's on-call transfer rings, and where it ends."""
    (tmp_path / "prompts").mkdir(exist_ok=True)
    (tmp_path / "ivr.toml").write_text(PIKETT_DEPLOYMENT.format(data=tmp_path / "data",
                                                                may_call_out=str(may_call_out).lower()))
    (tmp_path / "flow.ivr").write_text(PIKETT_FLOW)
    config = load_config(tmp_path / "ivr.toml")
    program = load_flow([tmp_path / "flow.ivr"], prompt_folders=config.prompt_folders, config=config)
    scenario = Scenario(start=parse_local("2026-11-23 22:00", "Europe/Zurich"), caller="+41791112233",
                        answer=frozenset())
    result = simulate(program, scenario, config=config)
    legs = [r["uri"].split("@")[0] for r in result.records if r.get("event") == "leg_invite"]
    done = next(r for r in result.records if r.get("event") == "transfer_done")
    return legs, done["outcome"]


# The console's changes, in order, and what the next call to the on-call transfer rings then.
ON_CALL = [("210", "+41797001210")]
OFF_CALL = [*ON_CALL, ("206", "")]  # Daniel off call: the deployment file's number no longer rings
NOBODY = [*OFF_CALL, ("210", None)]


@pytest.mark.parametrize(("changes", "may_call_out", "rung", "outcome", "kept"), [
    pytest.param([], True, ["sip:+41797001206"], "no_answer", {}, id="ivr.toml's numbers, not the phones"),
    pytest.param(ON_CALL, True, ["sip:+41797001206", "sip:+41797001210"], "no_answer", dict(ON_CALL),
                 id="a member goes on call"),
    pytest.param(OFF_CALL, True, ["sip:+41797001210"], "no_answer", dict(OFF_CALL), id="a member goes off call"),
    pytest.param(NOBODY, True, [], "unavailable", {"206": ""}, id="nobody on call: nobody is rung"),
    pytest.param(ON_CALL, False, ["sip:+41797001206"], "no_answer", dict(ON_CALL),
                 id="a member who may not call out is not rung outside"),
])
def test_pikett_rings_the_members_on_call_numbers_as_set_in_the_console(
    tmp_path: Path, changes: list[tuple[str, str | None]], may_call_out: bool, rung: list[str], outcome: str,
    kept: dict[str, str],
) -> None:
    for extension, number in changes:
        write_pikett(tmp_path / "data", extension, number)
    legs, done = pikett_call(tmp_path, may_call_out)
    assert (sorted(legs), done) == (rung, outcome)
    assert read_pikett(tmp_path / "data") == kept


def test_follow_me_and_pikett_share_the_file_without_losing_each_other(tmp_path: Path) -> None:
    write_follow_me(tmp_path, "204", ("+41797001204",))
    write_pikett(tmp_path, "204", "+41797654321")
    write_follow_me(tmp_path, "204", None)
    assert read_forwarding(tmp_path) == {} and read_pikett(tmp_path) == {"204": "+41797654321"}
    assert json.loads((tmp_path / "forwarding.json").read_text()) == {"204": {"pikett": "+41797654321"}}


def test_follow_me_off_from_the_phone_keeps_the_numbers_aside_and_on_brings_them_back(tmp_path: Path) -> None:
    from ivr.runtime.forwarding import pause_follow_me

    write_follow_me(tmp_path, "204", ("+41797001204",))
    write_follow_me(tmp_path, "205", ())
    assert pause_follow_me(tmp_path, "204", True, ("+41790000000",)) == ()
    assert read_forwarding(tmp_path) == {"204": (), "205": ()}
    write_follow_me(tmp_path, "206", ("+41797001206",))  # the console changes another extension: 204's kept
    assert pause_follow_me(tmp_path, "204", False, ("+41790000000",)) == ("+41797001204",)
    assert read_forwarding(tmp_path)["204"] == ("+41797001204",)
    # 205 switched off in the console, switched on by phone: the deployment file's numbers again
    assert pause_follow_me(tmp_path, "205", False, ("+41790000205",)) == ("+41790000205",)
    assert "205" not in read_forwarding(tmp_path)
    # nothing to switch on: no numbers anywhere
    assert pause_follow_me(tmp_path, "207", False, ()) == ()
    assert pause_follow_me(tmp_path, "207", True, ()) == ()
    assert read_forwarding(tmp_path)["207"] == ()


def test_follow_me_off_and_on_from_the_phone_keeps_the_pikett_number(tmp_path: Path) -> None:
    from ivr.runtime.forwarding import pause_follow_me

    write_follow_me(tmp_path, "204", ("+41797001204",))
    write_pikett(tmp_path, "204", "+41797654321")
    pause_follow_me(tmp_path, "204", True, ())
    assert read_pikett(tmp_path) == {"204": "+41797654321"} and read_forwarding(tmp_path) == {"204": ()}
    assert pause_follow_me(tmp_path, "204", False, ()) == ("+41797001204",)
    assert read_pikett(tmp_path) == {"204": "+41797654321"}


def test_a_transfer_reads_an_unchanged_file_from_the_cache_and_sees_a_changed_one(tmp_path: Path) -> None:
    """Services.choices, what every transfer reads (follow-me, on-call and the numbers chosen):
    parsed once per change of forwarding.json, then served from the cache."""
    import io

    from ivr.runtime.calllog import CallLog
    from ivr.runtime.services import Services

    (tmp_path / "prompts").mkdir()
    (tmp_path / "ivr.toml").write_text(DEPLOYMENT.format(data=tmp_path / "data", may_call_out="true"))
    (tmp_path / "flow.ivr").write_text(FLOW)
    config = load_config(tmp_path / "ivr.toml")
    program = load_flow([tmp_path / "flow.ivr"], prompt_folders=config.prompt_folders, config=config)
    services = Services(config=config, program=program, ua=None, clock=None,  # type: ignore[arg-type]
                        calllog=CallLog(io.StringIO()), contact_host="127.0.0.1", media_host="127.0.0.1")
    try:
        assert services.choices().numbers == {}  # no file yet
        write_follow_me(tmp_path / "data", "204", ("+41797001999",))
        write_pikett(tmp_path / "data", "204", "+41797654321")
        first = services.choices()
        assert first.numbers == {"204": ("+41797001999", "+41797654321")}
        assert services.choices() is first  # the second transfer: not parsed again
        write_follow_me(tmp_path / "data", "204", ("+41797001888",))
        second = services.choices()
        assert second is not first and second.follow_me == {"204": ("+41797001888",)}
        assert second.numbers == {"204": ("+41797001888", "+41797654321")}
        assert services.choices() is second
    finally:
        services.executor.shutdown()
