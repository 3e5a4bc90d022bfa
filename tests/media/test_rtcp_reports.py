"""RtcpReporter: SR or RR with SDES (and BYE), when they are due, and baresip's real SR read back."""

from __future__ import annotations

import random

import pytest

from ivr.media.rtcp_reports import RtcpReporter
from ivr.media.rtp import (
    Bye,
    ReceiverReport,
    RtpError,
    SenderReport,
    SourceDescription,
    SourceStats,
    ntp_middle,
    ntp_timestamp,
    parse_rtcp,
    rtcp_bytes,
)
from tests.media.captures import capture

SSRC, CNAME = 0x1234ABCD, "ivr-1234abcd@127.0.0.1"
# baresip's compounds in a call (capture_baresip_rtcp.py): APP, SR + SDES, SR + SDES, BYE
APP, FIRST_SR, SECOND_SR, BYE = (data for _, data in capture("baresip_rtcp"))


def heard(ssrc: int, packets: int) -> SourceStats:
    """Reception statistics of ``packets`` 20 ms packets from ``ssrc``."""
    stats = SourceStats(ssrc)
    for seq in range(packets):
        stats.update(seq, seq * 160, 1000 + seq * 160)
    return stats


def test_reports_are_due_every_interval_randomised_half_to_one_and_a_half() -> None:
    random.seed(3)
    reporter = RtcpReporter(SSRC, CNAME, now=50.0, interval=4.0)
    due = [reporter.next_report - 50.0]
    for _ in range(200):
        reporter.schedule(100.0)
        due.append(reporter.next_report - 100.0)
    assert 2.0 <= min(due) < 2.2 and 5.8 < max(due) <= 6.0


def test_a_receiver_report_until_we_send_then_a_sender_report_then_rr_again() -> None:
    reporter = RtcpReporter(SSRC, CNAME, now=0.0)
    kw = {"wallclock": 1_700_000_000.25, "rtp_timestamp": 4242, "source": None}
    rr, sdes = parse_rtcp(reporter.compound(5.0, sent=(0, 0), **kw))  # type: ignore[arg-type]
    assert rr == ReceiverReport(SSRC, ())
    assert isinstance(sdes, SourceDescription) and sdes.chunks[0].cname == CNAME
    sr, _ = parse_rtcp(reporter.compound(10.0, sent=(250, 40_000), **kw))  # type: ignore[arg-type]
    assert sr == SenderReport(SSRC, ntp_timestamp(1_700_000_000.25), 4242, 250, 40_000, ())
    again, _ = parse_rtcp(reporter.compound(15.0, sent=(250, 40_000), **kw))  # type: ignore[arg-type]
    assert isinstance(again, ReceiverReport)  # nothing sent since the last report


def test_the_last_report_says_bye_and_round_trips() -> None:
    reporter = RtcpReporter(SSRC, CNAME, now=0.0)
    data = reporter.compound(
        1.0, wallclock=1e9, rtp_timestamp=0, sent=(10, 1600), source=heard(0xBEEF, 10), bye=True
    )
    packets = parse_rtcp(data)
    assert [type(p) for p in packets] == [SenderReport, SourceDescription, Bye]
    assert packets[2] == Bye((SSRC,)) and rtcp_bytes(packets) == data


def test_baresips_sender_report_comes_back_in_our_report_block() -> None:
    sr = parse_rtcp(FIRST_SR)[0]
    assert isinstance(sr, SenderReport)
    source = heard(sr.ssrc, 250)
    RtcpReporter.received(APP, 20.0, source)  # an APP packet alone: nothing to keep
    assert source.last_sr == 0
    RtcpReporter.received(FIRST_SR, 20.0, source)
    reporter = RtcpReporter(SSRC, CNAME, now=0.0)
    rr = parse_rtcp(reporter.compound(21.5, wallclock=0.0, rtp_timestamp=0, sent=(0, 0), source=source))[0]
    assert isinstance(rr, ReceiverReport) and len(rr.reports) == 1
    block = rr.reports[0]
    assert (block.ssrc, block.lsr, block.dlsr) == (sr.ssrc, ntp_middle(sr.ntp_timestamp), int(1.5 * 65536))
    assert block.cumulative_lost == 0 and block.highest_sequence == 249


def test_a_sender_report_of_another_source_is_not_kept() -> None:
    source = heard(0x0BAD, 5)
    RtcpReporter.received(SECOND_SR, 20.0, source)
    RtcpReporter.received(BYE, 21.0, None)  # nobody heard yet: nothing to keep either
    assert source.last_sr == 0 and source.last_sr_at is None


def test_a_cut_compound_raises() -> None:
    with pytest.raises(RtpError) as info:
        RtcpReporter.received(FIRST_SR[:-3], 0.0, None)  # its SDES lost its last three bytes
    assert str(info.value) == "RTCP packet type 202 claims 28 bytes, only 25 left"
