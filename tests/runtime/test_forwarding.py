"""Follow-me numbers an extension's owner sets in the console (ivr.runtime.forwarding) ring on the next transfer."""

from __future__ import annotations

import json
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


def test_the_deployment_files_follow_me_rings_without_a_choice_in_the_console(tmp_path: Path) -> None:
    assert "sip:+41797001204" in invites(tmp_path)


def test_the_owners_choice_replaces_the_deployment_files_numbers(tmp_path: Path) -> None:
    write_follow_me(tmp_path / "data", "204", ("+41797001999",))
    legs = invites(tmp_path)
    assert "sip:+41797001999" in legs and "sip:+41797001204" not in legs


def test_an_owner_who_may_not_call_out_cannot_send_calls_out_through_the_console(tmp_path: Path) -> None:
    write_follow_me(tmp_path / "data", "204", ("+41797001999",))
    legs = invites(tmp_path, may_call_out=False)
    assert "sip:+41797001999" not in legs  # the trunk is the deployment's, not the user's to choose


def test_an_empty_choice_turns_follow_me_off_and_none_restores_it(tmp_path: Path) -> None:
    write_follow_me(tmp_path / "data", "204", ())
    assert not [leg for leg in invites(tmp_path) if leg.startswith("sip:+")]
    write_follow_me(tmp_path / "data", "204", None)
    assert read_forwarding(tmp_path / "data") == {}
    assert "sip:+41797001204" in invites(tmp_path)


def test_numbers_are_checked_and_a_damaged_file_is_named(tmp_path: Path) -> None:
    assert check_follow_me(["+41 79 700 12 04", "201"]) == ("+41797001204", "201")
    with pytest.raises(ForwardingError, match=r"^not a phone number: 'sip:evil@x' \(digits, optionally starting with \+\)$"):
        check_follow_me(["sip:evil@x"])
    with pytest.raises(ForwardingError, match="^at most 5 follow-me numbers, got 6$"):
        check_follow_me(["201"] * 6)
    (tmp_path / "forwarding.json").write_text(json.dumps({"204": {"follow_me": "+4179"}}))
    with pytest.raises(ForwardingError, match="204: follow_me must be a list of numbers$"):
        read_forwarding(tmp_path)


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


def test_pikett_rings_the_members_on_call_numbers_and_members_go_on_and_off_call_in_the_console(
    tmp_path: Path,
) -> None:
    assert pikett_call(tmp_path) == (["sip:+41797001206"], "no_answer")  # ivr.toml's: not the phones
    write_pikett(tmp_path / "data", "210", "+41797001210")
    assert sorted(pikett_call(tmp_path)[0]) == ["sip:+41797001206", "sip:+41797001210"]
    write_pikett(tmp_path / "data", "206", "")  # Daniel off call: the deployment file's number no longer rings
    assert pikett_call(tmp_path)[0] == ["sip:+41797001210"]
    write_pikett(tmp_path / "data", "210", None)
    assert pikett_call(tmp_path) == ([], "unavailable")  # nobody on call: nobody is rung
    assert read_pikett(tmp_path / "data") == {"206": ""}


def test_an_on_call_number_of_a_member_who_may_not_call_out_does_not_go_out(tmp_path: Path) -> None:
    write_pikett(tmp_path / "data", "210", "+41797001210")
    assert pikett_call(tmp_path, may_call_out=False)[0] == ["sip:+41797001206"]


def test_follow_me_and_pikett_share_the_file_without_losing_each_other(tmp_path: Path) -> None:
    write_follow_me(tmp_path, "204", ("+41797001204",))
    write_pikett(tmp_path, "204", "+41797654321")
    write_follow_me(tmp_path, "204", None)
    assert read_forwarding(tmp_path) == {} and read_pikett(tmp_path) == {"204": "+41797654321"}
    assert json.loads((tmp_path / "forwarding.json").read_text()) == {"204": {"pikett": "+41797654321"}}
    (tmp_path / "forwarding.json").write_text(json.dumps({"204": {"pikett": 41}}))
    with pytest.raises(ForwardingError, match='204: pikett must be a number or ""$'):
        read_pikett(tmp_path)


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
