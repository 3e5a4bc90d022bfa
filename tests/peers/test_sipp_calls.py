"""sipp calls ``ivr serve``: signalling behaviour checked on the wire and in the server's log.

Every test runs a real ``ivr serve`` subprocess on loopback (see conftest.py) and one sipp
scenario from scenarios/; sipp's exit status says whether every expected message came, the
message trace and the server's JSON log say what exactly happened.
"""

from __future__ import annotations

import re
import shutil
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from ivr.media import g711

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed"),
]

# The harness types live in conftest.py (fixtures: menu_server, ivr_server, sipp).
IvrServer = Any
SippResult = Any
Sipp = Callable[..., Any]


def ended(server: IvrServer, call_id: str) -> dict:
    return server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "ended", what=f"ended {call_id}")


def answer_mline(result: SippResult) -> str:
    oks = [m for m in result.received("SIP/2.0 200") if re.search(r"^CSeq:\s*1 INVITE", m, re.M | re.I)]
    assert oks, "no 200 to the INVITE in sipp's trace"
    m = re.search(r"^m=audio \d+ RTP/AVP [0-9 ]+", oks[0], re.M)
    assert m, oks[0]
    return m.group(0).strip()


def test_options_answered_200(menu_server: IvrServer, sipp: Sipp) -> None:
    result = sipp("options.xml", menu_server)
    result.check()
    ok = result.received("SIP/2.0 200")[0]
    assert re.search(r"^Allow:.*INVITE", ok, re.M | re.I)


def test_basic_call_caller_hangs_up(menu_server: IvrServer, sipp: Sipp) -> None:
    result = sipp("basic_caller_bye.xml", menu_server)
    result.check()
    record = ended(menu_server, result.call_id)
    assert record["reason"] == "bye"
    assert record["packets_sent"] >= 50  # 1.5 s of 20 ms RTP packets (prompt, then silence)
    records = menu_server.call_records(result.call_id)
    assert [r["caller"] for r in records][:1] == ["+41791112233"]
    assert any(r.get("action") == "answer" for r in records)
    assert "welcome" in menu_server.steps(result.call_id)
    assert answer_mline(result).startswith("m=audio") and answer_mline(result).split()[3] == "0"


def test_call_over_tcp(menu_server: IvrServer, sipp: Sipp) -> None:
    result = sipp("basic_caller_bye.xml", menu_server, extra=("-t", "t1"))
    result.check()
    incoming = menu_server.wait_for(lambda r: r.get("call_id") == result.call_id and r.get("event") == "incoming")
    assert incoming["transport"] == "tcp"
    assert ended(menu_server, result.call_id)["reason"] == "bye"


def test_ivr_bye_over_tcp_uses_the_callers_connection(ivr_server: Callable[..., IvrServer], sipp: Sipp) -> None:
    server = ivr_server("hangup.ivr")
    result = sipp("basic_ivr_bye.xml", server, extra=("-t", "t1"))
    result.check()  # sipp (one TCP socket) received ivr's BYE on the connection it opened
    assert result.received("BYE ")
    assert ended(server, result.call_id)["outcome"] == "hangup"


def test_flow_hangs_up_and_ivr_sends_bye(ivr_server: Callable[..., IvrServer], sipp: Sipp) -> None:
    server = ivr_server("hangup.ivr")
    result = sipp("basic_ivr_bye.xml", server)
    result.check()
    assert len(result.received("BYE ")) >= 1
    record = ended(server, result.call_id)
    assert record["outcome"] == "hangup"


@pytest.mark.parametrize(("scenario", "payload_type", "codec"), [("pcma_only.xml", 8, "PCMA"), ("pcmu_only.xml", 0, "PCMU")])
def test_single_codec_offer_is_answered_with_that_codec(
    menu_server: IvrServer, sipp: Sipp, scenario: str, payload_type: int, codec: str
) -> None:
    result = sipp(scenario, menu_server)
    result.check()
    assert answer_mline(result).split()[3:] == [str(payload_type), "101"]
    media = menu_server.wait_for(lambda r: r.get("call_id") == result.call_id and r.get("event") == "media")
    assert (media["codec"], media["payload_type"]) == (codec, payload_type)
    ended(menu_server, result.call_id)


def test_offer_without_common_codec_gets_488(menu_server: IvrServer, sipp: Sipp) -> None:
    result = sipp("no_common_codec.xml", menu_server)
    result.check()
    record = menu_server.wait_for(lambda r: r.get("call_id") == result.call_id and r.get("action") == "reject")
    assert record["status"] == 488
    assert not any(r.get("action") == "answer" for r in menu_server.call_records(result.call_id))


def test_cancel_before_answer(ivr_server: Callable[..., IvrServer], sipp: Sipp) -> None:
    server = ivr_server("menu.ivr", config='answer_delay = "20s"')
    result = sipp("cancel.xml", server)
    result.check()
    record = ended(server, result.call_id)
    assert record["reason"] == "cancelled"
    assert not any(r.get("action") == "answer" for r in server.call_records(result.call_id))


def test_lost_ack_200_resent_until_ack(menu_server: IvrServer, sipp: Sipp) -> None:
    result = sipp("lost_ack.xml", menu_server)
    result.check()
    oks = [m for m in result.received("SIP/2.0 200") if re.search(r"^CSeq:\s*1 INVITE", m, re.M | re.I)]
    # the first 200 and its retransmissions at 0.5 s and 1.5 s while the ACK was missing (2.6 s)
    assert len(oks) >= 3, f"only {len(oks)} 200 OK for the INVITE"
    assert len(set(oks)) == 1  # retransmissions are the same response
    record = ended(menu_server, result.call_id)
    assert record["reason"] == "bye"  # the call survived the late ACK and ended by sipp's BYE


def test_reinvite_hold_and_resume(menu_server: IvrServer, sipp: Sipp) -> None:
    result = sipp("reinvite_hold.xml", menu_server)
    result.check()
    ended(menu_server, result.call_id)
    reoffers = [r for r in menu_server.call_records(result.call_id) if r.get("event") == "reoffer"]
    assert [r["hold"] for r in reoffers] == [True, False]
    directions = [r["direction"] for r in menu_server.call_records(result.call_id) if r.get("event") == "media"]
    assert directions == ["sendrecv", "recvonly", "sendrecv"]


def test_session_refresh_by_update_and_reinvite(menu_server: IvrServer, sipp: Sipp) -> None:
    result = sipp("session_timer.xml", menu_server)
    result.check()
    oks = result.received("SIP/2.0 200")
    assert sum(1 for m in oks if re.search(r"^Session-Expires:\s*\d+", m, re.M | re.I)) >= 3
    assert ended(menu_server, result.call_id)["reason"] == "bye"


def test_dtmf_from_sipp_pcap_selects_menu_option(menu_server: IvrServer, sipp: Sipp) -> None:
    result = sipp("dtmf_menu.xml", menu_server)
    result.check()
    record = ended(menu_server, result.call_id)
    assert record["outcome"] == "hangup"
    keys = [r for r in menu_server.call_records(result.call_id) if r.get("event") == "key" and "via" in r]
    assert [(k["digit"], k["via"]) for k in keys] == [("2", "rtp")]
    steps = menu_server.steps(result.call_id)
    assert steps[:2] == ["welcome", "support"] or ("support" in steps and "sales" not in steps)


def test_dtmf_by_sip_info_selects_menu_option(menu_server: IvrServer, sipp: Sipp) -> None:
    result = sipp("dtmf_info.xml", menu_server)
    result.check()
    ended(menu_server, result.call_id)
    keys = [r for r in menu_server.call_records(result.call_id) if r.get("event") == "key" and "via" in r]
    assert [(k["digit"], k["via"]) for k in keys] == [("2", "info")]
    assert "support" in menu_server.steps(result.call_id)


def test_media_timeout_ends_a_silent_call(ivr_server: Callable[..., IvrServer], sipp: Sipp) -> None:
    server = ivr_server("menu.ivr", config='media_timeout = "2s"')
    result = sipp("basic_ivr_bye.xml", server)  # sipp sends no RTP at all: a dead call
    result.check()  # ivr sent the BYE and sipp answered it
    record = ended(server, result.call_id)
    assert record["reason"] == "media_timeout"
    assert record["packets_received"] == 0


def rtp_pcap(payloads: list[bytes], payload_type: int) -> bytes:
    """A pcap of RTP packets 20 ms apart (Ethernet/IPv4/UDP, as sipp's play_pcap_audio reads them)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for n, payload in enumerate(payloads):
        rtp = struct.pack("!BBHII", 0x80, payload_type, n, n * 160, 0x1234ABCD) + payload
        udp = struct.pack("!HHHH", 40000, 40000, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n, 0, 64, 17, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
        frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
        out.append(struct.pack("<IIII", n // 50, n % 50 * 20000, len(frame), len(frame)) + frame)
    return b"".join(out)


def test_inband_dtmf_from_a_phone_without_rfc4733(menu_server: IvrServer, sipp: Sipp) -> None:
    t = np.arange(int(0.15 * 8000)) / 8000
    tone = (np.sin(2 * np.pi * 697 * t) + np.sin(2 * np.pi * 1336 * t)) * 8000  # key 2 (ITU-T Q.23)
    audio = np.concatenate([np.zeros(1600), tone, np.zeros(8000)]).astype(np.int16)
    payloads = [g711.encode(audio[i : i + 160], 0) for i in range(0, len(audio) - 159, 160)]
    result = sipp("dtmf_inband.xml", menu_server, files={"inband_2.pcap": rtp_pcap(payloads, 0)})
    result.check()
    media = menu_server.wait_for(lambda r: r.get("call_id") == result.call_id and r.get("event") == "media")
    assert media["dtmf_pt"] is None  # nothing but audio was negotiated
    ended(menu_server, result.call_id)
    keys = [r["digit"] for r in menu_server.call_records(result.call_id) if r.get("event") == "key" and "via" in r]
    assert keys == ["2"]
    assert "support" in menu_server.steps(result.call_id)


def test_late_offer_answer_in_the_ack(menu_server: IvrServer, sipp: Sipp) -> None:
    result = sipp("late_offer.xml", menu_server)
    result.check()
    ended(menu_server, result.call_id)
    records = menu_server.call_records(result.call_id)
    ack = next(i for i, r in enumerate(records) if r.get("event") == "ack")
    media = [r for r in records[ack:] if r.get("event") == "media"]
    assert [(m["codec"], m["payload_type"]) for m in media] == [("PCMA", 8)]  # applied from the ACK's answer


def test_voicemail_to_a_missing_mailbox_ends_the_call_instead_of_silence(
    ivr_server: Callable[..., IvrServer], sipp: Sipp
) -> None:
    server = ivr_server("no_mailbox.ivr")
    result = sipp("basic_ivr_bye.xml", server)
    result.check()  # ivr hung up by itself
    record = ended(server, result.call_id)
    assert record["outcome"] == "error" and "999" in record["detail"]
