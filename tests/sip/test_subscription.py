"""The notifier's side of a subscription (ivr.sip.subscription): SUBSCRIBE in, NOTIFY out, the bodies, the store."""

from __future__ import annotations

import pytest

from ivr.sip.message import Request, parse_message
from ivr.sip.subscription import (
    SubscribeError,
    Subscription,
    SubscriptionStore,
    dialog_info,
    message_summary,
    parse_subscribe,
)

PACKAGES = ("message-summary", "dialog")


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
    (subscribe(event="presence"), 489, "Bad Event", [("Allow-Events", "message-summary, dialog")]),
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
        body = dialog_info("sip:202@192.0.2.1", sub.version + 1, state, "202")
        sub.notify(body, 1001.0, contact="<sip:192.0.2.1>")
        versions.append(sub.version)
    assert versions == [0, 1, 2]
    assert dialog_info("sip:202@192.0.2.1", 1, "early", "202") == (
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
