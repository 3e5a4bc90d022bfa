"""The console's sans-IO parts: sessions and their expiry, the login throttle, body checks, users."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.config import ConfigError, load_config
from ivr.web.app import metrics_access
from ivr.web.routes import ApiError, validate
from ivr.web.sessions import LOGIN_FAILURES, Session, Sessions, csrf_ok
from ivr.web.users import (
    UserError,
    WebUser,
    check_password,
    find_user,
    new_token,
    set_password,
    token_user,
)

ALICE = WebUser("201", "user", "201", "201")


def test_a_session_expires_after_its_lifetime() -> None:
    sessions = Sessions(lifetime=60)
    sid, session = sessions.create(ALICE, now=1000.0)
    assert sessions.get(sid, 1059.9) is session
    assert sessions.get(sid, 1060.0) is None
    assert sessions.get(sid, 1000.0) is None  # forgotten, not only hidden


def test_csrf_tokens_compare_exactly() -> None:
    _, session = Sessions(60).create(ALICE, 0.0)
    assert csrf_ok(session, session.csrf)
    assert not csrf_ok(session, None) and not csrf_ok(session, "") and not csrf_ok(session, session.csrf + "x")


def test_the_login_throttle_is_the_registrars_with_ten_failures() -> None:
    throttle = Sessions(60).throttle
    starts = [throttle.record_failure("192.0.2.1", 100.0 + i) for i in range(LOGIN_FAILURES)]
    assert starts == [False] * 9 + [True]
    assert throttle.blocked("192.0.2.1", 110.0) and not throttle.blocked("192.0.2.2", 110.0)


@pytest.mark.parametrize("value, schema, problem", [
    ({"on": 1}, {"type": "object", "properties": {"on": {"type": "boolean"}}}, "body.on: expected boolean"),
    ({"n": True}, {"type": "object", "properties": {"n": {"type": "integer"}}}, "body.n: expected integer"),
    ([], {"type": "object"}, "body: expected object"),
    ({"s": "x" * 11}, {"type": "object", "properties": {"s": {"type": "string", "maxLength": 10}}},
     "body.s: longer than 10 characters"),
    ({"a": [1, "b"]}, {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer"}}}},
     "body.a[1]: expected integer"),
    ({"s": "maybe"}, {"type": "object", "properties": {"s": {"type": "string", "enum": ["yes", "no"]}}},
     "body.s: expected one of yes, no"),
])
def test_body_checks_name_the_first_problem(value: object, schema: dict, problem: str) -> None:  # type: ignore[type-arg]
    assert validate(value, schema, "body") == problem


CONFIG = """
[server]
data = "{data}"
[http]
admins = ["alice"]
[[extensions]]
number = "201"
username = "alice"
mailbox = "201"
[[extensions]]
number = "202"
"""


def test_users_are_the_extensions_and_admins_are_named_in_http(tmp_path: Path) -> None:
    (tmp_path / "ivr.toml").write_text(CONFIG.format(data=tmp_path / "data"))
    config = load_config(tmp_path / "ivr.toml")
    assert find_user(config, "alice") == WebUser("alice", "admin", "201", "201")
    assert find_user(config, "202") == WebUser("202", "user", "202", None)
    assert find_user(config, "201") is None  # an extension with a username logs in by that name


def test_passwords_are_argon2_hashes_and_tokens_are_kept_as_digests(tmp_path: Path) -> None:
    (tmp_path / "ivr.toml").write_text(CONFIG.format(data=tmp_path / "data"))
    config = load_config(tmp_path / "ivr.toml")
    with pytest.raises(UserError, match="^the web password must have at least 10 characters$"):
        set_password(config, "alice", "short")
    with pytest.raises(UserError, match="^no extension has the user name 'bob'$"):
        set_password(config, "bob", "long enough password")
    set_password(config, "alice", "long enough password")
    stored = (tmp_path / "data" / "web" / "users.json").read_text()
    assert "$argon2id$" in stored and "long enough password" not in stored
    assert (tmp_path / "data" / "web" / "users.json").stat().st_mode & 0o777 == 0o600
    assert check_password(config, "alice", "long enough password") == find_user(config, "alice")
    assert check_password(config, "alice", "wrong password!") is None
    assert check_password(config, "202", "long enough password") is None  # no password set
    token = new_token(config, "202", "crm")
    assert token not in (tmp_path / "data" / "web" / "users.json").read_text()
    assert token_user(config, token) == find_user(config, "202")
    assert token_user(config, token + "x") is None


@pytest.mark.parametrize("http, error", [
    ('listen = "0.0.0.0:8080"', "[http]: listen 0.0.0.0 is not loopback: set tls_cert and tls_key"),
    ('tls_cert = "c.pem"', "[http]: tls_cert and tls_key go together"),
    ("upload_limit = 10", "[http]: upload_limit must be a whole number of bytes, at least 1024"),
    ('language = "fr"', "[http]: language must be \"en\" or \"de\", got 'fr'"),
])
def test_bad_http_settings_say_what_is_wrong(tmp_path: Path, http: str, error: str) -> None:
    (tmp_path / "ivr.toml").write_text(f"[http]\n{http}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "ivr.toml")
    assert str(exc.value) == f"{tmp_path / 'ivr.toml'}: {error}"


def test_http_is_off_by_default_and_loopback_needs_no_tls(tmp_path: Path) -> None:
    assert load_config(None).http.listen is None
    (tmp_path / "ivr.toml").write_text('[http]\nlisten = "127.0.0.1"\n')
    assert load_config(tmp_path / "ivr.toml").http.listen == ("127.0.0.1", 8080)


@pytest.mark.parametrize("listen, open_", [
    ('"127.0.0.1:8080"', True), ('"[::1]:8080"', True), ('"localhost:8080"', True),
    ('"0.0.0.0:8443"', False), ('"192.0.2.10:8443"', False),
])
def test_metrics_need_an_admins_token_off_loopback(tmp_path: Path, listen: str, open_: bool) -> None:
    tls = "" if open_ else 'tls_cert = "c.pem"\ntls_key = "k.pem"\n'
    (tmp_path / "ivr.toml").write_text(f"[http]\nlisten = {listen}\n{tls}")
    http = load_config(tmp_path / "ivr.toml").http
    admin, user = WebUser("100", "admin", "100", None), WebUser("201", "user", "201", "201")
    session = Session(admin, "csrf", 0.0)
    assert metrics_access(http, admin, None) is None  # an admin's token: always
    if open_:
        assert metrics_access(http, None, None) is None
        return
    for who, cookie in ((None, None), (admin, session)):  # nobody, or a browser session instead of a token
        with pytest.raises(ApiError) as exc:
            metrics_access(http, who, cookie)
        assert (exc.value.status, str(exc.value)) == (401, "/metrics on an address other than loopback needs an "
                                                           "API token (Authorization: Bearer TOKEN, from ivr web token)")
    with pytest.raises(ApiError) as exc:
        metrics_access(http, user, None)
    assert (exc.value.status, str(exc.value)) == (403, "/metrics needs an admin's API token")
