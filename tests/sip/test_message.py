"""ivr.sip.message on real wire bytes: round trips, headers, framing, errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.sip.message import (
    Headers,
    NameAddr,
    Request,
    Response,
    SipParseError,
    SipUri,
    StreamFramer,
    Via,
    build_response,
    parse_message,
    uri_key,
)

DATA = Path(__file__).parent.parent / "data" / "sip"
CAPTURES = sorted(DATA.glob("*.sip"))


def capture(name: str) -> bytes:
    return (DATA / f"{name}.sip").read_bytes()


# --------------------------------------------------------------------------- round trips


def test_captures_exist_and_use_crlf() -> None:
    assert len(CAPTURES) >= 15
    for path in CAPTURES:
        head = path.read_bytes().split(b"\r\n\r\n", 1)[0]
        assert b"\n" not in head.replace(b"\r\n", b""), path.name


def canonical_spacing(data: bytes) -> bytes:
    """One SP after each header colon (sipp writes ``Content-Length:   129``); else unchanged."""
    head, sep, body = data.partition(b"\r\n\r\n")
    return re.sub(rb"(?m)^([^:\r\n]+):[ \t]+", rb"\1: ", head) + sep + body


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_round_trip_real_captures(path: Path) -> None:
    data = path.read_bytes()
    message = parse_message(data)
    assert bytes(message) == canonical_spacing(data)
    assert canonical_spacing(data) == data or path.stem.startswith("sipp_")


def test_recorded_captures_are_present() -> None:
    # Recorded from the real programs on this machine (baresip 1.0.0, sipp 3.6.1 -sn uac).
    for name in ("baresip_real_invite", "baresip_real_ack", "baresip_real_bye",
                 "sipp_uac_invite", "sipp_uac_ack", "sipp_uac_bye"):
        assert isinstance(parse_message(capture(name)), Request)
    assert parse_message(capture("baresip_real_invite")).headers["Supported"] == ""


def test_typed_parse() -> None:
    assert Request.parse(capture("yealink_bye")).method == "BYE"
    assert Response.parse(capture("asterisk_401")).status == 401
    with pytest.raises(SipParseError, match="expected a request, got a response"):
        Request.parse(capture("asterisk_401"))
    with pytest.raises(SipParseError, match="expected a response, got a request"):
        Response.parse(capture("yealink_bye"))


def test_baresip_invite_fields() -> None:
    msg = parse_message(capture("baresip_invite"))
    assert isinstance(msg, Request)
    assert msg.method == "INVITE" and msg.uri == "sip:100@127.0.0.1:5060"
    assert msg.call_id == "6c8d2e4f1a3b5c7d"
    assert msg.cseq == (19283, "INVITE")
    assert msg.via == [Via("UDP", "127.0.0.1", 5062, {"branch": "z9hG4bK6a8e2d1f3c5b7a9e", "rport": None})]
    assert msg.from_.display == "Alice" and msg.from_.tag == "4f1d3e7a9b2c5d8e"
    assert msg.to.tag is None and msg.to.user == "100"
    assert msg.contact[0].uri == SipUri("sip", "alice-0x55d3c8a1b2c0", None, "127.0.0.1", 5062, {"transport": "udp"})
    assert msg.content_type == "application/sdp"
    assert msg.body.startswith(b"v=0\r\n") and len(msg.body) == int(msg.headers["Content-Length"])
    assert msg.header_tokens("Allow")[:3] == ["invite", "ack", "bye"]


def test_carrier_invite_two_vias_and_record_route() -> None:
    msg = parse_message(capture("carrier_invite"))
    vias = msg.via
    assert [v.host for v in vias] == ["198.51.100.20", "198.51.100.30"]
    assert vias[1].received == "198.51.100.30" and vias[1].rport == 5060
    assert msg.headers.get_all("Record-Route") == ["<sip:198.51.100.20;lr;ftag=as5a7c1b2d;did=8a3.b2c1>"]


def test_linphone_contact_with_quoted_instance_param() -> None:
    contact = parse_message(capture("linphone_invite")).contact[0]
    assert contact.params["+sip.instance"] == '"<urn:uuid:7e3c1d2a-4b5f-4a6e-9c8d-0f1e2d3c4b5a>"'
    assert str(contact.uri) == "sip:bob@192.168.1.23;transport=udp"


def test_zoiper_display_name_without_space() -> None:
    frm = parse_message(capture("zoiper_invite")).from_
    assert frm.display == "Carol" and frm.tag == "3f2a1b0c"


def test_response_fields() -> None:
    msg = parse_message(capture("asterisk_200_ok"))
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (200, "OK")
    assert msg.to.tag == "8e7f6a5b-4c3d-4e2f-9a1b-0c9d8e7f6a5b"


def test_authorization_header_is_not_split_on_commas() -> None:
    msg = parse_message(capture("yealink_register"))
    values = msg.headers.get_all("Authorization")
    assert len(values) == 1 and values[0].startswith('Digest username="201", realm="ivr"')


# --------------------------------------------------------------------------- headers


def test_headers_compact_forms_and_case() -> None:
    h = Headers([("v", "SIP/2.0/UDP a"), ("VIA", "SIP/2.0/UDP b, SIP/2.0/UDP c"), ("i", "x@y")])
    assert h["Call-ID"] == "x@y" and h["call-id"] == "x@y"
    assert h.get_all("Via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b", "SIP/2.0/UDP c"]
    assert "CALL-ID" in h and "Route" not in h
    assert h.get("Route", "none") == "none"
    with pytest.raises(KeyError):
        h["Route"]  # noqa: B018


def test_headers_set_replaces_in_place_and_remove() -> None:
    h = Headers([("To", "a"), ("l", "5"), ("Content-Length", "7"), ("From", "b")])
    h.set("Content-Length", "0")
    assert h.items() == [("To", "a"), ("l", "0"), ("From", "b")]
    h.remove("content-length")
    h.add("X-A", "1")
    assert h.items() == [("To", "a"), ("From", "b"), ("X-A", "1")]


def test_values_read_after_a_change_are_the_new_ones() -> None:
    """Headers keep an index and parsed values between readings; every change shows."""
    msg = parse_message(capture("carrier_invite"))
    cseq, from_, vias = msg.cseq, msg.from_, msg.via
    assert msg.top_via.host == "198.51.100.20"
    msg.headers.replace_first("Via", "SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bKnew, SIP/2.0/TCP 192.0.2.8")
    assert msg.top_via.host == "192.0.2.9" and msg.top_via.port == 5070 and msg.top_via.branch == "z9hG4bKnew"
    assert [v.host for v in msg.via] == ["192.0.2.9", "192.0.2.8", "198.51.100.30"] != [v.host for v in vias]
    assert msg.headers.get("v", "").startswith("SIP/2.0/UDP 192.0.2.9:5070")
    assert msg.cseq == cseq and msg.from_ is from_  # the other headers' values were kept
    msg.headers.set("CSeq", "99 INVITE")
    msg.headers.set("From", "<sip:someone@example.com>;tag=x")
    assert msg.cseq == (99, "INVITE") and msg.from_.tag == "x"
    msg.headers.remove("Via")
    with pytest.raises(ValueError, match="missing Via"):
        msg.top_via  # noqa: B018
    msg.headers.prepend("Via", "SIP/2.0/UDP 192.0.2.7")
    assert msg.top_via.host == "192.0.2.7"


def test_get_all_respects_quotes_and_brackets() -> None:
    h = Headers([("Contact", '"Smith, J" <sip:a@b;x=1,2>;q=0.5, <sip:c@d>')])
    assert h.get_all("Contact") == ['"Smith, J" <sip:a@b;x=1,2>;q=0.5', "<sip:c@d>"]


def test_line_folding_is_joined_with_one_space() -> None:
    raw = (
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\n"
        b"From: <sip:c@d>\r\n ;tag=9\r\nCall-ID: 1\r\nCSeq: 1\r\n\tOPTIONS\r\n"
        b"Subject: first\r\n   second\r\nContent-Length: 0\r\n\r\n"
    )
    msg = parse_message(raw)
    assert msg.headers["Subject"] == "first second"
    assert msg.cseq == (1, "OPTIONS") and msg.from_.tag == "9"


# --------------------------------------------------------------------------- Content-Length


def _options(body: bytes, length: str | None) -> bytes:
    head = (
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\n"
        b"From: <sip:c@d>;tag=1\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\n"
    )
    if length is not None:
        head += b"Content-Length: " + length.encode() + b"\r\n"
    return head + b"\r\n" + body


def test_udp_body_longer_than_content_length_is_truncated() -> None:
    assert parse_message(_options(b"hello world", "5")).body == b"hello"


def test_udp_body_shorter_than_content_length_is_400() -> None:
    with pytest.raises(SipParseError) as err:
        parse_message(_options(b"hi", "5"))
    assert err.value.status == 400
    assert err.value.reason == "Content-Length 5 but only 2 body bytes"
    assert err.value.request is not None and err.value.request.call_id == "1"


def test_missing_content_length_over_udp_takes_the_rest() -> None:
    assert parse_message(_options(b"abc", None)).body == b"abc"


@pytest.mark.parametrize("value", ["-1", "x", "1.5"])
def test_invalid_content_length(value: str) -> None:
    with pytest.raises(SipParseError) as err:
        parse_message(_options(b"", value))
    assert (err.value.status, err.value.reason) == (400, f"invalid Content-Length {value!r}")


def test_serialisation_always_writes_correct_content_length() -> None:
    msg = parse_message(_options(b"", "0"))
    msg.body = b"12345"
    assert b"Content-Length: 5\r\n\r\n12345" in bytes(msg)
    msg.headers.remove("Content-Length")
    assert bytes(msg).endswith(b"Content-Length: 5\r\n\r\n12345")


def test_compact_content_length_keeps_its_name() -> None:
    raw = _options(b"", None).replace(b"\r\n\r\n", b"\r\nl: 0\r\n\r\n")
    msg = parse_message(raw)
    msg.body = b"ab"
    assert b"\r\nl: 2\r\n" in bytes(msg)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "data, status, reason",
    [
        (b"", 400, "empty message"),
        (b"\r\n\r\n", 400, "empty message"),
        (b"HELLO\r\n\r\n", 400, "malformed start line"),
        (b"SIP/2.0 99 Odd\r\n\r\n", 400, "invalid status code '99'"),
        (b"SIP/3.0 200 OK\r\n\r\n", 505, "unsupported version SIP/3.0"),
    ],
)
def test_parse_errors_carry_status_and_reason(data: bytes, status: int, reason: str) -> None:
    with pytest.raises(SipParseError) as err:
        parse_message(data)
    assert (err.value.status, err.value.reason) == (status, reason)


def test_missing_call_id_is_answerable_400() -> None:
    raw = _options(b"", "0").replace(b"Call-ID: 1\r\n", b"")
    with pytest.raises(SipParseError) as err:
        parse_message(raw)
    assert (err.value.status, err.value.reason) == (400, "missing Call-ID")
    assert err.value.request is not None
    response = build_response(err.value.request, 400, to_tag="t")
    assert response.headers.get_all("Via") == ["SIP/2.0/UDP h;branch=z9hG4bK1"]


def test_header_line_without_colon() -> None:
    raw = _options(b"", "0").replace(b"Call-ID: 1", b"Call-ID 1")
    with pytest.raises(SipParseError) as err:
        parse_message(raw)
    assert err.value.reason == "malformed header line 'Call-ID 1'"


def test_oversized_header_is_513() -> None:
    raw = _options(b"", "0").replace(b"Call-ID: 1", b"Call-ID: " + b"x" * 70000)
    with pytest.raises(SipParseError) as err:
        parse_message(raw)
    assert err.value.status == 513


# --------------------------------------------------------------------------- structured values


def test_via_parse_and_str() -> None:
    via = Via.parse("SIP / 2.0 / tcp [2001:db8::1]:5070 ; branch = z9hG4bKx ; rport")
    assert (via.transport, via.host, via.port, via.branch, via.rport) == ("TCP", "[2001:db8::1]", 5070, "z9hG4bKx", None)
    assert via.sent_by == ("2001:db8::1", 5070)
    assert str(via.with_params(rport="5070", received="192.0.2.1")) == (
        "SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKx;rport=5070;received=192.0.2.1"
    )
    with pytest.raises(ValueError, match="invalid Via"):
        Via.parse("SIP/2.0 host")


def test_name_addr_forms() -> None:
    a = NameAddr.parse('"J \\"Q\\" Public" <sip:jq@example.com:5061;transport=tcp>;tag=abc;expires=60')
    assert a.display == 'J "Q" Public' and a.tag == "abc" and a.params["expires"] == "60"
    assert isinstance(a.uri, SipUri) and a.uri.port == 5061 and a.uri.transport == "tcp"
    assert str(a) == '"J \\"Q\\" Public" <sip:jq@example.com:5061;transport=tcp>;tag=abc;expires=60'
    b = NameAddr.parse("sip:+1555@gw.example.net;user=phone;tag=9")
    assert b.tag == "9" and b.params["user"] == "phone"  # addr-spec: params belong to the header
    c = NameAddr.parse("<tel:+15551234>")
    assert c.uri == "tel:+15551234" and c.user is None
    assert NameAddr.parse("Bob Smith <sip:b@h>").display == "Bob Smith"


def test_sip_uri_parse_and_str() -> None:
    uri = SipUri.parse("sips:alice:secret@[::1]:5061;lr;maddr=10.0.0.1?subject=hi")
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == ("sips", "alice", "secret", "[::1]", 5061)
    assert uri.params == {"lr": None, "maddr": "10.0.0.1"} and uri.headers == "subject=hi"
    assert str(uri) == "sips:alice:secret@[::1]:5061;lr;maddr=10.0.0.1?subject=hi"
    assert uri.transport == "tls"
    for bad in ("http://x", "sip:", "sip:a@b:99999", "sip:a@b:x"):
        with pytest.raises(ValueError):
            SipUri.parse(bad)


# --------------------------------------------------------------------------- build_response


def test_build_response_copies_per_8_2_6() -> None:
    request = parse_message(capture("carrier_invite"))
    assert isinstance(request, Request)
    response = build_response(request, 486, to_tag="ourtag", headers=[("Retry-After", "60")])
    assert response.reason == "Busy Here"
    assert response.headers.get_all("Via") == request.headers.get_all("Via")
    assert response.headers["From"] == request.headers["From"]
    assert response.headers["To"] == "<sip:+14155550100@203.0.113.10>;tag=ourtag"
    assert response.headers["CSeq"] == "102 INVITE"
    assert response.headers["Retry-After"] == "60"
    assert "Record-Route" not in response.headers
    reparsed = parse_message(bytes(response))
    assert isinstance(reparsed, Response) and reparsed.status == 486 and reparsed.to.tag == "ourtag"


def test_build_response_keeps_existing_to_tag_and_echoes_timestamp_on_100() -> None:
    request = parse_message(capture("yealink_bye"))
    assert isinstance(request, Request)
    assert build_response(request, 200, to_tag="zzz").to.tag == "5b7d9f1e3a"
    request.headers.add("Timestamp", "54")
    trying = build_response(request, 100)
    assert trying.headers["Timestamp"] == "54" and trying.reason == "Trying"


# --------------------------------------------------------------------------- stream framing


def test_stream_framer_splits_pipelined_and_partial_messages() -> None:
    a, b = capture("baresip_invite"), capture("kamailio_options")
    framer = StreamFramer()
    stream = b"\r\n\r\n" + a + b + a
    out: list[bytes] = []
    for i in range(0, len(stream), 97):
        out += framer.feed(stream[i : i + 97])
    assert out == [a, b, a]
    assert framer.keepalives == 1


def test_stream_framer_needs_content_length() -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError) as err:
        framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n")
    assert (err.value.status, err.value.reason) == (400, "missing Content-Length on a stream transport")
    with pytest.raises(SipParseError) as err:
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nl: ten\r\n\r\n")
    assert err.value.reason == "invalid Content-Length 'ten'"


def test_stream_framer_limits() -> None:
    with pytest.raises(SipParseError) as err:
        StreamFramer(max_header=100).feed(b"A" * 200)
    assert err.value.status == 513
    with pytest.raises(SipParseError) as err:
        StreamFramer(max_body=10).feed(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 11\r\n\r\n")
    assert err.value.status == 413


# --------------------------------------------------------------------------- properties


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_any_bytes_parse_or_raise_sip_parse_error(data: bytes) -> None:
    try:
        parse_message(data)
    except SipParseError as exc:
        assert 400 <= exc.status <= 599


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CAPTURES), st.data())
def test_mutated_captures_parse_or_raise_sip_parse_error(path: Path, data: st.DataObject) -> None:
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.sampled_from(b"\x00\r\n :;,<>\"@=/\\xZ9\xff"))
    try:
        message = parse_message(bytes(raw))
    except SipParseError:
        return
    parse_message(bytes(message))  # whatever we accept, we can write back and read again


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.integers(1, 50))
def test_stream_framer_on_any_bytes(data: bytes, chunk: int) -> None:
    framer = StreamFramer()
    try:
        for i in range(0, len(data), chunk):
            for message in framer.feed(data[i : i + chunk]):
                assert isinstance(message, bytes)
    except SipParseError:
        pass


def test_uri_key_compares_as_rfc3261_19_1_4() -> None:
    key = uri_key("sip:alice@example.com;lr;transport=udp")
    assert uri_key("<SIP:alice@Example.COM;Transport=UDP;lr>") == key
    assert uri_key("sip:Alice@example.com;lr;transport=udp") != key  # the user part is case-sensitive
    assert uri_key("sip:alice@example.com;transport=tcp;lr") != key


def test_a_contact_that_could_not_become_a_request_uri_is_400() -> None:
    """Hypothesis found it: a Contact accepted here came back as the Request-URI of our BYE."""
    raw = capture("zoiper_invite").replace(b"<sip:carol@10.0.0.50", b"<s0p:<arol@10.0.0.50")
    with pytest.raises(SipParseError) as info:
        parse_message(raw)
    assert info.value.status == 400 and str(info.value) == "400 invalid URI 's0p:<arol@10.0.0.50:52468;transport=UDP'"
