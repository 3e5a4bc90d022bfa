"""Which INVITEs ring a target: an extension's static contacts, a number through the trunk that
allows it, and the outcome (with its reason) for targets nobody can ring."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from ivr.config import load_config
from ivr.dsl.loader import load_flow
from ivr.runtime import sipconfig
from ivr.runtime.forwarding import Choices
from ivr.runtime.outcomes import Unreachable
from ivr.runtime.phones import Lines, literal_numbers
from ivr.runtime.transfer import destinations, uri_address
from ivr.sip.registrar import RegistrationStore

TOML = """
[[extensions]]
number = "201"
contacts = ["sip:201@192.0.2.21:5070", "sip:201@192.0.2.22"]

[[extensions]]
number = "202"
password = "x"

[[trunks]]
name = "carrier"
host = "198.51.100.7"
username = "acme"
password = "s3cret"
caller_id = "+41435435570"
allow = ["+4179*"]
"""


# The external numbers a caller from outside may be transferred to are the ones the flow names.
FLOW = """
number default -> start

start:
    transfer to +41791234567
        else -> other

other:
    transfer to +41901234567
        else -> hangup
"""


@pytest.fixture
def services(tmp_path: Path) -> SimpleNamespace:
    (tmp_path / "ivr.toml").write_text(TOML)
    (tmp_path / "flow.ivr").write_text(FLOW)
    config = load_config(tmp_path / "ivr.toml", data=tmp_path / "data")
    registrar = sipconfig.registrar(config, store=RegistrationStore())
    program = load_flow([tmp_path / "flow.ivr"])
    return SimpleNamespace(config=config, registrar=lambda: registrar, trunks=sipconfig.trunks(config),
                           contact_host="203.0.113.5", wall=time.time, lines=Lines(), program=program,
                           literal_numbers=literal_numbers(program, config), choices=Choices)


def test_every_contact_of_an_extension_rings(services: SimpleNamespace) -> None:
    found = destinations(services, "201", "+41791112233")
    assert [(d.uri, d.address, d.transport) for d in found] == [
        ("sip:201@192.0.2.21:5070", ("192.0.2.21", 5070), "udp"),
        ("sip:201@192.0.2.22", ("192.0.2.22", 5060), "udp"),
    ]
    assert all(d.from_uri == "sip:+41791112233@203.0.113.5" and d.auth is None for d in found)


def test_an_external_number_goes_through_its_trunk_with_credentials(services: SimpleNamespace) -> None:
    [dest] = destinations(services, "+41791234567", "+41791112233")
    assert dest.uri == "sip:+41791234567@198.51.100.7:5060" and dest.address == ("198.51.100.7", 5060)
    assert dest.from_uri == "sip:+41435435570@198.51.100.7" and dest.auth is not None and dest.via == "trunk carrier"


@pytest.mark.parametrize(("target", "outcome", "reason"), [
    ("202", "unavailable", "extension 202 has no registered or static contact"),
    ("sales", "unavailable", "'sales' is neither an extension in ivr.toml nor a telephone number"),
    ("+41901234567", "failed", "+41901234567 is not allowed by any trunk's allow patterns (carrier)"),
])
def test_unreachable_targets(services: SimpleNamespace, target: str, outcome: str, reason: str) -> None:
    with pytest.raises(Unreachable) as info:
        destinations(services, target, "")
    assert info.value.outcome == outcome and str(info.value) == reason


def test_uri_address() -> None:
    assert uri_address("sip:201@[2001:db8::1]:5070") == ("2001:db8::1", 5070)
    with pytest.raises(Unreachable, match="unusable contact"):
        uri_address("not a uri")
