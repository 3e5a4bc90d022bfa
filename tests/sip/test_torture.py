"""RFC 4475 torture messages (section 3): parsed or rejected as the RFC says.

The messages are in tests/data/sip/rfc4475/ (see README.md there for where
they come from).  Parser-level expectations are checked on parse_message;
the application-level ones (416, 420, 415, 406, 501...) on a UserAgent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.sip.events import RequestReceived
from ivr.sip.message import Headers, Request, Response, SipParseError, parse_message
from ivr.sip.ua import UserAgent

DATA = Path(__file__).parent.parent / "data" / "sip" / "rfc4475"

# name -> (section, kind) ; kind is "request", "response" or the status of the parse error
VALID = {
    "wsinv": "3.1.1.1", "intmeth": "3.1.1.2", "esc01": "3.1.1.3", "escnull": "3.1.1.4",
    "esc02": "3.1.1.5", "lwsdisp": "3.1.1.6", "longreq": "3.1.1.7", "dblreq": "3.1.1.8",
    "semiuri": "3.1.1.9", "transports": "3.1.1.10", "mpart01": "3.1.1.11", "unreason": "3.1.1.12",
    "noreason": "3.1.1.13", "badbranch": "3.2.1", "unkscm": "3.3.2", "novelsc": "3.3.3",
    "unksm2": "3.3.4", "bext01": "3.3.5", "invut": "3.3.6", "regaut01": "3.3.7", "bcast": "3.3.10",
    "zeromf": "3.3.11", "cparam01": "3.3.12", "cparam02": "3.3.13", "regescrt": "3.3.14",
    "sdp01": "3.3.15", "inv2543": "3.4.1",
    # 3.1.2.12: the Date is invalid, but a UA that does not use Date may ignore it (the RFC
    # allows it); ivr does not interpret Date, so it accepts the request.
    "baddate": "3.1.2.12",
}
# name -> (section, status, answerable: a response can be routed back)
INVALID = {
    "badinv01": ("3.1.2.1", 400, True),
    "clerr": ("3.1.2.2", 400, True),
    "ncl": ("3.1.2.3", 400, True),
    "scalar02": ("3.1.2.4", 400, True),
    "scalarlg": ("3.1.2.5", 400, False),  # a response: dropped
    "quotbal": ("3.1.2.6", 400, True),
    "ltgtruri": ("3.1.2.7", 400, True),
    "lwsruri": ("3.1.2.8", 400, True),
    "lwsstart": ("3.1.2.9", 400, True),
    "trws": ("3.1.2.10", 400, True),
    "escruri": ("3.1.2.11", 400, True),
    "regbadct": ("3.1.2.13", 400, True),
    "badaspec": ("3.1.2.14", 400, True),
    "baddn": ("3.1.2.15", 400, True),
    "badvers": ("3.1.2.16", 505, True),
    "mismatch01": ("3.1.2.17", 400, True),
    "mismatch02": ("3.1.2.18", 400, True),
    "bigcode": ("3.1.2.19", 400, False),  # a response: dropped
    "insuf": ("3.3.1", 400, True),
    "multi01": ("3.3.8", 400, True),
    "mcl01": ("3.3.9", 400, True),
}


def load(name: str) -> bytes:
    return (DATA / f"{name}.dat").read_bytes()


def test_every_section_3_message_is_covered() -> None:
    files = {p.stem for p in DATA.glob("*.dat")}
    assert files == set(VALID) | set(INVALID)
    assert len(files) == 49


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_messages_parse(name: str) -> None:
    message = parse_message(load(name))
    assert isinstance(message, Request | Response)
    again = parse_message(bytes(message))  # and survive our serialisation
    assert bytes(again) == bytes(message)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_messages_are_rejected(name: str) -> None:
    _, status, answerable = INVALID[name]
    with pytest.raises(SipParseError) as err:
        parse_message(load(name))
    assert err.value.status == status
    assert (err.value.request is not None) == answerable


def test_wsinv_details() -> None:
    msg = parse_message(load("wsinv"))
    assert isinstance(msg, Request)
    assert msg.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert msg.to.tag == "1918181833n"
    assert msg.from_.display == 'J Rosenberg \\"' and msg.from_.tag == "98asjd8"
    assert msg.headers["Max-Forwards"] == "0068"
    assert msg.cseq == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in msg.via] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.headers["Subject"] == ""
    assert msg.headers["NewFangledHeader"] == "newfangled value continued newfangled value"
    assert msg.headers["UnknownHeaderWithUnusualValue"] == ";;,,;;,;"
    contact = msg.contact[0]
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(msg.body) == 150


def test_intmeth_details() -> None:
    msg = parse_message(load("intmeth"))
    assert isinstance(msg, Request)
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert msg.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.from_.tag == "_token~1'+`*%!-."
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    uri = msg.request_uri
    assert not isinstance(uri, str) and uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"


def test_dblreq_ignores_the_trailing_request() -> None:
    msg = parse_message(load("dblreq"))
    assert isinstance(msg, Request) and msg.method == "REGISTER" and msg.body == b""


def test_esc02_method_is_not_unescaped() -> None:
    msg = parse_message(load("esc02"))
    assert isinstance(msg, Request) and msg.method == "RE%47IST%45R"
    assert len(msg.headers.get_all("Contact")) == 2  # C%6Fntact is another header


def test_transports_and_longreq_vias() -> None:
    msg = parse_message(load("transports"))
    assert [v.transport for v in msg.via] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    longreq = parse_message(load("longreq"))
    assert len(longreq.via) == 34 and longreq.via[0].host == "sip33.example.com"


def test_inv2543_uses_the_rfc2543_fallback() -> None:
    msg = parse_message(load("inv2543"))
    assert isinstance(msg, Request)
    assert msg.via[0].branch is None and msg.from_.tag is None


# --------------------------------------------------------------------------- as a user agent


def ua_reply(name: str, transport: str = "udp") -> Response | None:
    ua = UserAgent(local_host="192.0.2.200", local_port=5060)
    ua.receive(load(name), ("192.0.2.77", 5099), transport, 0.0)
    finals: list[Response] = []
    for out in ua.outgoing():
        try:
            reply = parse_message(out.data)
        except SipParseError:
            # insuf's 400 has no From/To/Call-ID to copy: check its status line.
            status = int(out.data.split(b" ", 2)[1])
            reply = Response(status, "", Headers())
        if isinstance(reply, Response) and reply.status >= 200:
            finals.append(reply)
    return finals[-1] if finals else None


@pytest.mark.parametrize(
    "name, status",
    [
        ("unkscm", 416),  # 3.3.2: unknown Request-URI scheme
        ("novelsc", 416),  # 3.3.3: known but atypical scheme for a UA
        ("bext01", 420),  # 3.3.5
        ("invut", 415),  # 3.3.6
        ("sdp01", 406),  # 3.3.15
        ("intmeth", 501),  # 3.1.1.2: endpoints answer 501 with Allow
        ("esc02", 501),  # 3.1.1.5: RE%47IST%45R is not REGISTER
        ("zeromf", 200),  # 3.3.11: a UA answers even with Max-Forwards 0
        ("badbranch", 200),  # 3.2.1: handled through the RFC 2543 fallback
        ("ncl", 400),
        ("insuf", 400),
        ("badvers", 505),
        ("mismatch01", 400),
        ("lwsstart", 400),
    ],
)
def test_user_agent_answers(name: str, status: int) -> None:
    reply = ua_reply(name)
    assert reply is not None and reply.status == status


def test_bext01_lists_unsupported_options() -> None:
    reply = ua_reply("bext01")
    assert reply is not None
    assert reply.headers["Unsupported"] == "nothingsupportsthis, nothingsupportsthiseither"


def test_unknown_method_answer_lists_allow() -> None:
    reply = ua_reply("intmeth")
    assert reply is not None and "INVITE" in reply.headers["Allow"]


def test_registers_with_odd_uris_reach_the_registrar() -> None:
    for name in ("unksm2", "regaut01", "cparam01", "cparam02", "regescrt", "escnull"):
        ua = UserAgent(local_host="192.0.2.200", local_port=5060)
        ua.receive(load(name), ("192.0.2.77", 5099), "udp", 0.0)
        event = ua.next_event()
        assert isinstance(event, RequestReceived), name
        assert event.request.method == "REGISTER"


def test_responses_that_match_nothing_are_dropped() -> None:
    for name in ("bcast", "unreason", "noreason", "scalarlg", "bigcode"):
        ua = UserAgent(local_host="192.0.2.200", local_port=5060)
        ua.receive(load(name), ("192.0.2.77", 5099), "udp", 0.0)
        assert ua.outgoing() == [] and ua.next_event() is None
