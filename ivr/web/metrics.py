"""``/metrics``: the server's counters in the Prometheus text format (prometheus-client).

Nothing here runs per packet or per tick.  What the media and SIP code already count in
``ivr serve`` is asked for when Prometheus scrapes (the ``metrics`` control operation,
:mod:`ivr.runtime.control`): the media clock's ticks, skipped ticks and its ring of per-tick
lateness (only the samples since the last scrape are added to the histogram), the RTP counters
of the calls up now, the user agent's responses by status, the registrar's bindings, the
voicemail index.  The rest comes from the call log's records, one per call event, which
the server pushes over the control socket: calls ended by outcome with their RTP totals,
set-up latency (``incoming`` to ``answer``), loop stalls (the watchdog's ``loop_stall``),
recogniser latency (``recognized``), REGISTER answers, reloads and their failures.
"""

from __future__ import annotations

import bisect
import itertools
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ivr.web.state import Console

LATENESS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
SETUP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RECOGNIZER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
RTP_KEYS = ("packets_sent", "packets_received", "lost")
MAX_PENDING_SETUPS = 10_000


class Histogram:
    """Cumulative bucket counts and a sum, fed one value at a time (off the per-packet path)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        cumulative = list(itertools.accumulate(self.counts))
        buckets = [(_le(b), c) for b, c in zip(self.bounds, cumulative, strict=False)] + [("+Inf", cumulative[-1])]
        return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=self.sum)


def _le(bound: float) -> str:
    return repr(float(bound))


class RecordCounts:
    """What the call log's records add up to; fed by :meth:`on_record` on the thread that logs."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.rtp_ended: Counter[str] = Counter()
        self.setup = Histogram(SETUP_BUCKETS)
        self.recognizer = Histogram(RECOGNIZER_BUCKETS)
        self.stalls = 0
        self.register: Counter[str] = Counter()
        self.reloads: Counter[str] = Counter()
        self._incoming: dict[str, float] = {}

    def on_record(self, record: dict[str, Any]) -> None:
        event, action = record.get("event"), record.get("action")
        if "call_id" in record:
            self._call(record, event, action)
        elif event == "loop_stall":
            self.stalls += 1
        elif event == "register":
            self.register[str(record.get("status", ""))] += 1
        elif event in ("reloaded", "reload_failed"):
            self.reloads["ok" if event == "reloaded" else "failed"] += 1

    def _call(self, record: dict[str, Any], event: Any, action: Any) -> None:
        call_id = record["call_id"]
        if event == "incoming":
            if len(self._incoming) < MAX_PENDING_SETUPS:
                self._incoming[call_id] = _epoch(record.get("ts"))
        elif action == "answer":
            began = self._incoming.pop(call_id, None)
            if began is not None:
                self.setup.observe(max(0.0, _epoch(record.get("ts")) - began))
        elif event == "ended":
            self._incoming.pop(call_id, None)
            self.outcomes[str(record.get("outcome") or record.get("reason") or "unknown")] += 1
            for key in RTP_KEYS:
                self.rtp_ended[key] += int(record.get(key) or 0)
        elif event == "call_rejected":
            self.outcomes["rejected"] += 1
        elif event == "recognized":
            self.recognizer.observe(float(record.get("latency_ms", 0)) / 1000)


class ServerCollector(Collector):
    """Every metric of one server, from the snapshot of its counters taken for this scrape."""

    def __init__(self, console: Console, counts: RecordCounts) -> None:
        self.console = console
        self.counts = counts
        self.lateness = Histogram(LATENESS_BUCKETS)
        self.snapshot: dict[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        yield from self._calls()
        yield from self._media()
        yield from self._sip()
        yield from self._features()

    def _calls(self) -> Iterator[Metric]:
        snap, counts = self.snapshot, self.counts
        yield _gauge("ivr_calls_up", "calls up now", snap.get("calls_up", 0))
        yield _gauge("ivr_calls_max", "calls allowed at once (max_calls)", snap.get("max_calls", 0))
        ended = CounterMetricFamily("ivr_calls", "calls ended, by outcome", labels=["outcome"])
        for outcome, n in sorted(counts.outcomes.items()):
            ended.add_metric([outcome], n)
        yield ended
        yield counts.setup.family("ivr_call_setup_seconds", "from the INVITE to the answer")
        # what calls hold besides themselves: nothing once they are over
        yield _gauge("ivr_transfer_legs", "outgoing call legs (transfers, a third person) up or ringing",
                     snap.get("transfer_legs", 0))
        yield _gauge("ivr_conference_rooms", "conference rooms with someone in them", snap.get("conference_rooms", 0))

    def _media(self) -> Iterator[Metric]:
        live = self.snapshot.get("rtp_live", {})
        for key, doc in (("packets_sent", "RTP packets sent"), ("packets_received", "RTP packets received"),
                         ("lost", "RTP packets lost (from sequence numbers)")):
            name = "ivr_rtp_packets_lost" if key == "lost" else f"ivr_rtp_{key}"
            yield CounterMetricFamily(name, doc, value=self.counts.rtp_ended[key] + int(live.get(key, 0)))
        clock = self.snapshot.get("clock")
        if clock is None:
            return
        for value in clock["lateness"]:  # the ticks run since the last scrape
            self.lateness.observe(value)
        yield CounterMetricFamily("ivr_media_clock_ticks", "media clock ticks run", value=clock["ticks"])
        yield CounterMetricFamily("ivr_media_clock_skipped_ticks", "ticks skipped because the loop was late",
                                  value=clock["late_ticks"])
        yield self.lateness.family("ivr_media_clock_lateness_seconds", "how late each media clock tick ran")
        yield CounterMetricFamily("ivr_loop_stalls", "event loop stalls over 50 ms (loop_stall)",
                                  value=self.counts.stalls)

    def _sip(self) -> Iterator[Metric]:
        responses = CounterMetricFamily("ivr_sip_responses", "SIP responses sent, by status", labels=["code"])
        for code, n in sorted(self.snapshot.get("sip_responses", {}).items(), key=lambda item: int(item[0])):
            responses.add_metric([str(code)], n)
        yield responses
        register = CounterMetricFamily("ivr_register_requests", "REGISTER requests answered, by status",
                                       labels=["status"])
        for status, n in sorted(self.counts.register.items()):
            register.add_metric([status], n)
        yield register
        yield _gauge("ivr_registrations", "live registrations (bindings) of the extensions",
                     self.snapshot.get("registrations", 0))
        reloads = CounterMetricFamily("ivr_reloads", "reloads, by result (ok, failed)", labels=["result"])
        for result in ("ok", "failed"):
            reloads.add_metric([result], self.counts.reloads[result])
        yield reloads

    def _features(self) -> Iterator[Metric]:
        yield self.counts.recognizer.family("ivr_recognizer_latency_seconds",
                                            "from the end of the caller's speech to the recogniser's answer")
        stored = GaugeMetricFamily("ivr_voicemail_messages", "voicemail messages stored, by status",
                                   labels=["status"])
        for status, n in self._messages().items():
            stored.add_metric([status], n)
        yield stored

    def _messages(self) -> dict[str, int]:
        config = self.console.config
        if not config.mailboxes:
            return {}
        path = config.data / "voicemail" / "index.sqlite3"
        if not path.exists():
            return {}
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0) as db:
                rows = db.execute("SELECT status, count(*) FROM messages WHERE status != 'deleted' GROUP BY status")
                return {str(s): int(n) for s, n in rows}
        except sqlite3.Error:
            return {}


def _epoch(ts: Any) -> float:
    """A record's time stamp (``2026-12-06T19:01:21.123Z``, milliseconds) in seconds."""
    try:
        return datetime.strptime(str(ts), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return time.time()


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class Metrics:
    """The registry of one server; :meth:`render` is the scrape's answer, from the server's
    snapshot (the ``metrics`` control operation) and the records counted meanwhile."""

    def __init__(self, console: Console) -> None:
        self.counts = RecordCounts()
        self.collector = ServerCollector(console, self.counts)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    def render(self, snapshot: dict[str, Any]) -> bytes:
        self.collector.snapshot = snapshot
        return generate_latest(self.registry)
