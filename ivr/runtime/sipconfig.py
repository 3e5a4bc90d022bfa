"""The SIP layer's records, built from the deployment file.

ivr.sip knows no ``ivr.toml``: its registrar serves :class:`~ivr.sip.registrar.Account`
records and its outbound routing uses :class:`~ivr.sip.trunk.Trunk` records (which
``[[trunks]]`` entries are as they are read).  This module is the one place that turns
``[[extensions]]`` and ``[registrar]`` into accounts and a registrar, and the trunks into
:class:`~ivr.sip.trunk.Trunks`.
"""

from __future__ import annotations

from ivr.config import Config
from ivr.sip.auth import DigestChallenger
from ivr.sip.registrar import Account, BindingStore, Registrar, RegistrationStore
from ivr.sip.throttle import AuthThrottle
from ivr.sip.trunk import Trunks


def registrar_accounts(config: Config) -> tuple[Account, ...]:
    """One account per extension: its number, digest credentials and static contacts."""
    return tuple(Account(e.number, e.username, e.password, e.contacts) for e in config.extensions)


def registrar(config: Config, store: BindingStore | None = None) -> Registrar:
    """The registrar of a deployment: bindings in ``<data>/registrations.sqlite`` unless ``store`` is given
    (the server passes its storage's, :meth:`ivr.storage.Storage.bindings`)."""
    rc = config.registrar
    if store is None:
        config.data.mkdir(parents=True, exist_ok=True)
        store = RegistrationStore(config.data / "registrations.sqlite")
    return Registrar(
        store,
        DigestChallenger(rc.realm, rc.nonce_secret or None, nonce_ttl=rc.nonce_ttl),
        registrar_accounts(config),
        throttle=AuthThrottle(rc.max_failures, rc.failure_window, rc.block_time),
        throttle_action=rc.throttle_action,
        min_expires=rc.min_expires,
        max_expires=rc.max_expires,
        default_expires=rc.default_expires,
        max_contacts=rc.max_contacts,
        domains=rc.domains or None,
        algorithms=rc.digest_algorithms,
    )


def trunks(config: Config) -> Trunks:
    """The deployment's trunks in file order (the order they are tried in), one digest client per
    authenticated trunk."""
    return Trunks(config.trunks)
