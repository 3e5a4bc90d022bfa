"""SIP messages on the wire: parsing and serialisation (RFC 3261 sections 7, 20, 25).

This module owns the SIP message model and nothing else: :class:`Headers`
(ordered, case-insensitive, compact forms), :class:`Request` /
:class:`Response`, the structured header values :class:`SipUri`,
:class:`NameAddr` and :class:`Via`, :func:`parse_message` for one datagram or
one framed stream message, :class:`StreamFramer` for TCP (Content-Length
framing, RFC 3261 section 18.3), and :func:`build_response` (section 8.2.6).

Parsing is tolerant where RFC 4475 asks for tolerance (line folding, LWS
around colons, slashes and semicolons, compact names, odd case, leading zeros)
and strict where an answer would otherwise be wrong (missing or inconsistent
mandatory headers, bad Content-Length, unknown SIP version).  Every failure is
a :class:`SipParseError` carrying the status to answer and, when the request
is still answerable, the request itself so a 400 can be routed back.

Header values are kept as received (after unfolding) so that
``bytes(parse_message(x)) == x`` holds for well-formed captures; structured
access (``msg.via``, ``msg.from_``, ``msg.cseq``...) parses on demand.
Bytes that are not UTF-8 survive the round trip (surrogateescape).

Added to the agreed interface (nothing renamed): ``Request.parse`` /
``Response.parse``, ``Headers.replace_first`` / ``prepend`` / ``copy``,
``Via.version`` (kept so a 505 can be routed), ``parse_uri`` (sip/sips as
:class:`SipUri`, other schemes as strings), ``canonical_name``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

SIP_VERSION = "SIP/2.0"
CRLF = "\r\n"

# RFC 3261 section 7.3.3 and the IANA registry of compact forms.
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

# Headers whose grammar is a comma-separated list (RFC 3261 section 7.3.1):
# get_all() splits these.  Authorization-family headers contain commas inside
# one value and are deliberately absent.
_LIST_HEADERS = frozenset(
    h.lower()
    for h in (
        "Via", "Contact", "Route", "Record-Route", "Allow", "Supported", "Require",
        "Proxy-Require", "Unsupported", "Accept", "Accept-Encoding", "Accept-Language",
        "Allow-Events", "Content-Encoding", "Content-Language", "In-Reply-To",
        "Alert-Info", "Call-Info", "Error-Info", "Warning", "Path", "Service-Route",
        "P-Asserted-Identity", "P-Preferred-Identity", "Reason", "Security-Client",
        "Security-Server", "Security-Verify", "Accept-Contact", "Reject-Contact",
        "Request-Disposition", "History-Info", "Diversion",
    )
)

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# gen-value = token / host / quoted-string (RFC 3261 25.1); URI params also allow escapes.
_PARAM_VALUE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~:\[\]/&$]+")
_CALL_ID_RE = re.compile(r"[!-~]+")  # callid = word ["@" word]: visible ASCII, no LWS
_HEADER_NAME_RE = re.compile(r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*:")

REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    422: "Session Interval Too Small", 423: "Interval Too Brief", 429: "Too Many Requests",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}

# Canonical spelling for headers we write or normalise (names are compared
# case-insensitively; this is only for output).
_CANONICAL = {
    n.lower(): n
    for n in (
        "Call-ID", "CSeq", "WWW-Authenticate", "Min-SE", "MIME-Version", "RAck", "RSeq",
        "Session-Expires", "Content-Length", "Content-Type", "Max-Forwards", "User-Agent",
        "Record-Route", "Retry-After", "Allow-Events", "Proxy-Authenticate",
        "Proxy-Authorization", "P-Asserted-Identity",
    )
}


# Patterns used on every message, compiled once (re's own cache is a lookup per call).
_HOST_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._]+")
_SIP_SCHEME_RE = re.compile(r"(?i)sips?:")
_LINE_RE = re.compile(r"\r?\n")
_NUL_RE = re.compile(r"(?<!\\)\x00")
_SIP_VERSION_RE = re.compile(r"SIP/\d+\.\d+", re.I)


def canonical_name(name: str) -> str:
    """Full, conventionally spelt header name for ``name`` (compact forms expanded)."""
    full = COMPACT_FORMS.get(name.lower()) if len(name) == 1 else None
    if full:
        return full
    low = name.lower()
    if low in _CANONICAL:
        return _CANONICAL[low]
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


@functools.lru_cache(maxsize=4096)
def _key(name: str) -> str:
    if len(name) == 1:
        full = COMPACT_FORMS.get(name.lower())
        if full:
            return full.lower()
    return name.lower()


class SipParseError(Exception):
    """A message that cannot be accepted as it is (RFC 3261 sections 8.2, 16.3, 21.4).

    ``status`` is the response to send (400, 413, 416, 505, 513...), ``reason``
    a human-readable explanation for the reason phrase or a Warning header,
    and ``request`` is the request when enough of it (Via, From, To, Call-ID,
    CSeq) survived to build that response; ``None`` means drop silently.
    """

    def __init__(self, status: int, reason: str, request: Request | None = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.request = request


# --------------------------------------------------------------------------- low-level helpers


def split_quoted(value: str, sep: str) -> list[str]:
    """Split ``value`` on ``sep`` outside quoted strings and ``<...>``; parts are stripped."""
    if sep not in value:
        return [value.strip()]
    if '"' not in value and "<" not in value:
        return [part.strip() for part in value.split(sep)]
    parts: list[str] = []
    buf: list[str] = []
    in_quote = False
    angle = 0
    i = 0
    while i < len(value):
        ch = value[i]
        if in_quote:
            buf.append(ch)
            if ch == "\\" and i + 1 < len(value):
                buf.append(value[i + 1])
                i += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
            buf.append(ch)
        elif ch == "<":
            angle += 1
            buf.append(ch)
        elif ch == ">" and angle:
            angle -= 1
            buf.append(ch)
        elif ch == sep and not angle:
            parts.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf).strip())
    return parts


def parse_params(text: str) -> dict[str, str | None]:
    """``;a=1;b;c="x"`` (leading ``;`` optional, LWS tolerated) -> ordered dict.

    Names are lower-cased (parameter names are case-insensitive); values are
    kept as written, quotes included, except that surrounding LWS is dropped.
    """
    params: dict[str, str | None] = {}
    for part in split_quoted(text, ";"):
        if not part:
            continue
        name, eq, val = part.partition("=")
        name = name.strip()
        if not _TOKEN_RE.fullmatch(name):
            raise ValueError(f"invalid parameter name {name!r}")
        val = val.strip()
        if eq and not (_PARAM_VALUE_RE.fullmatch(val) or (len(val) > 1 and val[0] == val[-1] == '"')):
            raise ValueError(f"invalid value for parameter {name!r}")
        params[name.lower()] = val if eq else None
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def unquote(value: str) -> str:
    """The content of a quoted-string with backslash escapes resolved."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_digits(text: str) -> bool:
    """``1*DIGIT`` (RFC 5234: ASCII only).  ``str.isdigit`` also accepts ``²`` and ``١``, which
    ``int()`` refuses or reads: a number on the wire must be plain digits."""
    return text.isascii() and text.isdigit()


@functools.lru_cache(maxsize=4096)  # a Via's or URI's host and port repeat message after message
def _parse_hostport(text: str) -> tuple[str, int | None]:
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"unterminated IPv6 reference in {text!r}")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"garbage after IPv6 reference in {text!r}")
        port_s = rest[1:] if rest else ""
    else:
        host, _, port_s = text.partition(":")
    if not host or not _HOST_RE.fullmatch(host):
        raise ValueError(f"invalid host {host!r}")
    if not port_s:
        if text.endswith(":"):
            raise ValueError(f"empty port in {text!r}")
        return host, None
    if not is_digits(port_s.strip()):
        raise ValueError(f"invalid port {port_s!r}")
    port = int(port_s)
    if not 0 < port <= 65535:
        raise ValueError(f"port {port} out of range")
    return host, port


# --------------------------------------------------------------------------- structured values


@dataclass(frozen=True)
class SipUri:
    """A sip: or sips: URI (RFC 3261 section 19.1), kept with its escapes as written."""

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str = ""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        text = text.strip()
        scheme, colon, rest = text.partition(":")
        if not colon or scheme.lower() not in ("sip", "sips"):
            raise ValueError(f"not a sip: URI: {text!r}")
        # userinfo may itself hold '?' and ';' (RFC 4475 3.1.1.2), so cut at '@' first.
        userinfo, at, hostpart = rest.rpartition("@")
        hostpart, _, headers = hostpart.partition("?")
        user: str | None = None
        password: str | None = None
        if at:
            user, pcolon, pw = userinfo.partition(":")
            password = pw if pcolon else None
            if not user or any(c in user for c in " \t<>\""):
                raise ValueError(f"invalid user part in {text!r}")
        hostport, _, param_text = hostpart.partition(";")
        host, port = _parse_hostport(hostport)
        params = parse_params(param_text) if param_text else {}
        return cls(scheme.lower(), user, password, host, port, params, headers)

    def __str__(self) -> str:
        user = ""
        if self.user is not None:
            user = self.user + (f":{self.password}" if self.password is not None else "") + "@"
        port = f":{self.port}" if self.port is not None else ""
        hdrs = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{user}{self.host}{port}{format_params(self.params)}{hdrs}"

    @property
    def transport(self) -> str:
        """Transport named by the URI (``udp`` unless ``;transport=`` or sips: says otherwise)."""
        t = self.params.get("transport")
        if t:
            return t.lower()
        return "tls" if self.scheme == "sips" else "udp"

    def with_params(self, **params: str | None) -> SipUri:
        merged = dict(self.params)
        merged.update(params)
        return SipUri(self.scheme, self.user, self.password, self.host, self.port, merged, self.headers)


# scheme ":" and no white space or angle brackets (RFC 3986 excludes them; a Contact or Route
# must give a URI the Request-URI check below accepts when it becomes one)
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:[^\s<>]+")


@functools.lru_cache(maxsize=4096)  # From, To, Contact and Request-URI repeat call after call
def parse_uri(text: str) -> SipUri | str:
    """A sip:/sips: URI as :class:`SipUri`; any other absoluteURI (tel:, urn:...) as a string.

    Parsed once per text (the value is frozen and shared; errors are not kept)."""
    text = text.strip()
    if _SIP_SCHEME_RE.match(text):
        return SipUri.parse(text)
    if not _ABSOLUTE_URI.fullmatch(text):
        raise ValueError(f"invalid URI {text!r}")
    return text


def uri_key(uri: str) -> str:
    """A URI's comparison key, as RFC 3261 section 19.1.4 mostly compares: scheme and
    host case-insensitive, user case-sensitive, parameters case-insensitive and in any
    order.  Text-level, so it also serves a URI that does not parse (a registrar must
    still find the binding to remove, a digest uri need not be a SIP URI)."""
    text = uri.strip().strip("<>")
    head, _, params = text.partition(";")
    scheme, _, rest = head.partition(":")
    user, at, host = rest.rpartition("@")
    norm = sorted(p.lower() for p in params.split(";") if p)
    return f"{scheme.lower()}:{user}{at}{host.lower()}" + "".join(f";{p}" for p in norm)


@dataclass(frozen=True)
class NameAddr:
    """A name-addr or addr-spec with header parameters: From, To, Contact, Route (RFC 3261 20.10, 25.1)."""

    display: str
    uri: SipUri | str
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        display = ""
        if text.startswith('"'):
            m = re.match(r'"((?:[^"\\]|\\.)*)"\s*', text, re.S)
            if not m:
                raise ValueError(f"unterminated display name in {text!r}")
            display = re.sub(r"\\(.)", r"\1", m.group(1))
            text = text[m.end() :]
            if not text.startswith("<"):
                raise ValueError("display name not followed by <URI>")
        lt = text.find("<")
        if lt >= 0:
            gt = text.find(">", lt)
            if gt < 0:
                raise ValueError(f"unterminated <URI> in {text!r}")
            if lt and not display:
                words = text[:lt].split()
                if not all(_TOKEN_RE.fullmatch(w) for w in words):
                    # RFC 4475 3.1.2.15: an unquoted display name is tokens only.
                    raise ValueError(f"display name {text[:lt].strip()!r} must be quoted")
                display = " ".join(words)
            uri_text, rest = text[lt + 1 : gt], text[gt + 1 :]
            if uri_text != uri_text.strip():
                # RFC 4475 3.1.2.15: LWS inside the angle brackets is invalid.
                raise ValueError(f"whitespace inside <{uri_text}>")
        else:
            uri_text, _, rest = text.partition(";")
            rest = ";" + rest if rest else ""
            if any(c in uri_text for c in ",?") and uri_text.lower().startswith("sip"):
                # 20.10: addr-spec with these characters must be in angle brackets.
                raise ValueError(f"URI with ',' or '?' must be enclosed in <>: {uri_text!r}")
        rest = rest.strip()
        if rest and not rest.startswith(";"):
            raise ValueError(f"unexpected text after URI: {rest!r}")
        return cls(display, parse_uri(uri_text), parse_params(rest))

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def user(self) -> str | None:
        return self.uri.user if isinstance(self.uri, SipUri) else None

    def __str__(self) -> str:
        disp = f"{quote(self.display)} " if self.display else ""
        return f"{disp}<{self.uri}>{format_params(self.params)}"


_VERSION_RE = re.compile(r"\d+\.\d+")
_VIA_RE = re.compile(
    r"\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+(.*)",
    re.S,
)


@dataclass(frozen=True)
class Via:
    """One Via header value, ``SIP/2.0/UDP host:port;branch=...`` (RFC 3261 20.42, RFC 3581)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    version: str = "2.0"  # kept so a 505 can still be routed (RFC 4475 3.1.2.16)

    @classmethod
    def parse(cls, text: str) -> Via:
        m = _VIA_RE.fullmatch(text)
        if not m:
            raise ValueError(f"invalid Via {text.strip()!r}")
        name, version, transport, rest = m.groups()
        if name.upper() != "SIP" or not _VERSION_RE.fullmatch(version):
            raise ValueError(f"unsupported Via protocol {name}/{version}")
        sent_by, _, param_text = rest.partition(";")
        host, port = _parse_hostport(sent_by.strip())
        return cls(transport.upper(), host, port, parse_params(param_text), version)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        value = self.params.get("rport")
        return int(value) if value and is_digits(value) else None

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host.strip("[]"), self.port

    def with_params(self, **params: str | None) -> Via:
        merged = dict(self.params)
        merged.update(params)
        return Via(self.transport, self.host, self.port, merged, self.version)

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/{self.version}/{self.transport} {self.host}{port}{format_params(self.params)}"


# --------------------------------------------------------------------------- headers

_NONE: list[str] = []  # what Headers._values returns for a name not there (never changed)
_T = TypeVar("_T")


class Headers:
    """Ordered multi-dict of SIP headers (RFC 3261 section 7.3).

    Names compare case-insensitively and compact forms (``v``, ``f``, ``i``...)
    equal their full names; each entry keeps the name as it was written so a
    parsed message serialises back to the same bytes.
    """

    __slots__ = ("_items", "_index", "_parsed")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(n, v) for n, v in items]
        # Values by normalised name, built at the first lookup and dropped by every change: a
        # message is read a dozen times and a lookup then costs one dict access, not a scan.
        self._index: dict[str, list[str]] | None = None
        # Structured values (top Via, CSeq, From, To) parsed once, dropped with the index;
        # named after the header they come from ("via", "via.top"): replace_first drops those.
        self._parsed: dict[str, object] | None = None

    def _changed(self) -> None:
        self._index = self._parsed = None

    def parsed(self, what: str, parse: Callable[[Headers], _T]) -> _T:
        """``parse(self)``, computed once until the headers change (``what`` names it: the
        header's lower-case name, then ``.`` and a suffix for a second value of one header).
        An exception is not kept: a bad value raises at every reading."""
        memo = self._parsed
        if memo is None:
            memo = self._parsed = {}
        elif what in memo:
            return memo[what]  # type: ignore[return-value]
        value = memo[what] = parse(self)
        return value

    def _values(self, key: str) -> list[str]:
        index = self._index
        if index is None:
            index = self._build_index()
        return index.get(key, _NONE)

    def _build_index(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        for n, v in self._items:
            index.setdefault(_key(n), []).append(v)
        self._index = index
        return index

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def get(self, name: str, default: str | None = None) -> str | None:
        """Value of the first header line named ``name``: a comma list comes back whole
        (``get_all`` splits it)."""
        index = self._index  # (_values inlined: the commonest reading of a message)
        values = (index if index is not None else self._build_index()).get(_key(name))
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order; comma lists split where the header's grammar allows."""
        key = _key(name)
        index = self._index
        values = (index if index is not None else self._build_index()).get(key, _NONE)
        if key not in _LIST_HEADERS:
            return list(values)
        out: list[str] = []
        for v in values:
            out.extend(p for p in split_quoted(v, ",") if p)
        return out

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))
        self._index = self._parsed = None

    def set(self, name: str, value: str) -> None:
        """Replace the first ``name`` in place (keeping its position), drop the others, or append."""
        key = _key(name)
        out: list[tuple[str, str]] = []
        done = False
        for n, v in self._items:
            if _key(n) == key:
                if not done:
                    out.append((n, value))
                    done = True
            else:
                out.append((n, v))
        if not done:
            out.append((name, value))
        self._items = out
        self._changed()

    def replace_first(self, name: str, value: str) -> None:
        """Replace the value of the first ``name`` header only, keeping name and position.

        The index and the values parsed from other headers stay (the agent stamps the top Via
        of every request it receives, after the parser has read them all)."""
        key = _key(name)
        for position, (n, _) in enumerate(self._items):
            if _key(n) == key:
                self._items[position] = (n, value)
                if self._index is not None:
                    self._index[key][0] = value  # the first line of that name, as in _items
                if self._parsed is not None:
                    for what in [w for w in self._parsed if w.partition(".")[0] == key]:
                        del self._parsed[what]
                return
        self.add(name, value)

    def remove(self, name: str) -> None:
        key = _key(name)
        self._items = [(n, v) for n, v in self._items if _key(n) != key]
        self._changed()

    def prepend(self, name: str, value: str) -> None:
        self._items.insert(0, (name, value))
        self._changed()

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def copy(self) -> Headers:
        return Headers(self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


#: Header values parsed once per text.  The messages of a dialog repeat the same From, To,
#: Via and Contact, and the agent reads them several times per message (matching, dialogs,
#: logging); the values are frozen, so one parse serves every reading.  Bounded: a flood of
#: distinct values only evicts.  Errors are not cached: a bad value raises every time.
_via = functools.lru_cache(maxsize=4096)(Via.parse)
_nameaddr = functools.lru_cache(maxsize=4096)(NameAddr.parse)


# --------------------------------------------------------------------------- messages


class _MessageMixin:
    headers: Headers
    body: bytes

    @property
    def call_id(self) -> str:
        value = self.headers.get("Call-ID")
        if not value:
            raise ValueError("missing Call-ID")
        return value

    @property
    def cseq(self) -> tuple[int, str]:
        return self.headers.parsed("cseq", _cseq)

    @property
    def via(self) -> list[Via]:
        return list(self.headers.parsed("via", _vias))

    @property
    def top_via(self) -> Via:
        return self.headers.parsed("via.top", _top_via)

    @property
    def from_(self) -> NameAddr:
        return self.headers.parsed("from", _from)

    @property
    def to(self) -> NameAddr:
        return self.headers.parsed("to", _to)

    @property
    def contact(self) -> list[NameAddr]:
        return [_nameaddr(v) for v in self.headers.get_all("Contact") if v.strip() != "*"]

    @property
    def content_type(self) -> str:
        """Media type, lower-cased, without parameters (``application/sdp``), or ``""``."""
        value = self.headers.get("Content-Type") or ""
        return value.split(";")[0].strip().lower()

    def header_tokens(self, name: str) -> list[str]:
        """Option tags / methods of a token-list header (Supported, Require, Allow), lower-cased."""
        return [v.strip().lower() for v in self.headers.get_all(name) if v.strip()]

    def _head_lines(self) -> list[str]:
        lines: list[str] = []
        has_length = False
        for name, value in self.headers:
            if _key(name) == "content-length":
                if has_length:
                    continue
                value = str(len(self.body))
                has_length = True
            lines.append(f"{name}: {value}" if value else f"{name}:")
        if not has_length:
            lines.append(f"Content-Length: {len(self.body)}")
        return lines

    def _serialise(self, start_line: str) -> bytes:
        head = CRLF.join([start_line, *self._head_lines()]) + CRLF + CRLF
        return head.encode("utf-8", "surrogateescape") + self.body


def _cseq(headers: Headers) -> tuple[int, str]:
    value = headers.get("CSeq")
    if value is None:
        raise ValueError("missing CSeq")
    parts = value.split()
    if len(parts) != 2 or not is_digits(parts[0]) or not _TOKEN_RE.fullmatch(parts[1]):
        raise ValueError(f"invalid CSeq {value!r}")
    number = int(parts[0])
    if number >= 2**31:
        raise ValueError(f"CSeq number {number} too large")
    return number, parts[1]


def _vias(headers: Headers) -> tuple[Via, ...]:
    return tuple(_via(v) for v in headers.get_all("Via"))


def _top_via(headers: Headers) -> Via:
    values = headers.get_all("Via")
    if not values:
        raise ValueError("missing Via")
    return _via(values[0])


def _from(headers: Headers) -> NameAddr:
    return _single_nameaddr(headers, "From")


def _to(headers: Headers) -> NameAddr:
    return _single_nameaddr(headers, "To")


def _single_nameaddr(headers: Headers, name: str) -> NameAddr:
    values = headers.get_all(name)
    if not values:
        raise ValueError(f"missing {name}")
    if len(values) > 1:
        raise ValueError(f"more than one {name} header")
    return _nameaddr(values[0])


@dataclass(eq=False)
class Request(_MessageMixin):
    """A SIP request (RFC 3261 section 7.1)."""

    method: str
    uri: str
    headers: Headers
    body: bytes = b""
    version: str = SIP_VERSION

    @classmethod
    def parse(cls, data: bytes) -> Request:
        """Like :func:`parse_message`, for data that must be a request."""
        message = parse_message(data)
        if not isinstance(message, Request):
            raise SipParseError(400, "expected a request, got a response")
        return message

    def __bytes__(self) -> bytes:
        return self._serialise(f"{self.method} {self.uri} {self.version}")

    @property
    def request_uri(self) -> SipUri | str:
        return parse_uri(self.uri)


@dataclass(eq=False)
class Response(_MessageMixin):
    """A SIP response (RFC 3261 section 7.2)."""

    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    version: str = SIP_VERSION

    @classmethod
    def parse(cls, data: bytes) -> Response:
        """Like :func:`parse_message`, for data that must be a response."""
        message = parse_message(data)
        if not isinstance(message, Response):
            raise SipParseError(400, "expected a response, got a request")
        return message

    def __bytes__(self) -> bytes:
        return self._serialise(f"{self.version} {self.status} {self.reason}")


Message = Request | Response


# --------------------------------------------------------------------------- parsing

#: Largest header section accepted (start line and header fields, before the blank line).
MAX_HEADER_BYTES = 64 * 1024
#: Largest body accepted (413 above it).
MAX_BODY_BYTES = 64 * 1024
#: Largest whole message (513 above it): the largest UDP datagram, so any message that can
#: travel over UDP can travel over TCP and nothing bigger ties up a stream's buffer.
MAX_MESSAGE_BYTES = 65535
#: Longest Request-URI accepted (414 above it, RFC 3261 21.4.12): phones and carriers send
#: well under 1 KB; the rest of the request stays answerable.
MAX_URI_BYTES = 8 * 1024
#: Most header fields (after unfolding) in one message: real ones carry a few dozen, RFC
#: 4475's longest 40; thousands only cost parse time (every lookup scans them).
MAX_HEADER_FIELDS = 500
#: A salvaged request (to answer 513/400 when the whole cannot be parsed) keeps at most this
#: many bytes of Via/From/To/Call-ID/CSeq: an answer must not be an amplifier.
_MAX_SALVAGE_BYTES = 8 * 1024


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    """Header block and the rest; lines may end in CRLF or (tolerated) bare LF."""
    end = data.find(b"\r\n\r\n")
    end_lf = data.find(b"\n\n")
    if end >= 0 and (end_lf < 0 or end < end_lf):
        return data[:end], data[end + 4 :]
    if end_lf >= 0:
        return data[:end_lf], data[end_lf + 2 :]
    return data.rstrip(b"\r\n"), b""


def _unfold(head: str) -> list[str]:
    """Header block -> logical lines, continuation lines joined with one SP (7.3.1)."""
    lines: list[str] = []
    for raw in _LINE_RE.split(head):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] = lines[-1].rstrip(" \t") + " " + raw.strip(" \t")
        else:
            lines.append(raw)
    return lines


def _parse_header_lines(lines: list[str]) -> Headers:
    if len(lines) > MAX_HEADER_FIELDS:
        raise SipParseError(513, f"more than {MAX_HEADER_FIELDS} header fields")
    items: list[tuple[str, str]] = []
    index: dict[str, list[str]] = {}  # every received message is read by name at once: built in this pass
    for line in lines:
        m = _HEADER_NAME_RE.match(line)
        if not m:
            raise ValueError(f"malformed header line {line[:60]!r}")
        name, value = m.group(1), line[m.end() :].strip(" \t")
        items.append((name, value))
        index.setdefault(_key(name), []).append(value)
    headers = Headers()
    headers._items, headers._index = items, index  # noqa: SLF001 -- built here, owned by the new Headers alone
    return headers


def _parse_start_line(line: str) -> tuple[str, str, str]:
    if "\t" in line or line != line.strip():
        raise SipParseError(400, "malformed start line")
    parts = line.split(" ", 2)
    if len(parts) != 3 or not all(parts[:2]):
        raise SipParseError(400, "malformed start line")
    return parts[0], parts[1], parts[2]


def parse_message(data: bytes) -> Request | Response:
    """One SIP message from a datagram or a framed stream message.

    Raises :class:`SipParseError` (never anything else) when the message
    cannot be accepted.  Over UDP a body longer than Content-Length is cut to
    it (RFC 3261 18.3); a shorter one is a 400.
    """
    try:
        return _parse(data)
    except SipParseError:
        raise
    except (ValueError, UnicodeError, IndexError) as exc:
        raise SipParseError(400, str(exc) or "malformed message") from exc


def salvage_request(head: bytes) -> Request | None:
    """The request to answer for a header section that cannot be parsed whole, or ``None``.

    For a message too large to accept (RFC 3261 21.5.14: 513) or whose framing is broken:
    ``head`` may be cut anywhere, so a last line without its line end is ignored, and only
    what a response copies (8.2.6: Via, From, To, Call-ID, CSeq) is kept, and only while
    it is small.  ``None`` when no response could be routed (no request line, no Via or
    CSeq, an ACK) or the kept headers are too large to send back.
    """
    text = head.decode("utf-8", "surrogateescape")
    text = text[: text.rfind("\n") + 1]  # a last line without its line end may be cut short
    start, _, rest = text.lstrip("\r\n").partition("\n")
    parts = start.rstrip("\r").split(" ")
    if len(parts) != 3 or not _TOKEN_RE.fullmatch(parts[0]) or parts[0] == "ACK" or start[:4].upper() == "SIP/":
        return None
    kept = Headers()
    size = 0
    for line in _LINE_RE.split(rest):
        m = _HEADER_NAME_RE.match(line)
        if not m or _key(m.group(1)) not in ("via", "from", "to", "call-id", "cseq"):
            continue
        if "\x00" in line or "\r" in line:
            return None  # what we would copy into the answer is itself broken
        size += len(line)
        if size > _MAX_SALVAGE_BYTES:
            return None
        kept.add(m.group(1), line[m.end() :].strip(" \t"))
    request = Request(parts[0], parts[1], kept)
    try:
        if request.cseq[1] != request.method:
            return None
    except ValueError:
        return None
    return _answerable(request)


def _parse(data: bytes) -> Request | Response:
    data = data.lstrip(b"\r\n")  # 7.5: ignore CRLFs before the start line
    if not data:
        raise SipParseError(400, "empty message")
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError(513, "message too large", salvage_request(data[:MAX_HEADER_BYTES]))
    head_b, body = _split_head(data)
    if len(head_b) > MAX_HEADER_BYTES:
        raise SipParseError(513, "header section too large", salvage_request(head_b[:MAX_HEADER_BYTES]))
    head = head_b.decode("utf-8", "surrogateescape")
    if "\x00" in head and _NUL_RE.search(head):
        # A NUL is only legal as a quoted-pair (RFC 4475 3.1.1.2).
        raise SipParseError(400, "NUL byte in header section", salvage_request(head_b + b"\r\n"))
    if "\r" in head.replace("\r\n", ""):
        raise SipParseError(400, "bare CR in header section", salvage_request(head_b + b"\r\n"))
    lines = head.split("\n", 1)
    start = lines[0].rstrip("\r")
    try:
        headers = _parse_header_lines(_unfold(lines[1]) if len(lines) > 1 else [])
    except SipParseError as exc:
        raise SipParseError(exc.status, exc.reason, salvage_request(head_b + b"\r\n")) from None
    except ValueError as exc:  # a malformed header line: still answer 400 if it can be routed
        raise SipParseError(400, str(exc), salvage_request(head_b + b"\r\n")) from None
    if start[:4].upper() == "SIP/":
        version, _, rest = start.partition(" ")
        code, _, reason = rest.partition(" ")
        return _finish_response(version, code, reason, headers, body)
    try:
        a, b, c = _parse_start_line(start)
    except SipParseError as exc:
        # Keep what is needed to answer 400 (RFC 4475 3.1.2.9, 3.1.2.10).
        salvaged = Request(start.split(" ", 1)[0] or "UNKNOWN", "", headers)
        raise SipParseError(exc.status, exc.reason, _answerable(salvaged)) from None
    return _finish_request(a, b, c, headers, body)


def _apply_content_length(headers: Headers, body: bytes, request: Request | None) -> bytes:
    values = headers.get_all("Content-Length")
    if not values:
        return body
    if len(set(v.strip() for v in values)) > 1:
        raise SipParseError(400, "conflicting Content-Length headers", request)
    text = values[0].strip()
    if not is_digits(text):
        raise SipParseError(400, f"invalid Content-Length {text!r}", request)
    length = int(text)
    if length > MAX_BODY_BYTES:
        raise SipParseError(413, "body too large", request)
    if length > len(body):
        raise SipParseError(400, f"Content-Length {length} but only {len(body)} body bytes", request)
    return body[:length]


def _finish_response(version: str, code: str, reason: str, headers: Headers, body: bytes) -> Response:
    if version.upper() != SIP_VERSION:
        raise SipParseError(505, f"unsupported version {version}")
    if not (is_digits(code) and len(code) == 3 and 100 <= int(code) <= 699):
        raise SipParseError(400, f"invalid status code {code!r}")
    response = Response(int(code), reason, headers, body, version)
    response.body = _apply_content_length(headers, body, None)
    _validate_common(response)
    return response


def _finish_request(method: str, uri: str, version: str, headers: Headers, body: bytes) -> Request:
    if not _TOKEN_RE.fullmatch(method):
        raise SipParseError(400, f"invalid method {method!r}")
    request = Request(method, uri, headers, body, version)
    answerable = _answerable(request)
    if not _SIP_VERSION_RE.fullmatch(version):
        raise SipParseError(400, f"malformed SIP version {version!r}", answerable)
    if version.upper() != SIP_VERSION:
        raise SipParseError(505, f"unsupported version {version}", answerable)
    if len(uri) > MAX_URI_BYTES:
        raise SipParseError(414, f"Request-URI of {len(uri)} bytes", answerable)
    if not _ABSOLUTE_URI.fullmatch(uri):
        raise SipParseError(400, f"invalid Request-URI {uri[:200]!r}", answerable)
    request.body = _apply_content_length(headers, body, answerable)
    try:
        _validate_common(request)
        _validate_request(request)
        if _SIP_SCHEME_RE.match(uri) and SipUri.parse(uri).headers:
            # 19.1.1: headers are not allowed in a Request-URI (RFC 4475 3.1.2.11).
            raise ValueError("headers in Request-URI")
    except ValueError as exc:
        raise SipParseError(400, str(exc), answerable) from exc
    return request


def _answerable(request: Request) -> Request | None:
    """The request if a response can be routed for it (8.2.6, 18.2.2): a Via and a CSeq.

    A request missing From/To/Call-ID still gets its 400 (RFC 4475 3.3.1)."""
    h = request.headers
    if not all(h.get(n) for n in ("Via", "CSeq")) or request.method == "ACK":
        return None
    try:
        request.top_via  # noqa: B018 -- raises when the response could not be routed
    except ValueError:
        return None
    return request


_REQUIRED = tuple((name, name.lower()) for name in ("Via", "From", "To", "Call-ID", "CSeq"))
_SINGLE = tuple((name, name.lower()) for name in ("CSeq", "Max-Forwards", "Content-Type"))
_NAME_ADDRS = tuple((name, name.lower()) for name in ("Contact", "Record-Route", "Route"))


def _validate_common(msg: Request | Response) -> None:
    headers = msg.headers  # the header lines by name, from the index every reading uses
    lines = (headers._index if headers._index is not None else headers._build_index()).get  # noqa: SLF001
    for name, key in _REQUIRED:
        values = lines(key)
        if not values or not values[0]:
            raise ValueError(f"missing {name}")
    for name, key in _SINGLE:  # none of them a comma list
        if len(lines(key, _NONE)) > 1:
            raise ValueError(f"more than one {name} header")
    _, method = msg.cseq
    if isinstance(msg, Request) and method != msg.method:
        raise ValueError(f"CSeq method {method} does not match {msg.method}")
    if any(v.version != "2.0" for v in msg.via):
        raise ValueError("Via with a SIP version other than 2.0")
    msg.from_  # noqa: B018
    msg.to  # noqa: B018
    if not _CALL_ID_RE.fullmatch(msg.call_id) or len(lines("call-id", _NONE)) > 1:
        # 25.1: words of visible ASCII; a Call-ID names files, journal rows and log lines
        raise ValueError("invalid Call-ID")
    for name, key in _NAME_ADDRS:
        if lines(key) is None:
            continue  # (most messages have no Route; a BYE's response no Contact)
        for value in headers.get_all(name):
            if name != "Contact" or value.strip() != "*":
                _nameaddr(value)  # a dialog built on a broken route set could not be used


def _validate_request(request: Request) -> None:
    mf = request.headers.get("Max-Forwards")
    if mf is not None and not (is_digits(mf) and int(mf) <= 255):
        raise ValueError(f"invalid Max-Forwards {mf!r}")
    expires = request.headers.get("Expires")
    if expires is not None and not is_digits(expires):
        raise ValueError(f"invalid Expires {expires!r}")



# --------------------------------------------------------------------------- stream framing


class StreamFramer:
    """Cuts a TCP byte stream into messages by Content-Length (RFC 3261 18.3).

    CRLF keep-alives (RFC 5626 section 4.4.1) between messages are skipped and
    counted.  A message that cannot be framed (no valid Content-Length) or is
    too large (a header section beyond ``max_header`` with or without its end,
    a body beyond ``max_body``, a whole beyond ``max_message``) raises
    :class:`SipParseError` carrying, when it can be routed, the request to
    answer (400, 413, 513); the stream cannot be resynchronised after that and
    the connection should be closed.  Nothing beyond the limits is buffered.
    """

    def __init__(
        self, max_header: int = MAX_HEADER_BYTES, max_body: int = MAX_BODY_BYTES, max_message: int = MAX_MESSAGE_BYTES
    ) -> None:
        self._buf = bytearray()
        self._max_header = max_header
        self._max_body = max_body
        self._max_message = max_message
        self.keepalives = 0  # double-CRLF pings seen; the transport answers each with a single CRLF

    @property
    def pending(self) -> int:
        """Bytes of a message that has begun and not yet completed."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while True:
            self._skip_crlf()
            message = self._next_message()
            if message is None:
                return out
            out.append(message)

    def _skip_crlf(self) -> None:
        n = 0
        while n < len(self._buf) and self._buf[n] in (0x0D, 0x0A):
            n += 1
        if n:
            self.keepalives += self._buf[:n].count(b"\r\n\r\n")
            del self._buf[:n]

    def _next_message(self) -> bytes | None:
        end = self._buf.find(b"\r\n\r\n", 0, self._max_header + 4)
        if end < 0 or end > self._max_header:
            if len(self._buf) > self._max_header:
                self._fail(513, "header section too large", self._max_header)
            return None
        head = bytes(self._buf[:end]).decode("utf-8", "surrogateescape")
        length = self._content_length(head, end)
        total = end + 4 + length
        if total > self._max_message:
            self._fail(513, "message too large", end)
        if len(self._buf) < total:
            return None
        message = bytes(self._buf[:total])
        del self._buf[:total]
        return message

    def _fail(self, status: int, reason: str, head_end: int) -> NoReturn:
        request = salvage_request(bytes(self._buf[:head_end]))
        self._buf.clear()
        raise SipParseError(status, reason, request)

    def _content_length(self, head: str, end: int) -> int:
        lines = _unfold(head.split("\n", 1)[1] if "\n" in head else "")
        values = [
            line.split(":", 1)[1].strip()
            for line in lines
            if ":" in line and _key(line.split(":", 1)[0].strip()) == "content-length"
        ]
        if not values:
            self._fail(400, "missing Content-Length on a stream transport", end + 2)
        if len(set(values)) > 1 or not is_digits(values[0]):
            self._fail(400, f"invalid Content-Length {values[0][:40]!r}", end + 2)
        length = int(values[0])
        if length > self._max_body:
            self._fail(413, "body too large", end + 2)
        return length


# --------------------------------------------------------------------------- responses


def build_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """A response to ``request`` per RFC 3261 8.2.6: Via (all, in order), From,
    To (with ``to_tag`` added when it has none), Call-ID, CSeq copied; then
    ``headers``.  Timestamp is echoed on 100 Trying (8.2.6.1)."""
    out = Headers()
    for name, value in request.headers:
        if _key(name) == "via":
            out.add("Via", value)
    for name in ("From", "To", "Call-ID", "CSeq"):
        copied = request.headers.get(name)
        if copied is None:
            continue
        if name == "To" and to_tag and status != 100:
            copied = _add_tag(copied, to_tag)
        out.add(name, copied)
    if status == 100 and "Timestamp" in request.headers:
        out.add("Timestamp", request.headers["Timestamp"])
    for name, value in headers:
        out.add(name, value)
    return Response(status, reason or REASON_PHRASES.get(status, "Unknown"), out, body)


def _add_tag(to_value: str, tag: str) -> str:
    try:
        if NameAddr.parse(to_value).tag:
            return to_value
    except ValueError:
        pass
    return f"{to_value};tag={tag}"
