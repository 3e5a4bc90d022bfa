"""The SDP offer/answer state of one call, on real offers (tests/data/sdp)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.dsl import events as ev
from ivr.runtime.call import HANDLERS
from ivr.runtime.negotiation import OfferAnswer
from ivr.runtime.trace import ACTIONS
from ivr.sip import sdp

DATA = Path(__file__).resolve().parents[1] / "data" / "sdp"


def offer(name: str) -> sdp.SessionDescription:
    return sdp.SessionDescription.parse((DATA / name).read_bytes())


def test_answer_to_a_softphone_offer() -> None:
    state = OfferAnswer("192.0.2.1", session_id=42)
    answer = state.answer_offer(offer("baresip-offer.sdp"), 30000)
    assert state.answer is answer and state.local_sdp == bytes(answer.sdp)
    body = state.local_sdp.decode()
    assert "o=ivr 42 1 IN IP4 192.0.2.1" in body and "m=audio 30000 RTP/AVP" in body


def test_a_re_offer_that_changes_nothing_keeps_the_version() -> None:
    state = OfferAnswer("192.0.2.1", session_id=42)
    state.answer_offer(offer("baresip-offer.sdp"), 30000)
    first = state.local_sdp
    state.reanswer(offer("baresip-offer.sdp"), 30000)
    assert state.local_sdp == first and state.version == 1


def test_a_hold_re_offer_raises_the_version() -> None:
    state = OfferAnswer("192.0.2.1", session_id=42)
    state.answer_offer(offer("freeswitch-offer.sdp"), 30000)
    answer = state.reanswer(offer("freeswitch-hold-old.sdp"), 30000)
    assert answer.on_hold and state.version == 2
    assert "o=ivr 42 2 IN IP4" in state.local_sdp.decode()


def test_late_offer_then_the_answer_in_the_ack() -> None:
    state = OfferAnswer("192.0.2.1", session_id=7)
    ours = state.offer(30002)
    assert b"m=audio 30002 RTP/AVP 0 8 101" in ours
    theirs = sdp.negotiate(sdp.SessionDescription.parse(ours), local_ip="198.51.100.9", local_port=4000,
                           session_id=1, version=1)
    answer = state.take_answer(bytes(theirs.sdp))
    assert answer.remote_addr == ("198.51.100.9", 4000) and state.answer is answer


def test_refresh_bodies() -> None:
    state = OfferAnswer("192.0.2.1")
    state.offer(30000)
    assert state.refresh_body("UPDATE") == b""
    assert state.refresh_body("INVITE") == state.local_sdp


def test_no_common_codec_is_refused_with_488() -> None:
    state = OfferAnswer("192.0.2.1")
    text = (DATA / "baresip-offer.sdp").read_text().replace("RTP/AVP 0 8 101", "RTP/AVP 9 101")
    with pytest.raises(sdp.NegotiationError) as info:
        state.answer_offer(sdp.SessionDescription.parse(text.encode()), 30000)
    assert info.value.status == 488


def test_every_action_has_a_handler() -> None:
    assert set(HANDLERS) == set(ACTIONS.values())
    assert all(issubclass(action, ev.Action) for action in HANDLERS)
