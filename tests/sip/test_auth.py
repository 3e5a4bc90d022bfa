"""Digest authentication: RFC test vectors, and credentials written the way phones write them."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.sip.auth import (
    AuthResult,
    DigestChallenger,
    DigestClient,
    DigestError,
    authorization_for,
    choose_challenge,
    digest_response,
    parse_digest,
)

NOW = 1_790_000_000.0
URI = "sip:192.168.1.10"
USERS = {"201": "s3cret-201", "alice": "Wonder land"}


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def phone_response(
    user: str, nonce: str, uri: str, method: str = "REGISTER", *, nc: str = "", cnonce: str = ""
) -> str:
    """What a phone computes, written out independently of ivr.sip.auth (RFC 2617 section 3.2.2.1)."""
    ha1 = md5(f"{user}:ivr:{USERS[user]}")
    ha2 = md5(f"{method}:{uri}")
    if nc:
        return md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
    return md5(f"{ha1}:{nonce}:{ha2}")


def nonce_of(challenger: DigestChallenger, now: float = NOW) -> str:
    return parse_digest(challenger.challenge(now)[1])[1]["nonce"]


def yealink(nonce: str, user: str = "201", uri: str = URI) -> str:
    # Yealink T4x firmware: MD5, qop=auth last, no spaces after the commas.
    r = phone_response(user, nonce, uri, nc="00000001", cnonce="ab3e7b1a")
    return (
        f'Digest username="{user}",realm="ivr",nonce="{nonce}",uri="{uri}",'
        f'response="{r}",algorithm=MD5,cnonce="ab3e7b1a",qop=auth,nc=00000001'
    )


def baresip(nonce: str, nc: int = 1, user: str = "alice") -> str:
    cnonce = "5e6c4d7a81f3c9b2"
    r = phone_response(user, nonce, URI, nc=f"{nc:08x}", cnonce=cnonce)
    return (
        f'Digest username="{user}", realm="ivr", nonce="{nonce}", uri="{URI}", '
        f'response="{r}", cnonce="{cnonce}", qop=auth, nc={nc:08x}'
    )


def linphone(nonce: str) -> str:
    r = phone_response("alice", nonce, URI, nc="00000001", cnonce="0b6c8c2e31d2b1a9")
    return (
        f'Digest realm="ivr", nonce="{nonce}", algorithm=MD5,  username="alice",  uri="{URI}", '
        f'response="{r}", cnonce="0b6c8c2e31d2b1a9", nc=00000001, qop=auth'
    )


def old_style(nonce: str) -> str:
    # RFC 2069 style (no qop): older ATAs still send this.
    r = phone_response("201", nonce, URI)
    return f'Digest username="201", realm="ivr", nonce="{nonce}", uri="{URI}", response="{r}", algorithm=MD5'


def verify(ch: DigestChallenger, header: str, now: float = NOW, uri: str = URI) -> AuthResult:
    return ch.verify("REGISTER", uri, header, USERS.get, now, source="192.0.2.8")


# --------------------------------------------------------------------------- RFC vectors


def test_rfc2617_section_3_5_example() -> None:
    assert (
        digest_response(
            algorithm="MD5",
            username="Mufasa",
            realm="testrealm@host.com",
            password="Circle Of Life",
            method="GET",
            uri="/dir/index.html",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop="auth",
            nc="00000001",
            cnonce="0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


def test_rfc2617_example_through_the_client() -> None:
    challenge = (
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    value = authorization_for(
        challenge, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", "0a4f113b", 1
    )
    assert value == (
        'Digest username="Mufasa", realm="testrealm@host.com", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", '
        'response="6629fae49393a05397450978507c4ef1", algorithm=MD5, cnonce="0a4f113b", '
        'qop=auth, nc=00000001, opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_section_3_9_1_example(algorithm: str, expected: str) -> None:
    challenge = (
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    value = authorization_for(
        challenge,
        "GET",
        "/dir/index.html",
        "Mufasa",
        "Circle of Life",
        "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        1,
    )
    assert parse_digest(value)[1]["response"] == expected
    assert f"algorithm={algorithm}," in value


# --------------------------------------------------------------------------- challenges


def test_challenge_offers_sha256_then_md5_with_one_nonce() -> None:
    ch = DigestChallenger("ivr", b"k" * 32)
    values = ch.challenge(NOW)
    assert len(values) == 2
    s, first = parse_digest(values[0])
    _, second = parse_digest(values[1])
    assert s == "Digest"
    assert first["algorithm"] == "SHA-256" and second["algorithm"] == "MD5"
    assert first["nonce"] == second["nonce"] and len(first["nonce"]) == 56
    assert first["qop"] == "auth" and first["realm"] == "ivr"
    assert "stale" not in first
    assert values[1].startswith('Digest realm="ivr", nonce="')
    assert values[1].endswith('", algorithm=MD5, qop="auth"')
    stale = ch.challenge(NOW, stale=True, algorithms=("MD5",))
    assert len(stale) == 1 and ", stale=TRUE, algorithm=MD5" in stale[0]
    assert nonce_of(ch) != nonce_of(ch)


def test_realm_with_quotes_is_escaped_and_read_back() -> None:
    ch = DigestChallenger('Acme "HQ"', "secret")
    _, p = parse_digest(ch.challenge(NOW)[0])
    assert p["realm"] == 'Acme "HQ"'
    assert 'realm="Acme \\"HQ\\""' in ch.challenge(NOW)[0]


# --------------------------------------------------------------------------- verify: phones


@pytest.mark.parametrize("style", [yealink, baresip, linphone, old_style])
def test_phone_credentials_are_accepted(style: Callable[[str], str]) -> None:
    ch = DigestChallenger("ivr", "secret")
    result = verify(ch, style(nonce_of(ch)), now=NOW + 5)
    assert result == AuthResult(
        True, "201" if style in (yealink, old_style) else "alice", False, "ok", 200
    )


def test_sha256_round_trip() -> None:
    ch = DigestChallenger("ivr", "secret")
    value = authorization_for(
        choose_challenge(ch.challenge(NOW)), "REGISTER", URI, "alice", USERS["alice"], "c1", 1
    )
    assert "algorithm=SHA-256" in value
    assert verify(ch, value).ok


def test_md5_sess_round_trip() -> None:
    ch = DigestChallenger("ivr", "secret")
    value = authorization_for(
        ch.challenge(NOW, algorithms=("MD5-sess",))[0], "REGISTER", URI, "201", USERS["201"], "c", 7
    )
    assert verify(ch, value).ok


def test_uri_compared_leniently_but_not_ignored() -> None:
    ch = DigestChallenger("ivr", "secret")
    n = nonce_of(ch)
    header = yealink(n, uri="sip:201@IVR.example.com;transport=udp;lr")
    assert verify(ch, header, uri="sip:201@ivr.example.com;lr;transport=UDP").ok
    bad = verify(ch, yealink(nonce_of(ch), uri="sip:10.0.0.1"))
    assert (bad.ok, bad.status) == (False, 400)
    assert bad.reason == "digest uri 'sip:10.0.0.1' is not the Request-URI 'sip:192.168.1.10'"


# --------------------------------------------------------------------------- verify: refusals


def test_wrong_password_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    ch = DigestChallenger("ivr", "secret")
    header = re.sub(r'response="\w', 'response="z', yealink(nonce_of(ch)))
    caplog.set_level(logging.WARNING, logger="ivr.sip.auth")
    result = verify(ch, header)
    assert result == AuthResult(
        False, "201", False, "wrong password for '201'", 401, bad_credentials=True
    )
    assert [r.name for r in caplog.records] == ["ivr.sip.auth"]
    assert "wrong password for user '201'" in caplog.text and "192.0.2.8" in caplog.text


def test_a_different_password_is_refused() -> None:
    ch = DigestChallenger("ivr", "secret")
    header = authorization_for(ch.challenge(NOW)[1], "REGISTER", URI, "201", "guess", "c", 1)
    assert verify(ch, header).bad_credentials


def test_unknown_user_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    ch = DigestChallenger("ivr", "secret")
    header = authorization_for(ch.challenge(NOW)[1], "REGISTER", URI, "mallory", "x", "c", 1)
    caplog.set_level(logging.WARNING, logger="ivr.sip.auth")
    result = verify(ch, header)
    assert (result.ok, result.status, result.bad_credentials) == (False, 401, True)
    assert result.reason == "unknown user 'mallory'"
    assert "unknown user 'mallory'" in caplog.text


def test_replayed_nonce_count_is_stale() -> None:
    ch = DigestChallenger("ivr", "secret")
    n = nonce_of(ch)
    assert verify(ch, baresip(n, nc=1)).ok
    again = verify(ch, baresip(n, nc=1))
    assert (again.ok, again.stale, again.status, again.bad_credentials) == (False, True, 401, False)
    assert again.reason == "nonce count 00000001 already used with this nonce"
    assert verify(ch, baresip(n, nc=3)).ok
    assert verify(ch, baresip(n, nc=2)).ok  # out of order, first time: fine
    assert verify(ch, baresip(n, nc=2)).stale
    assert verify(ch, baresip(n, nc=200)).ok
    assert verify(ch, baresip(n, nc=100)).stale  # fell out of the 64-count window


def test_nonce_without_qop_is_single_use() -> None:
    ch = DigestChallenger("ivr", "secret")
    header = old_style(nonce_of(ch))
    assert verify(ch, header).ok
    assert verify(ch, header).stale


def test_expired_nonce_is_stale_only_with_the_right_password() -> None:
    ch = DigestChallenger("ivr", "secret", nonce_ttl=300)
    n = nonce_of(ch)
    assert verify(ch, baresip(n), now=NOW + 300).ok
    late = verify(ch, baresip(n, nc=2), now=NOW + 301)
    assert (late.ok, late.stale) == (False, True)
    assert late.reason == "nonce expired (301 s old, limit 300 s)"
    wrong = baresip(n, nc=3).replace('response="', 'response="f')
    assert verify(ch, wrong, now=NOW + 301).bad_credentials


def test_nonce_from_another_secret_or_tampered_is_stale() -> None:
    before_restart = DigestChallenger("ivr", "old secret")
    ch = DigestChallenger("ivr", "new secret")
    result = verify(ch, baresip(nonce_of(before_restart)))
    assert (result.stale, result.reason) == (True, "nonce not issued by us (or before a restart)")
    n = nonce_of(ch)
    forged = f"{int(NOW) + 100:08x}" + n[8:]  # push the issue time forward
    assert verify(ch, baresip(forged)).stale
    assert verify(ch, baresip("abc")).stale


def test_wrong_realm_is_403() -> None:
    ch = DigestChallenger("ivr", "secret")
    header = baresip(nonce_of(ch)).replace('realm="ivr"', 'realm="asterisk"')
    result = verify(ch, header)
    assert (result.ok, result.status) == (False, 403)
    assert result.reason == "credentials for realm 'asterisk', this is realm 'ivr'"


@pytest.mark.parametrize(
    ("header", "status", "reason"),
    [
        ('Digest username="201", realm="ivr"', 400, "credentials lack nonce, uri, response"),
        ("Basic MjAxOnNlY3JldA==", 401, "unsupported auth scheme 'Basic'"),
        ('Bearer token="x"', 401, "unsupported auth scheme 'Bearer'"),
        (
            'Digest username="201", realm="ivr", nonce="n", uri="u", response="r", username="x"',
            400,
            "malformed credentials: parameter 'username' given twice",
        ),
        (
            'Digest username="201, realm=ivr',
            400,
            "malformed credentials: unterminated quoted string",
        ),
        (
            'Digest username="201", realm="ivr", nonce="n", uri="sip:192.168.1.10", response="r", qop=auth',
            400,
            "qop=auth needs cnonce and an 8-digit hex nc",
        ),
        (
            'Digest username="201", realm="ivr", nonce="n", uri="u", response="r", algorithm=SHA-1',
            401,
            "unsupported algorithm 'SHA-1'",
        ),
        (
            'Digest username="201", realm="ivr", nonce="n", uri="u", response="r", qop=auth-int, nc=00000001, cnonce="c"',
            401,
            "qop 'auth-int' is not supported (we offer auth)",
        ),
        (
            'Digest username="x", realm="ivr", nonce="n", uri="u", response="r", userhash=true',
            401,
            "userhash is not supported",
        ),
    ],
)
def test_malformed_and_unsupported_credentials(header: str, status: int, reason: str) -> None:
    result = verify(DigestChallenger("ivr", "secret"), header)
    assert (result.ok, result.status, result.bad_credentials) == (False, status, False)
    assert result.reason.startswith(reason)


def test_nonce_table_is_bounded_and_forgotten_nonces_stay_refused() -> None:
    ch = DigestChallenger("ivr", "secret", max_nonces=3)
    nonces = [nonce_of(ch, NOW + i) for i in range(5)]
    for i, n in enumerate(nonces):
        assert verify(ch, baresip(n), now=NOW + i).ok
    assert len(ch._counts.table) == 3
    # The first two were forgotten: replays of them cannot slip through.
    assert verify(ch, baresip(nonces[0]), now=NOW + 5).stale
    assert verify(ch, baresip(nonces[1], nc=2), now=NOW + 5).stale
    assert verify(ch, baresip(nonces[4], nc=2), now=NOW + 5).ok


def test_expired_nonces_leave_the_table() -> None:
    ch = DigestChallenger("ivr", "secret", nonce_ttl=60)
    assert verify(ch, baresip(nonce_of(ch))).ok
    assert verify(ch, baresip(nonce_of(ch, NOW + 100)), now=NOW + 100).ok
    assert len(ch._counts.table) == 1


# --------------------------------------------------------------------------- client side


def test_choose_challenge_takes_the_topmost_supported() -> None:
    values = [
        'Digest realm="x", nonce="1", algorithm=SHA-512-999, qop="auth"',
        'Digest realm="x", nonce="2", algorithm=SHA-256, qop="auth"',
        'Digest realm="x", nonce="3", qop="auth"',
    ]
    assert choose_challenge(values) == values[1]
    assert choose_challenge(values[2:]) == values[2]
    with pytest.raises(DigestError, match="no usable Digest challenge among 1 offered"):
        choose_challenge(values[:1])


def test_client_without_qop_and_with_only_auth_int() -> None:
    plain = authorization_for('Digest realm="r", nonce="n"', "INVITE", "sip:x@y", "u", "p", "c", 1)
    assert "qop" not in plain and "cnonce" not in plain
    assert parse_digest(plain)[1]["response"] == md5(f"{md5('u:r:p')}:n:{md5('INVITE:sip:x@y')}")
    body = b"v=0\r\n"
    value = authorization_for(
        'Digest realm="r", nonce="n", qop="auth-int"',
        "INVITE",
        "sip:x@y",
        "u",
        "p",
        "c",
        2,
        body=body,
    )
    ha2 = md5(f"INVITE:sip:x@y:{hashlib.md5(body).hexdigest()}")
    assert parse_digest(value)[1]["response"] == md5(f"{md5('u:r:p')}:n:00000002:c:auth-int:{ha2}")
    with pytest.raises(DigestError, match="challenge lacks nonce"):
        authorization_for('Digest realm="r"', "INVITE", "sip:x@y", "u", "p", "c", 1)
    with pytest.raises(DigestError, match="cannot answer a Basic challenge"):
        authorization_for('Basic realm="r"', "INVITE", "sip:x@y", "u", "p", "c", 1)


# --------------------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_any_header_parses_or_raises_digest_error(text: str) -> None:
    try:
        parse_digest(text)
    except DigestError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='Digest usernam="ic,=rlnoquthp 0123456789\\', max_size=120))
def test_verify_never_raises(text: str) -> None:
    result = verify(DigestChallenger("ivr", "secret"), text)
    assert not result.ok


# --------------------------------------------------------------------------- DigestClient (trunks)


def test_digest_client_answers_our_own_challenger() -> None:
    ch = DigestChallenger("carrier", "secret")
    client = DigestClient("201", USERS["201"], cnonce=lambda: "fixed")
    headers = [("Via", "x"), *(("WWW-Authenticate", v) for v in ch.challenge(NOW))]
    [(name, value)] = client.credentials(401, headers, "REGISTER", URI)
    assert name == "Authorization" and "algorithm=SHA-256" in value and "nc=00000001" in value
    ok = ch.verify("REGISTER", URI, value, USERS.get, NOW)
    assert ok.ok
    [(_, refresh)] = client.again("REGISTER", URI)
    assert "nc=00000002" in refresh
    assert ch.verify("REGISTER", URI, refresh, USERS.get, NOW + 60).ok


def test_digest_client_answers_a_proxy_challenge_per_realm() -> None:
    client = DigestClient("u", "p", cnonce=lambda: "c")
    headers = [
        ("Proxy-Authenticate", 'Digest realm="edge", nonce="n1", qop="auth"'),
        ("Proxy-Authenticate", 'Digest realm="core", nonce="n2", algorithm=SHA-256, qop="auth"'),
        ("Proxy-Authenticate", 'Digest realm="core", nonce="n3", algorithm=MD5, qop="auth"'),
        ("Proxy-Authenticate", 'Basic realm="old"'),
    ]
    creds = client.credentials(407, headers, "INVITE", "sip:+41441234567@carrier")
    assert [n for n, _ in creds] == ["Proxy-Authorization", "Proxy-Authorization"]
    assert [parse_digest(v)[1]["nonce"] for _, v in creds] == ["n1", "n2"]
    with pytest.raises(DigestError, match="the 401 carries no Digest challenge"):
        client.credentials(401, headers, "INVITE", "sip:x@y")
    with pytest.raises(DigestError, match="only 401 and 407 carry challenges, not 403"):
        client.credentials(403, headers, "INVITE", "sip:x@y")
    assert DigestClient("u", "p").again("BYE", "sip:x@y") == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=300), max_size=60))
def test_nonce_count_window_matches_a_simple_model(counts: list[int]) -> None:
    from ivr.sip.auth import _NonceCounts

    table = _NonceCounts(max_nonces=10)
    seen: set[int] = set()
    top = 0
    for nc in counts:
        # Accepted exactly when never seen and not more than 63 below the highest count so far.
        expected = nc not in seen and nc > top - _NonceCounts.WINDOW
        assert table.use("n", 100, nc) is expected, (nc, top)
        if expected:
            seen.add(nc)
            top = max(top, nc)
