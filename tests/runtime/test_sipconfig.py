"""The SIP layer's records built from ivr.toml (ivr.runtime.sipconfig): accounts, registrar, trunks."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.config import Config, ConfigError, Extension, load_config
from ivr.runtime import sipconfig
from ivr.sip.registrar import Account, RegistrationStore
from ivr.sip.trunk import Trunk
from tests.sip.test_registrar import DESK, NOW, YEALINK, Phone


def test_every_extension_becomes_an_account() -> None:
    config = Config(extensions=(
        Extension("201", "Reception", username="desk", password="kX9!desk", mailbox="201", may_call_out=True,
                  follow_me=("+41791234567",)),
        Extension("300", "Lobby", contacts=("sip:300@10.0.0.5",)),
    ))  # fmt: skip
    assert sipconfig.registrar_accounts(config) == (
        Account("201", username="desk", password="kX9!desk"),
        Account("300", contacts=("sip:300@10.0.0.5",)),
    )
    registrar = sipconfig.registrar(config, store=RegistrationStore())
    assert list(registrar.users) == ["desk"]
    assert [b.uri for b in registrar.contacts("300", NOW)] == ["sip:300@10.0.0.5"]


def test_every_trunk_keeps_its_settings_and_order() -> None:
    carrier = Trunk("carrier", "198.51.100.7", 5080, "tcp", "acme", "s3cret", True, "+41435435570",
                    ("+4179*", "+4178*"))
    local = Trunk("local", "192.0.2.10", allow=("112",))
    config = Config(trunks=(carrier, local))
    trunks = sipconfig.trunks(config)
    assert trunks.trunks == (carrier, local)
    assert trunks.choose("+41791234567").name == "carrier" and trunks.choose("112").name == "local"
    assert trunks.auth(trunks.choose("112")) is None and trunks.auth(trunks.choose("+41781234567")) is not None


def test_registrar_of_a_deployment(tmp_path: Path) -> None:
    toml = tmp_path / "ivr.toml"
    toml.write_text(
        """
[server]
data = "state"

[registrar]
realm = "acme"
min_expires = 120
digest_algorithms = ["SHA-256", "MD5"]
block_time = "10m"
throttle_action = "403"

[[extensions]]
number = "201"
username = "201"
password = "kX9!desk"

[[extensions]]
number = "300"
contacts = ["sip:300@10.0.0.5;transport=tcp"]
""",
        encoding="utf-8",
    )
    cfg = load_config(toml)
    assert cfg.registrar.realm == "acme" and cfg.registrar.block_time == 600.0
    reg = sipconfig.registrar(cfg)
    try:
        assert (tmp_path / "state" / "registrations.sqlite").is_file()
        assert reg.challenger.realm == "acme" and reg.algorithms == ("SHA-256", "MD5")
        assert reg.min_expires == 120 and reg.throttle_action == "403"
        assert [(b.uri, b.transport) for b in reg.contacts("300", NOW)] == [
            ("sip:300@10.0.0.5;transport=tcp", "tcp")
        ]
        assert Phone(YEALINK, "201", "kX9!desk", DESK).register(reg, NOW).status == 200
    finally:
        reg.store.close()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            'digest_algorithms = ["SHA-1"]',
            "digest_algorithms must be MD5, SHA-256 or SHA-512-256, got ['SHA-1']",
        ),
        ('throttle_action = "tarpit"', 'throttle_action must be "drop" or "403"'),
        ("min_expires = 7200", "need min_expires <= default_expires <= max_expires"),
        ('max_contacts = "5"', "max_contacts must be a whole number of at least 1, got '5'"),
        ("colour = 1", "unknown key(s) colour"),
    ],
)
def test_bad_registrar_config(tmp_path: Path, section: str, message: str) -> None:
    toml = tmp_path / "ivr.toml"
    toml.write_text(f"[registrar]\n{section}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(toml)
    assert str(info.value) == f"{toml}: [registrar]: {message}"
