"""The notifier's side of a subscription (ivr.sip.subscription): SUBSCRIBE in, NOTIFY out, the bodies, the store."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ivr.sip.message import Request, parse_message
from ivr.sip.subscription import (
    Line,
    SubscribeError,
    Subscription,
    SubscriptionStore,
    dialog_info,
    message_summary,
    parse_subscribe,
    pidf,
)

PACKAGES = ("message-summary", "dialog", "presence")


def subscribe(event: str = "message-summary", expires: str = "600", to_tag: str = "", cseq: int = 1,
              extra: str = "Record-Route: <sip:proxy.example;lr>\r\n") -> Request:
    text = (
        "SUBSCRIBE sip:201@192.0.2.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.9:5062;branch=z9hG4bKsub1;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:201@192.0.2.1>;tag=phone1\r\n"
        f"To: <sip:201@192.0.2.1>{';tag=' + to_tag if to_tag else ''}\r\n"
        "Call-ID: mwi-1\r\n"
        f"CSeq: {cseq} SUBSCRIBE\r\n"
        "Contact: <sip:201@192.0.2.9:5062;transport=udp>\r\n"
        f"Event: {event}\r\n"
        "Accept: application/simple-message-summary\r\n"
        f"Expires: {expires}\r\n{extra}"
        "Content-Length: 0\r\n\r\n"
    )
    request = parse_message(text.encode())
    assert isinstance(request, Request)
    return request


def test_a_subscribe_is_read() -> None:
    sub = parse_subscribe(subscribe(), PACKAGES)
    assert (sub.event, sub.resource, sub.expires, sub.key) == ("message-summary", "201", 600, "mwi-1;phone1")
    assert sub.target == "sip:201@192.0.2.9:5062;transport=udp" and sub.route_set == ("sip:proxy.example;lr",)
    assert parse_subscribe(subscribe(expires="99999"), PACKAGES).expires == 3600  # shortened to max_expires
    assert parse_subscribe(subscribe(expires="0"), PACKAGES).expires == 0  # an unsubscribe (or a fetch)


@pytest.mark.parametrize(("request_", "status", "reason", "headers"), [
    (subscribe(event="presence.winfo"), 489, "Bad Event", [("Allow-Events", "message-summary, dialog, presence")]),
    (subscribe(event=""), 400, "Bad Request (missing Event header)", []),
    (subscribe(expires="10"), 423, "Interval Too Brief", [("Min-Expires", "60")]),
])
def test_refusals(request_: Request, status: int, reason: str, headers: list[tuple[str, str]]) -> None:
    with pytest.raises(SubscribeError) as info:
        parse_subscribe(request_, PACKAGES)
    assert (info.value.status, info.value.reason, info.value.headers) == (status, reason, headers)


def test_notify_requests_follow_the_subscription_dialog() -> None:
    sub = Subscription.accept(parse_subscribe(subscribe(), PACKAGES), "201", ("192.0.2.9", 5062), "UDP", 1000.0)
    first = sub.notify(message_summary("sip:201@192.0.2.1", 1, 2), 1100.0, contact="<sip:192.0.2.1:5060>")
    headers = dict(first.headers)
    assert first.uri == "sip:201@192.0.2.9:5062;transport=udp" and first.destination == ("192.0.2.9", 5062)
    assert headers["From"] == f"<sip:201@192.0.2.1>;tag={sub.local_tag}"  # the SUBSCRIBE's To, our tag
    assert headers["To"] == "<sip:201@192.0.2.1>;tag=phone1" and headers["Call-ID"] == "mwi-1"
    assert (headers["CSeq"], headers["Subscription-State"], headers["Event"]) == (
        "1 NOTIFY", "active;expires=500", "message-summary")
    assert headers["Route"] == "<sip:proxy.example;lr>"
    assert headers["Content-Type"] == "application/simple-message-summary"
    assert first.body == b"Messages-Waiting: yes\r\nMessage-Account: sip:201@192.0.2.1\r\nVoice-Message: 1/2 (0/0)\r\n"
    last = sub.notify(message_summary("sip:201@192.0.2.1", 0, 3), 1200.0, contact="<sip:192.0.2.1:5060>",
                      reason="timeout")
    assert dict(last.headers)["CSeq"] == "2 NOTIFY"
    assert dict(last.headers)["Subscription-State"] == "terminated;reason=timeout"
    assert last.body.startswith(b"Messages-Waiting: no\r\n")


def test_a_refresh_extends_and_an_old_cseq_is_refused() -> None:
    sub = Subscription.accept(parse_subscribe(subscribe(), PACKAGES), "201", ("192.0.2.9", 5062), "udp", 1000.0)
    sub.refresh(parse_subscribe(subscribe(to_tag=sub.local_tag, cseq=2, expires="300"), PACKAGES), 1500.0)
    assert sub.left(1500.0) == 300
    with pytest.raises(SubscribeError) as info:
        sub.refresh(parse_subscribe(subscribe(to_tag=sub.local_tag, cseq=2), PACKAGES), 1600.0)
    assert info.value.status == 500


def test_dialog_info_versions_go_up_in_every_notify() -> None:
    sub = Subscription.accept(parse_subscribe(subscribe(event="dialog"), PACKAGES), "201", ("192.0.2.9", 5062),
                              "udp", 1000.0)
    versions = []
    for state in ("terminated", "early", "confirmed"):
        body = dialog_info(Line("sip:202@192.0.2.1", state), sub.version + 1, "202")
        sub.notify(body, 1001.0, contact="<sip:192.0.2.1>")
        versions.append(sub.version)
    assert versions == [0, 1, 2]
    assert dialog_info(Line("sip:202@192.0.2.1", "early"), 1, "202") == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full"'
        b' entity="sip:202@192.0.2.1">\n'
        b'  <dialog id="202"><state>early</state></dialog>\n'
        b"</dialog-info>\n"
    )


def test_the_store_keeps_subscriptions_until_they_expire(tmp_path: object) -> None:
    store = SubscriptionStore()
    sub = Subscription.accept(parse_subscribe(subscribe(), PACKAGES), "201", ("192.0.2.9", 5062), "udp", 1000.0)
    sub.notify(b"", 1000.0, contact="<sip:192.0.2.1>")
    store.save(sub)
    assert store.load(1500.0) == [sub]
    assert store.load(1600.0) == []  # expired at 1600: deleted
    store.close()


DIALOG_NS = {"d": "urn:ietf:params:xml:ns:dialog-info"}
PIDF_NS = {"p": "urn:ietf:params:xml:ns:pidf", "dm": "urn:ietf:params:xml:ns:pidf:data-model",
           "rpid": "urn:ietf:params:xml:ns:pidf:rpid"}
RINGING = Line("sip:202@192.0.2.1", "early", True, "leg-7f3a@192.0.2.1", "", "a1b2c3", "recipient",
               "sip:+41441234567@192.0.2.1", "sip:**202@192.0.2.1")


def test_a_ringing_line_tells_a_desk_phone_how_to_pick_it_up() -> None:
    """RFC 4235 section 4.1.6: the call's Call-ID and tags, the identities and the pickup target."""
    body = dialog_info(RINGING, 3, "202")
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="3" state="full"'
        b' entity="sip:202@192.0.2.1">\n'
        b'  <dialog id="202" call-id="leg-7f3a@192.0.2.1" remote-tag="a1b2c3" direction="recipient">\n'
        b"    <state>early</state>\n"
        b'    <local><identity>sip:202@192.0.2.1</identity><target uri="sip:202@192.0.2.1"/></local>\n'
        b'    <remote><identity>sip:+41441234567@192.0.2.1</identity><target uri="sip:**202@192.0.2.1"/></remote>\n'
        b"  </dialog>\n</dialog-info>\n"
    )
    dialog = ET.fromstring(body).find("d:dialog", DIALOG_NS)
    assert dialog is not None and dialog.get("call-id") == "leg-7f3a@192.0.2.1"
    assert dialog.findtext("d:remote/d:identity", namespaces=DIALOG_NS) == "sip:+41441234567@192.0.2.1"
    assert dialog.find("d:remote/d:target", DIALOG_NS).get("uri") == "sip:**202@192.0.2.1"  # type: ignore[union-attr]
    talking = ET.fromstring(dialog_info(Line(**{**RINGING.__dict__, "state": "confirmed", "local_tag": "ph9"}), 4,
                                         "202"))
    dialog = talking.find("d:dialog", DIALOG_NS)
    assert dialog is not None and (dialog.get("local-tag"), dialog.findtext("d:state", namespaces=DIALOG_NS)) == (
        "ph9", "confirmed")
    assert dialog.find("d:remote/d:target", DIALOG_NS) is None  # only a ringing call is picked up


def presence(body: bytes) -> tuple[str | None, list[str], str | None]:
    """(basic, RPID activities, note) read back from a PIDF document."""
    root = ET.fromstring(body)
    assert root.tag == "{urn:ietf:params:xml:ns:pidf}presence" and root.get("entity") == "sip:202@192.0.2.1"
    activities = root.find("dm:person/rpid:activities", PIDF_NS)
    names = [child.tag.split("}")[1] + (f":{child.text}" if child.text else "") for child in (list(activities) if activities is not None else [])]
    return (root.findtext("p:tuple/p:status/p:basic", namespaces=PIDF_NS), names,
            root.findtext("dm:person/dm:note", namespaces=PIDF_NS))


@pytest.mark.parametrize(("line", "expected"), [
    (Line("sip:202@192.0.2.1", "terminated"), ("open", [], "Idle")),
    (Line("sip:202@192.0.2.1", "terminated", reachable=False), ("closed", [], "Idle")),
    (RINGING, ("open", ["other:ringing"], "Ringing")),
    (Line("sip:202@192.0.2.1", "confirmed"), ("open", ["on-the-phone"], "On the phone")),
])
def test_pidf_shows_open_or_closed_and_the_activity(line: Line, expected: tuple[str, list[str], str]) -> None:
    assert presence(pidf(line, "202")) == expected


def test_pidf_bytes_on_the_phone() -> None:
    """RFC 3863 with the RFC 4479 person and RFC 4480 activity; ``rpid:`` spelt out, as baresip
    looks for ``<rpid:on-the-phone/>`` and ``<basic>`` as text."""
    assert pidf(Line("sip:202@192.0.2.1", "confirmed"), "202") == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"'
        b' xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:202@192.0.2.1">\n'
        b'  <tuple id="t-202">\n'
        b"    <status><basic>open</basic></status>\n"
        b"    <contact>sip:202@192.0.2.1</contact>\n"
        b"  </tuple>\n"
        b'  <dm:person id="p-202">\n'
        b"    <rpid:activities><rpid:on-the-phone/></rpid:activities>\n"
        b"    <dm:note>On the phone</dm:note>\n"
        b"  </dm:person>\n"
        b"</presence>\n"
    )


def test_a_presence_notify_carries_pidf_and_no_dialog_version() -> None:
    sub = Subscription.accept(parse_subscribe(subscribe(event="presence"), PACKAGES), "201", ("192.0.2.9", 5062),
                              "udp", 1000.0)
    request = sub.notify(pidf(Line("sip:202@192.0.2.1", "terminated"), "202"), 1000.0, contact="<sip:192.0.2.1>")
    headers = dict(request.headers)
    assert (headers["Event"], headers["Content-Type"], sub.version) == ("presence", "application/pidf+xml", -1)
    assert presence(request.body) == ("open", [], "Idle")


def test_a_presence_subscription_survives_in_the_store(tmp_path: object) -> None:
    store = SubscriptionStore()
    sub = Subscription.accept(parse_subscribe(subscribe(event="presence"), PACKAGES), "201", ("192.0.2.9", 5062),
                              "udp", 1000.0)
    sub.notify(pidf(Line("sip:202@192.0.2.1", "confirmed"), "202"), 1000.0, contact="<sip:192.0.2.1>")
    store.save(sub)
    (back,) = store.load(1100.0)
    assert back == sub and back.event == "presence" and back.cseq == 1
    store.close()
