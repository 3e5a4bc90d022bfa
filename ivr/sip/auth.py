"""HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760), both sides.

Server side, :class:`DigestChallenger` writes ``WWW-Authenticate`` challenges
and checks ``Authorization`` answers.  Nonces are stateless: each carries its
issue time and an HMAC under the challenger's secret, so any nonce we issued
can be validated without remembering it.  Only the nonce counts (``nc``) of
nonces in use are remembered, in a bounded table, to refuse replays.

Client side (trunks that challenge us), :func:`authorization_for` answers one
challenge and :func:`choose_challenge` picks which of several to answer.

Everything works on header *values* (plain strings); nothing here reads a
clock: every call is told ``now`` (epoch seconds).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ivr.sip.message import uri_key

__all__ = [
    "ALGORITHMS",
    "AuthResult",
    "DigestChallenger",
    "DigestClient",
    "DigestError",
    "authorization_for",
    "choose_challenge",
    "digest_response",
    "format_digest",
    "parse_digest",
]

log = logging.getLogger("ivr.sip.auth")

# RFC 7616 section 6.1 algorithm names -> hashlib names; "-sess" variants derive from these.
ALGORITHMS: dict[str, str] = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NC = re.compile(r"[0-9a-fA-F]{8}")


class DigestError(ValueError):
    """A challenge or credentials header that is not valid Digest syntax."""


# --------------------------------------------------------------------------- header syntax


def parse_digest(value: str) -> tuple[str, dict[str, str]]:
    """``'Digest realm="x", nonce="y"'`` -> ``("Digest", {"realm": "x", "nonce": "y"})``.

    Parameter names are lower-cased; quoted values are unescaped (RFC 7230
    quoted-string).  A repeated parameter is an error: it is how forged
    headers try to make two parsers disagree.
    """
    text = value.strip()
    m = _TOKEN.match(text)
    if not m:
        raise DigestError(f"expected an auth scheme, got {value[:40]!r}")
    scheme, pos = m.group(0), m.end()
    params: dict[str, str] = {}
    while True:
        pos = _skip(text, pos, " \t\r\n,")
        if pos >= len(text):
            return scheme, params
        name, pos = _token(text, pos)
        pos = _skip(text, pos, " \t")
        if pos >= len(text) or text[pos] != "=":
            raise DigestError(f"expected '=' after {name!r} in {scheme} header")
        pos = _skip(text, pos + 1, " \t")
        val, pos = _quoted(text, pos) if text.startswith('"', pos) else _token(text, pos)
        key = name.lower()
        if key in params:
            raise DigestError(f"parameter {name!r} given twice")
        params[key] = val
        pos = _skip(text, pos, " \t")
        if pos < len(text) and text[pos] != ",":
            raise DigestError(f"expected ',' after parameter {name!r}")


def _skip(text: str, pos: int, chars: str) -> int:
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def _token(text: str, pos: int) -> tuple[str, int]:
    m = _TOKEN.match(text, pos)
    if not m:
        raise DigestError(f"expected a token at {text[pos : pos + 20]!r}")
    return m.group(0), m.end()


def _quoted(text: str, pos: int) -> tuple[str, int]:
    out: list[str] = []
    i = pos + 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif c == '"':
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise DigestError("unterminated quoted string")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_digest(params: Sequence[tuple[str, str, bool]]) -> str:
    """``Digest`` plus ``name=value`` pairs; the flag says whether to quote the value."""
    return "Digest " + ", ".join(f"{n}={_quote(v) if q else v}" for n, v, q in params)


# --------------------------------------------------------------------------- the computation


def _hash(algorithm: str, text: str) -> str:
    base = algorithm.upper().removesuffix("-SESS")
    try:
        name = ALGORITHMS[base]
    except KeyError:
        raise DigestError(f"unsupported algorithm {algorithm!r}") from None
    return hashlib.new(name, text.encode("utf-8")).hexdigest()


def digest_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
    body: bytes = b"",
) -> str:
    """The ``response`` value (RFC 7616 section 3.4.1; RFC 2617 section 3.2.2 without qop)."""
    ha1 = _hash(algorithm, f"{username}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = _hash(algorithm, f"{ha1}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 += (
            ":" + hashlib.new(ALGORITHMS[algorithm.upper().removesuffix("-SESS")], body).hexdigest()
        )
    ha2 = _hash(algorithm, a2)
    if qop is None:
        return _hash(algorithm, f"{ha1}:{nonce}:{ha2}")
    return _hash(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# --------------------------------------------------------------------------- server side


@dataclass(frozen=True)
class AuthResult:
    """The verdict on one ``Authorization`` value.

    ``status`` says what to answer when not ``ok``: 401 (challenge again,
    with ``stale=true`` when only the nonce was out of date), 403 (the
    credentials are for another realm) or 400 (malformed header).
    ``bad_credentials`` marks a wrong password or unknown user: the attempts
    a failed-auth throttle counts.
    """

    ok: bool
    username: str | None
    stale: bool
    reason: str
    status: int = 401
    bad_credentials: bool = False


class _NonceCounts:
    """The ``nc`` values seen per nonce, bounded (RFC 7616 section 3.4.5 replay protection).

    Per nonce: the highest count and which of the 64 counts below it were
    seen (like the IPsec anti-replay window), so counts may arrive out of
    order but never twice.  When the table is full the oldest nonce is
    forgotten and ``floor`` rises to its issue time: an untracked nonce not
    newer than the floor may have been used before, so it is refused as stale.
    """

    WINDOW = 64

    def __init__(self, max_nonces: int) -> None:
        self.max_nonces = max_nonces
        self.table: OrderedDict[str, tuple[int, int, int]] = (
            OrderedDict()
        )  # nonce -> issued, max, bits
        self.floor = -1

    def use(self, nonce: str, issued: int, nc: int) -> bool:
        """Record ``nc`` for ``nonce``; False when it was used before (a replay)."""
        entry = self.table.get(nonce)
        if entry is None:
            if issued <= self.floor:
                return False
            self._insert(nonce, (issued, nc, 1))
            return True
        issued, top, bits = entry
        if nc > top:
            shift = nc - top
            bits = ((bits << shift) | 1) & ((1 << self.WINDOW) - 1) if shift < self.WINDOW else 1
            self.table[nonce] = (issued, nc, bits)
            return True
        offset = top - nc
        if offset >= self.WINDOW or bits & (1 << offset):
            return False
        self.table[nonce] = (issued, top, bits | (1 << offset))
        return True

    def _insert(self, nonce: str, entry: tuple[int, int, int]) -> None:
        self.table[nonce] = entry
        while len(self.table) > self.max_nonces:
            _, (issued, _, _) = self.table.popitem(last=False)
            self.floor = max(self.floor, issued)

    def expire(self, oldest_valid: int) -> None:
        """Forget nonces issued before ``oldest_valid``: their age refuses them anyway."""
        for nonce in [n for n, (issued, _, _) in self.table.items() if issued < oldest_valid]:
            del self.table[nonce]


class DigestChallenger:
    """Server side of Digest (RFC 7616 section 3.3-3.4, RFC 8760 for SIP, RFC 3261 section 22.4).

    Offers SHA-256 first and MD5 second (phones send MD5), with ``qop="auth"``.
    Not every client copes with that: baresip 1.0.0 gives up on any non-MD5
    challenge and sipp 3.6.1 on a SHA-256 one listed first, which is why the
    registrar asks for ``algorithms=("MD5",)`` unless configured otherwise.
    A nonce is ``<issued:8 hex><random:16 hex><hmac:32 hex>``; it is valid for
    ``nonce_ttl`` seconds, after which a correct answer gets ``stale=true``.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes | str | None = None,
        nonce_ttl: float = 300,
        *,
        max_nonces: int = 50_000,
    ) -> None:
        self.realm = realm
        self.nonce_ttl = nonce_ttl
        if secret is None:
            secret = secrets.token_bytes(32)  # nonces then die with the process: stale, not failure
        self._secret = secret.encode("utf-8") if isinstance(secret, str) else secret
        self._counts = _NonceCounts(max_nonces)
        self._last_expiry = float("-inf")

    # -- challenges

    def nonce(self, now: float) -> str:
        body = f"{int(now) & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"
        return body + self._mac(body)

    def _mac(self, body: str) -> str:
        msg = f"{body}:{self.realm}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()[:32]

    def challenge(
        self,
        now: float,
        stale: bool = False,
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
    ) -> list[str]:
        """``WWW-Authenticate`` (or ``Proxy-Authenticate``) values, strongest first (RFC 8760 section 2.4).

        All values share one nonce, so a phone that reads the first challenge
        but answers with MD5 still gets through.
        """
        nonce = self.nonce(now)
        values = []
        for algorithm in algorithms:
            if algorithm.upper().removesuffix("-SESS") not in ALGORITHMS:
                raise ValueError(f"unsupported algorithm {algorithm!r}")
            params = [("realm", self.realm, True), ("nonce", nonce, True)]
            if stale:
                params.append(("stale", "TRUE", False))
            params += [("algorithm", algorithm, False), ("qop", "auth", True)]
            values.append(format_digest(params))
        return values

    # -- verification

    def verify(
        self,
        method: str,
        uri: str,
        authorization: str,
        lookup_password: Callable[[str], str | None],
        now: float,
        *,
        source: str | None = None,
    ) -> AuthResult:
        """Check one ``Authorization`` value for a request ``method`` to ``uri`` (the Request-URI)."""
        scheme = authorization.strip().split(" ", 1)[0]
        if scheme.lower() != "digest":
            # Basic, Bearer ...: not an error, just not something we accept.
            return AuthResult(False, None, False, f"unsupported auth scheme {scheme[:20]!r}")
        try:
            _, p = parse_digest(authorization)
        except DigestError as exc:
            return AuthResult(False, None, False, f"malformed credentials: {exc}", status=400)
        missing = [k for k in ("username", "realm", "nonce", "uri", "response") if k not in p]
        if missing:
            return AuthResult(
                False, p.get("username"), False, f"credentials lack {', '.join(missing)}", 400
            )
        username = p["username"]
        problem = self._check_params(p, method, uri)
        if problem is not None:
            return AuthResult(False, username, False, problem[1], problem[0])
        password = lookup_password(username)
        if password is None:
            log.warning(
                "digest: unknown user %r (realm %r) from %s", username, self.realm, source or "?"
            )
            return AuthResult(
                False, username, False, f"unknown user {username!r}", bad_credentials=True
            )
        expected = self._expected(p, method, password)
        if not hmac.compare_digest(expected.encode(), p["response"].lower().encode()):
            log.warning(
                "digest: wrong password for user %r (realm %r) from %s",
                username,
                self.realm,
                source or "?",
            )
            return AuthResult(
                False, username, False, f"wrong password for {username!r}", bad_credentials=True
            )
        # The password is right; anything wrong from here on is only the nonce: stale=true.
        stale = self._nonce_problem(p, now)
        if stale is not None:
            return AuthResult(False, username, True, stale)
        return AuthResult(True, username, False, "ok", status=200)

    def _check_params(self, p: dict[str, str], method: str, uri: str) -> tuple[int, str] | None:
        if p["realm"] != self.realm:
            return 403, f"credentials for realm {p['realm']!r}, this is realm {self.realm!r}"
        algorithm = p.get("algorithm", "MD5")
        if algorithm.upper().removesuffix("-SESS") not in ALGORITHMS:
            return 401, f"unsupported algorithm {algorithm!r}"
        if p.get("userhash", "false").lower() == "true":
            return 401, "userhash is not supported"
        qop = p.get("qop")
        if qop is not None and qop != "auth":
            return 401, f"qop {qop!r} is not supported (we offer auth)"
        if qop == "auth" and ("cnonce" not in p or not _NC.fullmatch(p.get("nc", ""))):
            return 400, "qop=auth needs cnonce and an 8-digit hex nc"
        if not _same_uri(p["uri"], uri):
            # RFC 2617 section 3.2.2.5: the digest must be for this request.
            return 400, f"digest uri {p['uri']!r} is not the Request-URI {uri!r}"
        return None

    def _expected(self, p: dict[str, str], method: str, password: str) -> str:
        return digest_response(
            algorithm=p.get("algorithm", "MD5"),
            username=p["username"],
            realm=p["realm"],
            password=password,
            method=method,
            uri=p["uri"],
            nonce=p["nonce"],
            qop=p.get("qop"),
            nc=p.get("nc", ""),
            cnonce=p.get("cnonce", ""),
        )

    def _nonce_problem(self, p: dict[str, str], now: float) -> str | None:
        nonce = p["nonce"]
        if len(nonce) != 56 or not hmac.compare_digest(self._mac(nonce[:24]), nonce[24:]):
            return "nonce not issued by us (or before a restart)"
        try:
            issued = int(nonce[:8], 16)
        except ValueError:
            return "nonce not issued by us (or before a restart)"
        age = int(now) - issued
        if age > self.nonce_ttl or age < -2:
            return f"nonce expired ({age} s old, limit {self.nonce_ttl:g} s)"
        if now - self._last_expiry >= min(10.0, self.nonce_ttl):
            # A sweep is O(table); once every few seconds keeps REGISTER bursts cheap.
            self._counts.expire(int(now - self.nonce_ttl) - 1)
            self._last_expiry = now
        # Without qop (RFC 2069 style) a nonce is single use: count it as nc 0.
        nc = int(p["nc"], 16) if "qop" in p else 0
        if not self._counts.use(nonce, issued, nc):
            return f"nonce count {p.get('nc', '(none)')} already used with this nonce"
        return None


def _same_uri(a: str, b: str) -> bool:
    """Digest uri vs Request-URI, tolerating case of scheme/host and the order of parameters."""
    return a == b or uri_key(a) == uri_key(b)


# --------------------------------------------------------------------------- client side


def choose_challenge(values: Iterable[str]) -> str:
    """The topmost challenge with an algorithm we support (RFC 8760 section 2.4)."""
    values = list(values)
    for value in values:
        try:
            scheme, p = parse_digest(value)
        except DigestError:
            continue
        algorithm = p.get("algorithm", "MD5").upper().removesuffix("-SESS")
        if scheme.lower() == "digest" and algorithm in ALGORITHMS:
            return value
    raise DigestError(f"no usable Digest challenge among {len(values)} offered")


def authorization_for(
    challenge: str,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int,
    *,
    body: bytes = b"",
) -> str:
    """The ``Authorization`` (or ``Proxy-Authorization``) value answering ``challenge``.

    Uses ``qop=auth`` when offered (``auth-int`` only when it is all that is
    offered, over ``body``), and RFC 2069 style without qop otherwise.
    """
    scheme, p = parse_digest(challenge)
    if scheme.lower() != "digest":
        raise DigestError(f"cannot answer a {scheme} challenge")
    for key in ("realm", "nonce"):
        if key not in p:
            raise DigestError(f"challenge lacks {key}")
    algorithm = p.get("algorithm", "MD5")
    offered = [q.strip() for q in p.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in offered else ("auth-int" if "auth-int" in offered else None)
    if offered and qop is None:
        raise DigestError(f"challenge offers only qop {p['qop']!r}")
    nc_text = f"{nc:08x}"
    response = digest_response(
        algorithm=algorithm,
        username=username,
        realm=p["realm"],
        password=password,
        method=method,
        uri=uri,
        nonce=p["nonce"],
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
        body=body,
    )
    params = [
        ("username", username, True),
        ("realm", p["realm"], True),
        ("nonce", p["nonce"], True),
        ("uri", uri, True),
        ("response", response, True),
        ("algorithm", algorithm, False),
    ]
    if qop is not None:
        params += [("cnonce", cnonce, True), ("qop", qop, False), ("nc", nc_text, False)]
    if "opaque" in p:
        params.append(("opaque", p["opaque"], True))
    return format_digest(params)


class DigestClient:
    """Client side of Digest for one account, e.g. a trunk (RFC 3261 sections 22.2-22.3).

    :meth:`credentials` answers a 401 (``WWW-Authenticate`` -> ``Authorization``)
    or 407 (``Proxy-Authenticate`` -> ``Proxy-Authorization``): one header per
    realm challenged, each for that realm's topmost supported algorithm.
    :meth:`again` reuses the last challenges with the next nonce count, for
    requests sent before the server asks again (re-REGISTER, in-dialog BYE).
    """

    def __init__(
        self,
        username: str,
        password: str,
        *,
        cnonce: Callable[[], str] = lambda: secrets.token_hex(8),
    ) -> None:
        self.username = username
        self.password = password
        self._cnonce = cnonce
        self._challenges: list[tuple[str, str]] = []  # (header name to send, challenge)
        self._nc: dict[str, int] = {}  # nonce -> last count used

    def credentials(
        self,
        status: int,
        headers: Iterable[tuple[str, str]],
        method: str,
        uri: str,
        *,
        body: bytes = b"",
    ) -> list[tuple[str, str]]:
        """The headers to add when resending the request that got ``status`` with ``headers``."""
        if status not in (401, 407):
            raise DigestError(f"only 401 and 407 carry challenges, not {status}")
        wanted = "www-authenticate" if status == 401 else "proxy-authenticate"
        send_as = "Authorization" if status == 401 else "Proxy-Authorization"
        by_realm: dict[str, list[str]] = {}
        for name, value in headers:
            if name.strip().lower() != wanted:
                continue
            try:
                scheme, p = parse_digest(value)
            except DigestError:
                continue
            if scheme.lower() == "digest" and "realm" in p:
                by_realm.setdefault(p["realm"], []).append(value)
        if not by_realm:
            raise DigestError(f"the {status} carries no Digest challenge")
        self._challenges = [(send_as, choose_challenge(values)) for values in by_realm.values()]
        return self.again(method, uri, body=body)

    def again(self, method: str, uri: str, *, body: bytes = b"") -> list[tuple[str, str]]:
        """Credentials for the last challenges with the next nonce count (empty before any)."""
        out = []
        current = [parse_digest(c)[1].get("nonce", "") for _, c in self._challenges]
        # Counts of nonces no longer challenged with are never needed again.
        self._nc = {n: c for n, c in self._nc.items() if n in current}
        for (send_as, challenge), nonce in zip(self._challenges, current, strict=True):
            nc = self._nc[nonce] = self._nc.get(nonce, 0) + 1
            value = authorization_for(
                challenge, method, uri, self.username, self.password, self._cnonce(), nc, body=body
            )
            out.append((send_as, value))
        return out
