"""SDP bodies (RFC 4566) and the offer/answer model for one audio stream (RFC 3264).

This module owns the wire form of session descriptions (:class:`SessionDescription`
with ``parse`` and ``__bytes__``) and the decisions ivr takes on them:

* :func:`negotiate` answers an offer that arrived in an INVITE or re-INVITE,
* :func:`make_offer` builds our offer for outgoing INVITEs and for late-offer
  re-INVITEs (the INVITE came without SDP, we offer in the 200),
* :func:`parse_answer` checks the answer to one of our offers.

All three return or consume an :class:`Answer`: what the media layer needs
(codec, telephone-event payload type, where to send, ptime, hold state).
Nothing here touches sockets or clocks.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

__all__ = [
    "Answer",
    "Attribute",
    "Codec",
    "Connection",
    "Media",
    "NegotiationError",
    "Origin",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "make_offer",
    "negotiate",
    "parse_answer",
]

CRLF = "\r\n"
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
# Our direction given theirs (RFC 3264 section 6.1): what they send we receive.
_COMPLEMENT = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
# RTP profiles we can answer without SRTP/DTLS (RFC 3551, RFC 4585).
_PLAIN_RTP = ("RTP/AVP", "RTP/AVPF")
DEFAULT_PTIME = 20
DTMF_EVENTS = "0-16"  # RFC 4733 section 3.2: digits 0-9 * # A-D and flash (16)


class SdpError(ValueError):
    """A body that is not a session description; ``status`` is what to answer (400)."""

    def __init__(self, message: str, *, line: int | None = None, status: int = 400) -> None:
        where = f"SDP line {line}: " if line is not None else "SDP: "
        super().__init__(where + message)
        self.line = line
        self.status = status


class NegotiationError(Exception):
    """No usable audio stream in an offer or answer (RFC 3264 section 6): answer ``status`` (488)."""

    def __init__(self, reason: str, status: int = 488) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# --------------------------------------------------------------------------- wire types


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


@dataclass(frozen=True)
class Origin:
    """The ``o=`` line (RFC 4566 section 5.2); ``version`` grows with every changed body."""

    username: str
    session_id: str
    version: int
    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    @classmethod
    def parse(cls, value: str) -> Origin:
        parts = value.split()
        if len(parts) != 6 or not parts[2].isdecimal():
            raise ValueError(
                f"o= needs 6 fields '<user> <id> <version> IN IP4 <addr>', got {value!r}"
            )
        return cls(parts[0], parts[1], int(parts[2]), parts[5], parts[3], parts[4])

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True)
class Connection:
    """A ``c=`` line (RFC 4566 section 5.7); ``address`` keeps a multicast ``/ttl`` suffix."""

    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    @classmethod
    def parse(cls, value: str) -> Connection:
        parts = value.split()
        if len(parts) != 3:
            raise ValueError(f"c= needs 3 fields 'IN IP4 <addr>', got {value!r}")
        return cls(parts[2], parts[0], parts[1])

    @property
    def host(self) -> str:
        return self.address.split("/", 1)[0]

    @property
    def is_hold(self) -> bool:
        """The pre-RFC 3264 way to put a call on hold (RFC 2543): ``c=IN IP4 0.0.0.0``."""
        return self.host in ("0.0.0.0", "::")

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True)
class Attribute:
    """An ``a=`` line (RFC 4566 section 5.13): a property ``a=name`` or a value ``a=name:value``."""

    name: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Attribute:
        name, sep, value = text.partition(":")
        return cls(name, value if sep else None)

    @functools.cached_property  # looked up by every attribute search; the attribute is frozen
    def key(self) -> str:
        """The name for lookups: stray blanks (``a=sendonly `` from some stacks) ignored."""
        return self.name.strip()

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


_RTPMAP = re.compile(r"\s*(\d+)\s+([^/\s]+)/(\d+)(?:/(\d+))?\s*")
_M_PORT = re.compile(r"(\d+)(?:/(\d+))?")


@dataclass(frozen=True)
class RtpMap:
    """``a=rtpmap:<pt> <name>/<rate>[/<channels>]`` (RFC 4566 section 6)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    @classmethod
    def parse(cls, value: str) -> RtpMap:
        m = _RTPMAP.fullmatch(value)
        if not m:
            raise ValueError(f"a=rtpmap needs '<pt> <name>/<rate>', got {value!r}")
        channels = int(m.group(4)) if m.group(4) else None
        return cls(int(m.group(1)), m.group(2), int(m.group(3)), channels)

    def matches(self, name: str, clock_rate: int = 8000) -> bool:
        # Encoding names are case-insensitive (RFC 4855 section 3); mono only.
        return (
            self.encoding.lower() == name.lower()
            and self.clock_rate == clock_rate
            and self.channels in (None, 1)
        )

    def __str__(self) -> str:
        tail = f"/{self.channels}" if self.channels is not None else ""
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{tail}"


# Static payload types used without an rtpmap (RFC 3551 table 4), audio only.
STATIC_PAYLOAD_TYPES: dict[int, RtpMap] = {
    0: RtpMap(0, "PCMU", 8000, 1),
    3: RtpMap(3, "GSM", 8000, 1),
    4: RtpMap(4, "G723", 8000, 1),
    8: RtpMap(8, "PCMA", 8000, 1),
    9: RtpMap(9, "G722", 8000, 1),
    18: RtpMap(18, "G729", 8000, 1),
}
_STATIC_BY_NAME = {rm.encoding: pt for pt, rm in STATIC_PAYLOAD_TYPES.items()}


#: ``a=`` lines and ``a=rtpmap`` values parsed once per text (every call from a phone offers
#: the same ones; both are frozen, so one parse serves every offer).
_attribute = functools.lru_cache(maxsize=1024)(Attribute.parse)
_rtpmap = functools.lru_cache(maxsize=1024)(RtpMap.parse)


@dataclass(frozen=True)
class Media:
    """One media description: ``m=`` and its ``i= c= b= k= a=`` lines (RFC 4566 section 5.14)."""

    kind: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    title: str | None = None
    connection: Connection | None = None
    bandwidths: tuple[str, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()  # unknown line types, kept for the round trip

    @classmethod
    def parse_m_line(cls, value: str) -> Media:
        parts = value.split()
        if len(parts) < 4:
            raise ValueError(f"m= needs '<media> <port> <proto> <fmt> ...', got {value!r}")
        m = _M_PORT.fullmatch(parts[1])
        if not m or int(m.group(1)) > 65535:
            raise ValueError(f"m= port must be 0-65535, got {parts[1]!r}")
        count = int(m.group(2)) if m.group(2) else None
        return cls(parts[0], int(m.group(1)), parts[2], tuple(parts[3:]), port_count=count)

    def m_line(self) -> str:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        return " ".join([self.kind, port, self.proto, *self.formats])

    def lines(self) -> list[str]:
        out = [f"m={self.m_line()}"]
        if self.title is not None:
            out.append(f"i={self.title}")
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [f"b={b}" for b in self.bandwidths]
        if self.key is not None:
            out.append(f"k={self.key}")
        out += [f"a={a}" for a in self.attributes]
        out += [f"{t}={v}" for t, v in self.extra]
        return out

    # -- attribute lookups

    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=name:value`` (``""`` for a property ``a=name``)."""
        for a in self.attributes:
            if a.key == name:
                return a.value if a.value is not None else ""
        return None

    def attribute_values(self, name: str) -> list[str]:
        return [a.value for a in self.attributes if a.key == name and a.value is not None]

    @functools.cached_property  # read by each step of a negotiation; the media is frozen
    def rtpmaps(self) -> Mapping[int, RtpMap]:
        """Payload type -> mapping, static types (0, 8 ...) included when not mapped explicitly."""
        maps: dict[int, RtpMap] = {}
        for value in self.attribute_values("rtpmap"):
            try:
                rm = _rtpmap(value)
            except ValueError:
                continue  # one bad rtpmap must not cost the whole call
            maps.setdefault(rm.payload_type, rm)
        for fmt in self.formats:
            if fmt.isdecimal() and int(fmt) not in maps and int(fmt) in STATIC_PAYLOAD_TYPES:
                maps[int(fmt)] = STATIC_PAYLOAD_TYPES[int(fmt)]
        return maps

    def fmtp(self, payload_type: int) -> str | None:
        for value in self.attribute_values("fmtp"):
            pt, _, params = value.partition(" ")
            if pt.strip() == str(payload_type):
                return params.strip()
        return None

    def direction(self, default: str = "sendrecv") -> str:
        for a in self.attributes:
            if a.key in DIRECTIONS and a.value is None:
                return a.key
        return default

    @property
    def ptime(self) -> int | None:
        value = self.attribute("ptime")
        # Whole milliseconds; some stacks write "20.0". Nonsense (0, -5, inf) means "not given".
        m = re.fullmatch(r"\s*(\d{1,4})(?:\.\d*)?\s*", value or "")
        return int(m.group(1)) if m and 0 < int(m.group(1)) <= 1000 else None


@dataclass(frozen=True)
class SessionDescription:
    """A whole SDP body (RFC 4566 section 5).

    ``parse`` accepts CRLF or bare LF line ends and fields in any order;
    ``bytes()`` writes CRLF and the order of RFC 4566 section 5, so a body
    that followed the RFC comes back byte for byte.
    """

    origin: Origin
    session_name: str = "-"
    version: int = 0
    information: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[str, ...] = ()
    timing: tuple[tuple[str, str], ...] = (("t", "0 0"),)  # t= and r= lines in order
    zone: str | None = None
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    media: tuple[Media, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        return _Parser(data).run()

    def __bytes__(self) -> bytes:
        return (CRLF.join(self.lines()) + CRLF).encode("utf-8")

    def lines(self) -> list[str]:
        out = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        optional = (("i", self.information), ("u", self.uri))
        out += [f"{t}={v}" for t, v in optional if v is not None]
        out += [f"e={v}" for v in self.emails] + [f"p={v}" for v in self.phones]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [f"b={b}" for b in self.bandwidths]
        out += [f"{t}={v}" for t, v in self.timing]
        out += [f"{t}={v}" for t, v in (("z", self.zone), ("k", self.key)) if v is not None]
        out += [f"a={a}" for a in self.attributes]
        out += [f"{t}={v}" for t, v in self.extra]
        for m in self.media:
            out += m.lines()
        return out

    def direction(self) -> str:
        for a in self.attributes:
            if a.key in DIRECTIONS and a.value is None:
                return a.key
        return "sendrecv"

    def media_connection(self, media: Media) -> Connection | None:
        """The media-level ``c=`` or else the session-level one (RFC 4566 section 5.7)."""
        return media.connection or self.connection


@dataclass
class _MediaDraft:
    m: Media
    single: dict[str, str] = field(default_factory=dict)  # i= c= k=
    bandwidths: list[str] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)

    def build(self) -> Media:
        conn = self.single.get("c")
        return replace(
            self.m,
            title=self.single.get("i"),
            connection=Connection.parse(conn) if conn is not None else None,
            bandwidths=tuple(self.bandwidths),
            key=self.single.get("k"),
            attributes=tuple(self.attributes),
            extra=tuple(self.extra),
        )


class _Parser:
    """Line-by-line reader; every error names the line."""

    _LINE = re.compile(r"([a-z])=(.*)")
    _SINGLE = "vosiuczk"  # session-level types allowed at most once

    def __init__(self, data: bytes | str) -> None:
        if isinstance(data, bytes | bytearray):
            try:
                data = bytes(data).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SdpError(f"body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
        self.text = data
        self.single: dict[str, str] = {}
        self.multi: dict[str, list[str]] = {"e": [], "p": [], "b": []}
        self.timing: list[tuple[str, str]] = []
        self.attributes: list[Attribute] = []
        self.extra: list[tuple[str, str]] = []
        self.media: list[_MediaDraft] = []

    def run(self) -> SessionDescription:
        lines = self.text.split("\n")
        seen_any = False
        for number, raw in enumerate(lines, start=1):
            line = raw[:-1] if raw.endswith("\r") else raw
            if not line.strip():
                continue  # tolerated: some stacks add a blank line at the end
            m = self._LINE.fullmatch(line)
            if not m:
                raise SdpError(f"expected '<letter>=<value>', got {line[:60]!r}", line=number)
            if not seen_any and m.group(1) != "v":
                raise SdpError("a session description starts with v=", line=number)
            seen_any = True
            try:
                self._line(m.group(1), m.group(2), number)
            except SdpError:
                raise
            except ValueError as exc:
                raise SdpError(str(exc), line=number) from None
        if not seen_any:
            raise SdpError("empty body")
        return self._finish()

    def _line(self, kind: str, value: str, number: int) -> None:
        if kind == "m":
            self.media.append(_MediaDraft(Media.parse_m_line(value)))
        elif self.media:
            self._media_line(self.media[-1], kind, value, number)
        elif kind in self._SINGLE:
            if kind in self.single:
                raise SdpError(f"more than one {kind}= line in the session part", line=number)
            if kind in "oc":
                # Report a bad o=/c= with its line number.
                (Origin if kind == "o" else Connection).parse(value)
            self.single[kind] = value
        elif kind in self.multi:
            self.multi[kind].append(value)
        elif kind in "tr":
            self.timing.append((kind, value))
        elif kind == "a":
            self.attributes.append(_attribute(value))
        else:
            self.extra.append((kind, value))

    @staticmethod
    def _media_line(draft: _MediaDraft, kind: str, value: str, number: int) -> None:
        if kind in "ick":
            if kind in draft.single:
                raise SdpError(f"more than one {kind}= line in one media description", line=number)
            if kind == "c":
                Connection.parse(value)
            draft.single[kind] = value
        elif kind == "b":
            draft.bandwidths.append(value)
        elif kind == "a":
            draft.attributes.append(_attribute(value))
        elif kind in "vosuepztr":
            raise SdpError(f"{kind}= belongs in the session part, before the first m=", line=number)
        else:
            draft.extra.append((kind, value))

    def _finish(self) -> SessionDescription:
        s = self.single
        for kind in "os":
            if kind not in s:
                raise SdpError(f"missing the {kind}= line")
        if s["v"].strip() != "0":
            raise SdpError(f"unsupported SDP version v={s['v']}")
        try:
            origin = Origin.parse(s["o"])
        except ValueError as exc:
            raise SdpError(str(exc)) from None
        conn = s.get("c")
        return SessionDescription(
            origin=origin,
            session_name=s["s"],
            information=s.get("i"),
            uri=s.get("u"),
            emails=tuple(self.multi["e"]),
            phones=tuple(self.multi["p"]),
            connection=Connection.parse(conn) if conn is not None else None,
            bandwidths=tuple(self.multi["b"]),
            timing=tuple(self.timing),
            zone=s.get("z"),
            key=s.get("k"),
            attributes=tuple(self.attributes),
            extra=tuple(self.extra),
            media=tuple(d.build() for d in self.media),
        )


# --------------------------------------------------------------------------- offer / answer


@dataclass(frozen=True)
class Codec:
    """The audio codec both sides agreed on: RTP payload type and encoding name."""

    payload_type: int
    name: str
    clock_rate: int = 8000


@dataclass(frozen=True)
class Answer:
    """The outcome of one offer/answer exchange, for the media layer (RFC 3264 sections 6-7).

    ``sdp`` is the body we send (from :func:`negotiate`) or the answer we
    received (from :func:`parse_answer`).  ``direction`` is the *remote*
    side's direction; ``on_hold`` is true when the remote side stopped
    wanting our audio (``sendonly``, ``inactive`` or ``c=0.0.0.0``).
    """

    sdp: SessionDescription
    codec: Codec
    dtmf_pt: int | None
    remote_addr: tuple[str, int]
    ptime: int
    direction: str
    on_hold: bool
    media_index: int = 0  # which m-line carries the call's audio
    dtmf_events: str | None = None  # the telephone-event fmtp both sides accept

    @property
    def local_direction(self) -> str:
        return _COMPLEMENT[self.direction]

    @property
    def we_send(self) -> bool:
        return self.local_direction in ("sendrecv", "sendonly")

    @property
    def we_receive(self) -> bool:
        return self.local_direction in ("sendrecv", "recvonly")


def negotiate(
    offer: SessionDescription,
    *,
    local_ip: str,
    local_port: int,
    supported: Sequence[str] = ("PCMU", "PCMA"),
    session_id: str | int,
    version: int,
    username: str = "ivr",
    ptime: int = DEFAULT_PTIME,
) -> Answer:
    """Answer ``offer``: accept its first usable audio stream, reject every other m-line.

    Same m-lines in the same order (rejected ones with port 0), the offer's
    payload type numbers echoed, our direction the complement of theirs.
    Raises :class:`NegotiationError` (488) when no audio stream has a codec
    from ``supported``.  Pass a larger ``version`` for each changed re-answer.
    """
    index, media, codec, dtmf = _pick_audio(offer, supported)
    agreed = _agreed(offer, index, media, codec, dtmf)
    answer_media = [
        _audio_media(local_port, m.proto, codec, dtmf, agreed.dtmf_events, agreed.local_direction, ptime)
        if i == index
        else _rejected(m)
        for i, m in enumerate(offer.media)
    ]
    return replace(agreed, sdp=_session(local_ip, username, session_id, version, answer_media))


def offer_session_ptime(sdp: SessionDescription) -> int | None:
    """A session-level ``a=ptime`` (not allowed by RFC 4566, but some carriers send it)."""
    for a in sdp.attributes:
        if a.key == "ptime" and a.value and a.value.strip().isdecimal():
            value = int(a.value)
            return value if 0 < value <= 1000 else None
    return None


def make_offer(
    local_ip: str,
    port: int,
    *,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    dtmf_pt: int | None = 101,
    session_id: str | int,
    version: int,
    direction: str = "sendrecv",
    username: str = "ivr",
    ptime: int = DEFAULT_PTIME,
) -> SessionDescription:
    """Our offer (RFC 3264 section 5): static types for PCMU/PCMA, telephone-event at ``dtmf_pt``."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    chosen: list[Codec] = []
    for name in codecs:
        pt = _STATIC_BY_NAME.get(name.upper())
        if pt is None:
            # Only 8 kHz codecs with a static type (RFC 3551): a dynamic one needs its own rate.
            raise ValueError(f"cannot offer {name!r}: known are {', '.join(_STATIC_BY_NAME)}")
        chosen.append(Codec(pt, name.upper()))
    if dtmf_pt is not None and not 96 <= dtmf_pt <= 127:
        raise ValueError(f"telephone-event needs a dynamic payload type 96-127, got {dtmf_pt}")
    if not chosen:
        raise ValueError("an offer needs at least one codec")
    attrs = [Attribute("rtpmap", f"{c.payload_type} {c.name}/{c.clock_rate}") for c in chosen]
    formats = [str(c.payload_type) for c in chosen]
    if dtmf_pt is not None:
        formats.append(str(dtmf_pt))
        attrs += [
            Attribute("rtpmap", f"{dtmf_pt} telephone-event/8000"),
            Attribute("fmtp", f"{dtmf_pt} {DTMF_EVENTS}"),
        ]
    attrs += [Attribute("ptime", str(ptime)), Attribute(direction)]
    media = Media("audio", port, "RTP/AVP", tuple(formats), attributes=tuple(attrs))
    return _session(local_ip, username, session_id, version, [media])


def parse_answer(
    offer: SessionDescription,
    answer: SessionDescription | bytes,
    *,
    supported: Sequence[str] = ("PCMU", "PCMA"),
) -> Answer:
    """Check the answer to our ``offer`` (RFC 3264 section 7) and say what to send where.

    The answerer's payload type numbers are the ones to send with (RFC 3264
    section 5.1: each side's numbers say what it expects to receive).
    """
    sdp = answer if isinstance(answer, SessionDescription) else SessionDescription.parse(answer)
    if len(sdp.media) != len(offer.media):
        raise NegotiationError(
            f"answer has {len(sdp.media)} m-lines, our offer had {len(offer.media)}"
        )
    offered = {rm.encoding.lower() for m in offer.media for rm in m.rtpmaps.values()}
    allowed = [name for name in supported if name.lower() in offered]
    index, media, codec, dtmf = _pick_audio(sdp, allowed)
    if media.kind != offer.media[index].kind:
        raise NegotiationError(
            f"answer m-line {index + 1} is {media.kind}, we offered {offer.media[index].kind}"
        )
    return _agreed(sdp, index, media, codec, dtmf)


def _agreed(remote: SessionDescription, index: int, media: Media, codec: Codec, dtmf: int | None) -> Answer:
    """The call's media from the peer's stream ``media`` (m-line ``index`` of ``remote``);
    ``sdp`` is ``remote`` itself, which :func:`negotiate` replaces with its answer."""
    conn = remote.media_connection(media)
    assert conn is not None  # checked by _pick_audio
    theirs = _remote_direction(remote, media)
    events = _dtmf_events(media, dtmf)
    return Answer(
        sdp=remote,
        codec=codec,
        dtmf_pt=dtmf if events else None,
        remote_addr=(conn.host, media.port),
        ptime=media.ptime or offer_session_ptime(remote) or DEFAULT_PTIME,
        direction=theirs,
        on_hold=theirs in ("sendonly", "inactive"),
        media_index=index,
        dtmf_events=events,
    )


# --------------------------------------------------------------------------- helpers


def _pick_audio(
    sdp: SessionDescription, supported: Sequence[str]
) -> tuple[int, Media, Codec, int | None]:
    """The first audio m-line that is enabled, plain RTP, addressed and has a codec we support."""
    reasons: list[str] = []
    for index, media in enumerate(sdp.media):
        if media.kind != "audio":
            continue
        why = _unusable(sdp, media)
        if why:
            reasons.append(f"m-line {index + 1}: {why}")
            continue
        codec = _first_supported(media, supported)
        if codec is None:
            offered = ", ".join(_format_names(media)) or "none"
            reasons.append(
                f"m-line {index + 1}: no common codec (offered {offered}; we support {', '.join(supported)})"
            )
            continue
        return index, media, codec, _telephone_event_pt(media)
    if not reasons:
        raise NegotiationError("no audio stream in the session description")
    raise NegotiationError("; ".join(reasons))


def _unusable(sdp: SessionDescription, media: Media) -> str | None:
    if media.port == 0:
        return "stream disabled (port 0)"
    if media.proto.upper() not in _PLAIN_RTP:
        return f"transport {media.proto} not supported (plain RTP/AVP only)"
    if sdp.media_connection(media) is None:
        return "no c= line for the stream"
    return None


def _first_supported(media: Media, supported: Sequence[str]) -> Codec | None:
    maps = media.rtpmaps
    wanted = [s.lower() for s in supported]
    for fmt in media.formats:
        rm = maps.get(int(fmt)) if fmt.isdecimal() else None
        if rm is not None and rm.encoding.lower() in wanted and rm.matches(rm.encoding):
            # Report our canonical spelling: "pcmu" on the wire is still PCMU.
            name = supported[wanted.index(rm.encoding.lower())]
            return Codec(rm.payload_type, name.upper(), rm.clock_rate)
    return None


def _telephone_event_pt(media: Media) -> int | None:
    maps = media.rtpmaps
    for fmt in media.formats:
        rm = maps.get(int(fmt)) if fmt.isdecimal() else None
        if rm is not None and rm.matches("telephone-event", 8000):
            return rm.payload_type
    return None


def _format_names(media: Media) -> list[str]:
    maps = media.rtpmaps
    names = []
    for fmt in media.formats:
        rm = maps.get(int(fmt)) if fmt.isdecimal() else None
        names.append(f"{rm.encoding}/{rm.clock_rate}" if rm else fmt)
    return names


def _remote_direction(sdp: SessionDescription, media: Media) -> str:
    direction = media.direction(default=sdp.direction())
    conn = sdp.media_connection(media)
    if conn is not None and conn.is_hold:
        # RFC 3264 section 8.4: c=0.0.0.0 is the old hold; they no longer receive.
        return {"sendrecv": "sendonly", "recvonly": "inactive"}.get(direction, direction)
    return direction


def _parse_events(spec: str) -> set[int]:
    events: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        lo, _, hi = part.partition("-")
        if lo.isdecimal() and (not hi or hi.isdecimal()):
            end = int(hi) if hi else int(lo)
            events.update(range(int(lo), min(end, 255) + 1))
    return events


def _format_events(events: Iterable[int]) -> str:
    ordered = sorted(events)
    ranges: list[str] = []
    start = prev = ordered[0]
    for e in ordered[1:] + [-2]:
        if e != prev + 1:
            ranges.append(str(start) if start == prev else f"{start}-{prev}")
            start = e
        prev = e
    return ",".join(ranges)


def _dtmf_events(media: Media, pt: int | None) -> str | None:
    """The events of RFC 4733 both sides handle; None when no DTMF digit is left."""
    if pt is None:
        return None
    spec = media.fmtp(pt)
    theirs = _parse_events(spec) if spec else set(range(16))  # RFC 4733 section 2.4.1 default
    common = theirs & _parse_events(DTMF_EVENTS)
    if not common & set(range(12)):
        return None
    return _format_events(common)


def _audio_media(
    port: int,
    proto: str,
    codec: Codec,
    dtmf: int | None,
    events: str | None,
    direction: str,
    ptime: int,
) -> Media:
    formats = [str(codec.payload_type)]
    attrs = [Attribute("rtpmap", f"{codec.payload_type} {codec.name}/{codec.clock_rate}")]
    if dtmf is not None and events:
        formats.append(str(dtmf))
        attrs += [
            Attribute("rtpmap", f"{dtmf} telephone-event/8000"),
            Attribute("fmtp", f"{dtmf} {events}"),
        ]
    attrs += [Attribute("ptime", str(ptime)), Attribute(direction)]
    return Media("audio", port, proto, tuple(formats), attributes=tuple(attrs))


def _rejected(media: Media) -> Media:
    """RFC 3264 section 6: a refused stream keeps its m-line with port zero and its formats."""
    return Media(media.kind, 0, media.proto, media.formats)


def _session(
    local_ip: str, username: str, session_id: str | int, version: int, media: list[Media]
) -> SessionDescription:
    addrtype = _addrtype(local_ip)
    return SessionDescription(
        origin=Origin(username, str(session_id), version, local_ip, "IN", addrtype),
        session_name="ivr",
        connection=Connection(local_ip, "IN", addrtype),
        media=tuple(media),
    )
