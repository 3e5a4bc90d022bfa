"""Which number a forwarded call shows ("Angezeigte Nummer bei Umleitung"): the deployment keys,
the choice per leg (ivr.runtime.presentation) and how a trunk writes it (ivr.sip.trunk)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from ivr.config import ConfigError, load_config
from ivr.dsl.loader import load_flow
from ivr.runtime import sipconfig
from ivr.runtime.forwarding import Choices
from ivr.runtime.phones import Lines, literal_numbers
from ivr.runtime.presentation import Shown, person_rung, shown_for
from ivr.runtime.transfer import destinations
from ivr.sip.registrar import RegistrationStore
from ivr.sip.trunk import Trunk, Trunks

CALLER, COMPANY_LINE = "+41791112233", "+41435435580"

TOML = """
[[extensions]]
number = "201"
contacts = ["sip:201@192.0.2.21"]

[[extensions]]
number = "204"
contacts = ["sip:204@192.0.2.24"]
follow_me = ["+41797001204"]
shown_number = "company"

[[extensions]]
number = "205"
follow_me = ["+41797001205"]

[[trunks]]
name = "carrier"
host = "198.51.100.7"
caller_id = "+41435435570"
allow = ["+4179*"]
shown_number = "caller"
"""


@pytest.fixture
def services(tmp_path: Path) -> SimpleNamespace:
    (tmp_path / "ivr.toml").write_text(TOML)
    (tmp_path / "flow.ivr").write_text("number default -> start\n\nstart:\n    transfer to +41797654321 for 20s else hangup\n")
    config = load_config(tmp_path / "ivr.toml", data=tmp_path / "data")
    registrar = sipconfig.registrar(config, store=RegistrationStore())
    # the trunk takes numbers the deployment names: the on-call mobile in the flow, the follow-me ones
    program = load_flow([tmp_path / "flow.ivr"])
    return SimpleNamespace(config=config, registrar=lambda: registrar, trunks=sipconfig.trunks(config),
                           contact_host="203.0.113.5", wall=time.time, lines=Lines(), program=program,
                           literal_numbers=literal_numbers(program, config), choices=Choices)


def leg(services: SimpleNamespace, target: str, ringing: tuple[str, ...], caller: str = CALLER) -> tuple[str, dict[str, str]]:
    shown = shown_for(services.config, target, ringing, caller, COMPANY_LINE)
    [dest] = destinations(services, target, caller, shown)
    return dest.from_uri, dict(dest.headers)


def test_the_keys_are_read_with_their_defaults(services: SimpleNamespace) -> None:
    config = services.config
    assert [config.extension(n).shown_number for n in ("201", "204", "205")] == ["caller", "company", "caller"]
    assert config.trunks[0].shown_number == "caller"
    assert Trunk("t", "h").shown_number == "company"


@pytest.mark.parametrize(("section", "where"), [
    ('[[extensions]]\nnumber = "201"\nshown_number = "mine"\n', "extensions[0].shown_number"),
    ('[[trunks]]\nname = "c"\nhost = "h"\nshown_number = "caller_id"\n', "trunks[0].shown_number"),
])
def test_a_bad_value_is_refused_with_the_key(tmp_path: Path, section: str, where: str) -> None:
    (tmp_path / "ivr.toml").write_text(section)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "ivr.toml")
    value = "mine" if "mine" in section else "caller_id"
    assert str(caught.value) == f"{tmp_path / 'ivr.toml'}: {where}: expected \"caller\" or \"company\", got '{value}'"


def test_an_extensions_phone_shows_the_caller_or_the_number_dialled(services: SimpleNamespace) -> None:
    assert leg(services, "201", ("201",)) == (f"sip:{CALLER}@203.0.113.5", {})
    assert leg(services, "204", ("204",)) == (f"sip:{COMPANY_LINE}@203.0.113.5", {})


def test_through_a_trunk_that_allows_it_the_caller_is_shown_and_the_company_diverted(services: SimpleNamespace) -> None:
    # an on-call mobile that is nobody's extension: the trunk's setting
    assert leg(services, "+41797654321", ("+41797654321",)) == (f"sip:{CALLER}@203.0.113.5", {
        "P-Asserted-Identity": f"<sip:{CALLER}@203.0.113.5>",
        "Diversion": "<sip:+41435435570@203.0.113.5>;reason=unconditional",
    })
    # 205's follow-me mobile: 205 wants the caller's number
    assert leg(services, "+41797001205", ("205",))[0] == f"sip:{CALLER}@203.0.113.5"


def test_an_extension_that_wants_the_company_number_gets_it_on_its_follow_me_too(services: SimpleNamespace) -> None:
    assert leg(services, "+41797001204", ("204",)) == (
        "sip:+41435435570@203.0.113.5", {"P-Asserted-Identity": "<sip:+41435435570@203.0.113.5>"})


def test_a_caller_without_a_number_is_shown_as_the_company_through_a_trunk(services: SimpleNamespace) -> None:
    assert leg(services, "+41797654321", ("+41797654321",), caller="anonymous") == (
        "sip:+41435435570@203.0.113.5", {"P-Asserted-Identity": "<sip:+41435435570@203.0.113.5>"})
    assert leg(services, "201", ("201",), caller="anonymous")[0] == "sip:anonymous@203.0.113.5"


def test_a_trunk_that_shows_the_company_ignores_the_caller() -> None:
    trunks = Trunks([Trunk("c", "198.51.100.7", username="acme", caller_id="+41435435570", allow=("+4179*",))])
    route = trunks.route("+41791234567", local_host="203.0.113.5", caller=CALLER)
    assert route.from_uri == "sip:+41435435570@198.51.100.7"
    assert route.headers == (("P-Asserted-Identity", "<sip:+41435435570@198.51.100.7>"),)
    no_company = Trunks([Trunk("c", "h", shown_number="caller", allow=("+4179*",))])
    route = no_company.route("+41791234567", local_host="203.0.113.5", caller=CALLER)
    assert route.headers == (("P-Asserted-Identity", f"<sip:{CALLER}@203.0.113.5>"),)  # no Diversion to name


def test_the_person_rung(services: SimpleNamespace) -> None:
    config = services.config
    assert person_rung(config, "204", ()).number == "204"  # type: ignore[union-attr]
    assert person_rung(config, "+41797001204", ("201", "204")).number == "204"  # type: ignore[union-attr]
    assert person_rung(config, "+41797001204", ("201",)) is None  # not 204's call: nobody's number
    assert Shown("", COMPANY_LINE, show_caller=True).phone_user() == "ivr"
    assert Shown(CALLER, "", show_caller=False).phone_user() == CALLER  # no number dialled to show
