"""SDP parsing and offer/answer on bodies as real phones, PBXs and carriers send them."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.sip.sdp import (
    Answer,
    Codec,
    Media,
    NegotiationError,
    SdpError,
    SessionDescription,
    make_offer,
    negotiate,
    parse_answer,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "sdp"
ALL = sorted(p.name for p in DATA.glob("*.sdp"))


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def answer(name: str, **kw: object) -> Answer:
    args: dict = dict(local_ip="10.9.8.7", local_port=20002, session_id=42, version=1)
    args.update(kw)
    return negotiate(SessionDescription.parse(load(name)), **args)


def media_text(sdp: SessionDescription, index: int = 0) -> str:
    return "\r\n".join(sdp.media[index].lines())


# --------------------------------------------------------------------------- wire form


@pytest.mark.parametrize("name", ALL)
def test_round_trip_is_byte_exact(name: str) -> None:
    data = load(name)
    assert data.endswith(b"\r\n")
    assert bytes(SessionDescription.parse(data)) == data


def test_there_are_bodies_from_every_kind_of_peer() -> None:
    for peer in (
        "baresip",
        "linphone",
        "zoiper",
        "yealink",
        "asterisk",
        "freeswitch",
        "carrier",
        "sipp",
        "webrtc",
    ):
        assert any(n.startswith(peer) for n in ALL), peer


def test_parsed_fields_of_a_linphone_offer() -> None:
    sdp = SessionDescription.parse(load("linphone-offer.sdp"))
    assert sdp.origin.username == "alice"
    assert sdp.origin.session_id == "2358"
    assert sdp.origin.version == 1743
    assert sdp.connection is not None and sdp.connection.host == "192.168.0.47"
    audio = sdp.media[0]
    assert (audio.kind, audio.port, audio.proto) == ("audio", 7078, "RTP/AVP")
    assert audio.formats[:3] == ("96", "97", "98")
    maps = audio.rtpmaps
    assert maps[96].encoding == "opus" and maps[96].channels == 2
    assert maps[0].encoding == "PCMU"  # static, no rtpmap line
    assert maps[18].encoding == "G729"
    assert audio.fmtp(96) == "useinbandfec=1"
    assert audio.attribute("rtcp") == "7079"


def test_bare_lf_bodies_parse_and_come_back_with_crlf() -> None:
    crlf = load("sipp-uac-offer.sdp")
    lf = crlf.replace(b"\r\n", b"\n")
    assert bytes(SessionDescription.parse(lf)) == crlf


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "SDP: empty body"),
        (b"o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n", "SDP line 1: a session description starts with v="),
        (b"v=0\r\ns=-\r\nt=0 0\r\n", "SDP: missing the o= line"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nt=0 0\r\n", "SDP: missing the s= line"),
        (b"v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n", "SDP: unsupported SDP version v=1"),
        (b"v=0\r\no=- 1 IN IP4 1.2.3.4\r\ns=-\r\n", "SDP line 2: o= needs 6 fields"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4\r\n", "SDP line 4: c= needs 3 fields"),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 70000 RTP/AVP 0\r\n",
            "SDP line 4: m= port",
        ),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 5 RTP/AVP\r\n", "SDP line 4: m= needs"),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nhello\r\n",
            "SDP line 4: expected '<letter>=<value>'",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\ns=again\r\n",
            "SDP line 4: more than one s= line",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 5 RTP/AVP 0\r\nt=0 0\r\n",
            "SDP line 5: t= belongs",
        ),
        (b"v=0\r\no=\xff\r\n", "SDP: body is not UTF-8"),
    ],
)
def test_bad_bodies_name_the_line(body: bytes, message: str) -> None:
    with pytest.raises(SdpError) as info:
        SessionDescription.parse(body)
    assert str(info.value).startswith(message)
    assert info.value.status == 400


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_sdp_error(data: bytes) -> None:
    try:
        SessionDescription.parse(data)
    except SdpError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("vosicbtmak"), st.text("0123456789 aIPN4/:.-", max_size=20)),
        max_size=10,
    )
)
def test_any_sdp_shaped_text_parses_or_raises_sdp_error(lines: list[tuple[str, str]]) -> None:
    body = "v=0\r\n" + "".join(f"{t}={v}\r\n" for t, v in lines)
    try:
        sdp = SessionDescription.parse(body)
    except SdpError:
        return
    # Whatever parsed must survive its own round trip.
    assert SessionDescription.parse(bytes(sdp)) == sdp


# --------------------------------------------------------------------------- negotiate


def test_answer_to_sipp_default_uac_offer() -> None:
    a = answer("sipp-uac-offer.sdp")
    assert a.codec == Codec(0, "PCMU")
    assert a.dtmf_pt is None
    assert a.remote_addr == ("127.0.0.1", 6000)
    assert a.ptime == 20
    assert (a.direction, a.on_hold, a.local_direction) == ("sendrecv", False, "sendrecv")
    assert bytes(a.sdp) == (
        b"v=0\r\n"
        b"o=ivr 42 1 IN IP4 10.9.8.7\r\n"
        b"s=ivr\r\n"
        b"c=IN IP4 10.9.8.7\r\n"
        b"t=0 0\r\n"
        b"m=audio 20002 RTP/AVP 0\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )


def test_answer_echoes_the_offers_telephone_event_type() -> None:
    a = answer("carrier-offer.sdp")  # G729 first: not ours; PCMU next; DTMF at 100
    assert a.codec == Codec(0, "PCMU")
    assert a.dtmf_pt == 100
    assert a.remote_addr == ("192.0.2.45", 29786)
    assert media_text(a.sdp) == (
        "m=audio 20002 RTP/AVP 0 100\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:100 telephone-event/8000\r\n"
        "a=fmtp:100 0-15\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv"
    )


def test_first_supported_codec_in_the_offers_order_wins() -> None:
    a = answer("asterisk-offer.sdp")  # 8 0 3 101
    assert a.codec == Codec(8, "PCMA")
    assert a.dtmf_pt == 101 and a.dtmf_events == "0-16"
    assert answer("asterisk-offer.sdp", supported=("PCMU",)).codec == Codec(0, "PCMU")


def test_telephone_event_at_8000_is_chosen_among_wideband_ones() -> None:
    fs = answer("freeswitch-offer.sdp")  # 102 is telephone-event/16000
    assert fs.codec == Codec(0, "PCMU") and fs.dtmf_pt == 101
    z = answer("zoiper-offer.sdp")  # opus, G722, te/48000 at 98, te/8000 at 101
    assert z.codec == Codec(0, "PCMU") and z.dtmf_pt == 101
    li = answer("linphone-offer.sdp")  # te/8000 at 100
    assert li.codec == Codec(0, "PCMU") and li.dtmf_pt == 100
    assert li.remote_addr == ("192.168.0.47", 7078)


def test_rtpmap_names_are_case_insensitive() -> None:
    a = answer("webrtc-gateway-offer.sdp")  # "pcmu/8000"
    assert a.codec == Codec(0, "PCMU")
    assert a.dtmf_pt == 126
    assert "a=rtpmap:0 PCMU/8000" in media_text(a.sdp)


def test_other_streams_are_rejected_in_place_with_port_zero() -> None:
    a = answer("webrtc-gateway-offer.sdp")
    assert [m.kind for m in a.sdp.media] == ["audio", "video"]
    assert a.sdp.media[1] == Media("video", 0, "RTP/AVP", ("96", "97"))
    b = answer("video-first-offer.sdp")
    assert b.media_index == 1
    assert [m.port for m in b.sdp.media] == [0, 20002]
    assert b.codec == Codec(96, "PCMA")
    assert b.remote_addr == ("2001:db8::7", 49170)


def test_dtmf_events_are_intersected_with_the_offer() -> None:
    b = answer("video-first-offer.sdp")  # a=fmtp:97 0-11
    assert b.dtmf_pt == 97 and b.dtmf_events == "0-11"
    assert "a=fmtp:97 0-11" in media_text(b.sdp, 1)


def test_direction_is_the_complement_of_theirs() -> None:
    b = answer("video-first-offer.sdp")  # recvonly
    assert (b.direction, b.local_direction, b.on_hold) == ("recvonly", "sendonly", False)
    assert "a=sendonly" in media_text(b.sdp, 1)
    hold = answer("yealink-hold.sdp")
    assert (hold.direction, hold.local_direction, hold.on_hold) == ("sendonly", "recvonly", True)
    assert hold.we_receive and not hold.we_send
    assert media_text(hold.sdp).endswith("a=recvonly")


def test_inactive_answers_inactive() -> None:
    body = load("yealink-hold.sdp").replace(b"a=sendonly", b"a=inactive")
    a = negotiate(
        SessionDescription.parse(body),
        local_ip="10.0.0.1",
        local_port=4000,
        session_id=1,
        version=2,
    )
    assert (a.direction, a.local_direction, a.on_hold) == ("inactive", "inactive", True)


def test_old_style_hold_with_zero_address_counts_as_sendonly() -> None:
    a = answer("freeswitch-hold-old.sdp")
    assert a.direction == "sendonly" and a.on_hold
    assert a.remote_addr == ("0.0.0.0", 24568)
    assert media_text(a.sdp).endswith("a=recvonly")


def test_webrtc_srtp_offer_is_refused_with_488() -> None:
    with pytest.raises(NegotiationError) as info:
        answer("webrtc-offer.sdp")
    assert info.value.status == 488
    assert (
        str(info.value)
        == "m-line 1: transport UDP/TLS/RTP/SAVPF not supported (plain RTP/AVP only)"
    )


def test_no_common_codec_is_488_naming_what_was_offered() -> None:
    with pytest.raises(NegotiationError) as info:
        answer("yealink-offer.sdp", supported=("G726",))
    assert info.value.status == 488
    assert info.value.reason == (
        "m-line 1: no common codec (offered PCMU/8000, PCMA/8000, G722/8000, G729/8000, "
        "telephone-event/8000; we support G726)"
    )


def test_no_audio_stream_is_488() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\n"
    with pytest.raises(NegotiationError, match="^no audio stream in the session description$"):
        negotiate(
            SessionDescription.parse(body),
            local_ip="1.1.1.1",
            local_port=1,
            session_id=1,
            version=1,
        )


def test_disabled_and_unaddressed_audio_streams_are_refused() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\nm=audio 5000 RTP/AVP 0\r\n"
    with pytest.raises(NegotiationError) as info:
        negotiate(
            SessionDescription.parse(body),
            local_ip="1.1.1.1",
            local_port=1,
            session_id=1,
            version=1,
        )
    assert (
        info.value.reason
        == "m-line 1: stream disabled (port 0); m-line 2: no c= line for the stream"
    )


def test_ptime_from_the_offer() -> None:
    body = load("sipp-uac-offer.sdp") + b"a=ptime:30\r\n"
    a = negotiate(
        SessionDescription.parse(body), local_ip="1.1.1.1", local_port=1, session_id=1, version=1
    )
    assert a.ptime == 30


def test_re_answer_keeps_session_id_and_raises_version() -> None:
    first = answer("yealink-offer.sdp", version=1)
    again = answer("yealink-hold.sdp", version=first.sdp.origin.version + 1)
    assert again.sdp.origin.session_id == first.sdp.origin.session_id == "42"
    assert again.sdp.origin.version == 2


def test_ipv6_local_address() -> None:
    a = answer("sipp-uac-offer.sdp", local_ip="2001:db8::1")
    assert str(a.sdp.origin).endswith("IN IP6 2001:db8::1")
    assert a.sdp.connection is not None and str(a.sdp.connection) == "IN IP6 2001:db8::1"


def test_answers_parse_back() -> None:
    for name in ALL:
        try:
            a = answer(name)
        except NegotiationError:
            continue
        assert SessionDescription.parse(bytes(a.sdp)) == a.sdp


# --------------------------------------------------------------------------- our offers


def test_make_offer() -> None:
    offer = make_offer("10.0.0.5", 30000, session_id=7, version=1)
    assert bytes(offer) == (
        b"v=0\r\n"
        b"o=ivr 7 1 IN IP4 10.0.0.5\r\n"
        b"s=ivr\r\n"
        b"c=IN IP4 10.0.0.5\r\n"
        b"t=0 0\r\n"
        b"m=audio 30000 RTP/AVP 0 8 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-16\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )


def test_make_offer_for_hold_without_dtmf() -> None:
    offer = make_offer(
        "10.0.0.5", 30000, session_id=7, version=3, direction="sendonly", dtmf_pt=None
    )
    assert offer.media[0].formats == ("0", "8")
    assert offer.media[0].direction() == "sendonly"
    with pytest.raises(ValueError, match="direction must be one of"):
        make_offer("10.0.0.5", 30000, session_id=7, version=3, direction="hold")


def test_our_offer_negotiates_against_itself() -> None:
    offer = make_offer("10.0.0.5", 30000, session_id=7, version=1, dtmf_pt=96)
    a = negotiate(offer, local_ip="10.0.0.6", local_port=40000, session_id=9, version=1)
    assert a.codec == Codec(0, "PCMU") and a.dtmf_pt == 96
    back = parse_answer(offer, bytes(a.sdp))
    assert back.codec == Codec(0, "PCMU")
    assert back.dtmf_pt == 96
    assert back.remote_addr == ("10.0.0.6", 40000)
    assert back.direction == "sendrecv"


def test_parse_answer_uses_the_answerers_payload_types() -> None:
    offer = make_offer("10.0.0.5", 30000, session_id=7, version=1)
    body = (
        b"v=0\r\no=- 5 5 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
        b"m=audio 18000 RTP/AVP 8 96\r\na=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\na=recvonly\r\n"
    )
    back = parse_answer(offer, body)
    assert back.codec == Codec(8, "PCMA")
    assert back.dtmf_pt == 96
    assert back.remote_addr == ("192.0.2.9", 18000)
    assert (back.direction, back.local_direction) == ("recvonly", "sendonly")


def test_parse_answer_refuses_rejections_and_wrong_shapes() -> None:
    offer = make_offer("10.0.0.5", 30000, session_id=7, version=1)
    head = b"v=0\r\no=- 5 5 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
    with pytest.raises(NegotiationError, match="stream disabled"):
        parse_answer(offer, head + b"m=audio 0 RTP/AVP 0\r\n")
    with pytest.raises(NegotiationError, match="answer has 2 m-lines, our offer had 1"):
        parse_answer(offer, head + b"m=audio 5 RTP/AVP 0\r\nm=audio 6 RTP/AVP 0\r\n")
    with pytest.raises(NegotiationError, match="no common codec"):
        parse_answer(offer, head + b"m=audio 5 RTP/AVP 18\r\n")
    with pytest.raises(SdpError):
        parse_answer(offer, b"not sdp")


def test_answer_to_baresip_capture() -> None:
    a = answer("baresip-offer.sdp")
    assert a.codec == Codec(0, "PCMU") and a.dtmf_pt == 101 and a.dtmf_events == "0-15"
    assert a.remote_addr == ("192.0.2.2", 44726)
    assert a.ptime == 20


_FORMATS = st.sampled_from(["0", "8", "18", "9", "96", "97", "101", "126", "x", "99999999999"])
_ATTRS = st.sampled_from(
    [
        "rtpmap:96 PCMA/8000",
        "rtpmap:97 telephone-event/8000",
        "rtpmap:101 TELEPHONE-EVENT/8000",
        "rtpmap:126 telephone-event/48000",
        "rtpmap:96 opus/48000/2",
        "rtpmap:0 PCMU/8000/2",
        "rtpmap:bad",
        "fmtp:101 0-15",
        "fmtp:97 0-99999999",
        "fmtp:101 16",
        "fmtp:97 ,-,",
        "ptime:30",
        "ptime:-5",
        "ptime:inf",
        "ptime:20.5",
        "sendonly",
        "recvonly",
        "inactive",
        "sendrecv",
    ]
)
_MEDIA = st.builds(
    lambda kind, port, proto, fmts, conn, attrs: (
        f"m={kind} {port} {proto} {' '.join(fmts)}\r\n"
        + (f"c=IN IP4 {conn}\r\n" if conn else "")
        + "".join(f"a={a}\r\n" for a in attrs)
    ),
    st.sampled_from(["audio", "video", "audio"]),
    st.sampled_from([0, 9, 5004, 65535]),
    st.sampled_from(["RTP/AVP", "rtp/avp", "RTP/AVPF", "RTP/SAVP", "UDP/TLS/RTP/SAVPF"]),
    st.lists(_FORMATS, min_size=1, max_size=5),
    st.sampled_from([None, "0.0.0.0", "198.51.100.1", "224.2.1.1/127"]),
    st.lists(_ATTRS, max_size=6),
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["", "c=IN IP4 192.0.2.1\r\n", "c=IN IP6 ::\r\n"]), st.lists(_MEDIA, max_size=3)
)
def test_negotiate_answers_or_refuses_any_offer(session_c: str, media: list[str]) -> None:
    body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n" + session_c + "t=0 0\r\n" + "".join(media)
    offer = SessionDescription.parse(body)
    try:
        a = negotiate(offer, local_ip="10.0.0.1", local_port=4000, session_id=1, version=1)
    except NegotiationError as exc:
        assert exc.status == 488
        return
    # Whatever we answer is well-formed and has the offer's shape (RFC 3264 section 6).
    assert len(a.sdp.media) == len(offer.media)
    assert [m.kind for m in a.sdp.media] == [m.kind for m in offer.media]
    assert sum(m.port != 0 for m in a.sdp.media) == 1
    assert a.codec.name in ("PCMU", "PCMA")
    assert str(a.codec.payload_type) in offer.media[a.media_index].formats
    assert 0 < a.ptime <= 1000
    assert SessionDescription.parse(bytes(a.sdp)) == a.sdp
    back = parse_answer(offer, a.sdp)
    assert back.codec == a.codec and back.dtmf_pt == a.dtmf_pt


def test_make_offer_refuses_what_it_cannot_describe() -> None:
    with pytest.raises(
        ValueError, match="cannot offer 'opus': known are PCMU, GSM, G723, PCMA, G722, G729"
    ):
        make_offer("10.0.0.5", 30000, session_id=1, version=1, codecs=("opus",))
    with pytest.raises(
        ValueError, match="telephone-event needs a dynamic payload type 96-127, got 8"
    ):
        make_offer("10.0.0.5", 30000, session_id=1, version=1, dtmf_pt=8)
    with pytest.raises(ValueError, match="an offer needs at least one codec"):
        make_offer("10.0.0.5", 30000, session_id=1, version=1, codecs=())
    assert make_offer("10.0.0.5", 1, session_id=1, version=1, codecs=("pcma",)).media[
        0
    ].formats == ("8", "101")


def test_stray_blanks_after_attribute_names_are_tolerated() -> None:
    body = load("yealink-hold.sdp").replace(b"a=sendonly\r\n", b"a=sendonly \r\n")
    sdp = SessionDescription.parse(body)
    assert bytes(sdp) == body
    a = negotiate(sdp, local_ip="10.0.0.1", local_port=4000, session_id=1, version=2)
    assert a.on_hold and a.local_direction == "recvonly"
