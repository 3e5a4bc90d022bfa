"""Live events and /metrics from a real ``ivr serve`` while sipp calls it."""

from __future__ import annotations

import json
import queue
import threading
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .client import Client
from .conftest import WebServer

pytestmark = [pytest.mark.slow, pytest.mark.peer]


def stream_events(client: Client, path: str, into: queue.Queue[dict[str, Any]]) -> threading.Thread:
    """Read a server-sent event stream in a thread, one record per ``data:`` line."""
    request = urllib.request.Request(client.base + path)
    cookies = "; ".join(f"{c.name}={c.value}" for c in client.jar)
    request.add_header("Cookie", cookies)
    response = urllib.request.urlopen(request, timeout=60)
    assert response.status == 200 and response.headers["Content-Type"] == "text/event-stream"

    def read() -> None:
        with response:
            for line in response:
                if line.startswith(b"data: "):
                    into.put(json.loads(line[6:]))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def wait_record(records: queue.Queue[dict[str, Any]], match: Any, timeout: float = 30.0) -> dict[str, Any]:
    while True:
        record = records.get(timeout=timeout)  # queue.Empty fails the test
        if match(record):
            return record


def scrape(server: WebServer) -> dict[str, Any]:
    text = Client(server.url).get("/metrics").text
    samples: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + "".join(f"[{k}={v}]" for k, v in sorted(sample.labels.items()))
            samples[key] = sample.value
    return samples


def test_a_calls_events_stream_live_and_metrics_count_it(web_server: WebServer, sipp: Any) -> None:
    before = scrape(web_server)
    records: queue.Queue[dict[str, Any]] = queue.Queue()
    stream_events(web_server.client("100"), "/api/v1/events", records)
    result = sipp("basic_caller_bye.xml", web_server.ivr)
    result.check()
    call_id = result.call_id
    incoming = wait_record(records, lambda r: r.get("call_id") == call_id)
    assert incoming["event"] == "incoming"
    ended = wait_record(records, lambda r: r.get("call_id") == call_id and r.get("event") == "ended")
    after = scrape(web_server)

    assert after["ivr_calls_up"] == 0
    outcome = ended.get("outcome") or ended.get("reason")
    key = f"ivr_calls_total[outcome={outcome}]"
    assert after[key] == before.get(key, 0) + 1
    assert after["ivr_rtp_packets_sent_total"] >= before["ivr_rtp_packets_sent_total"] + ended["packets_sent"] > 0
    assert after["ivr_sip_responses_total[code=200]"] >= before.get("ivr_sip_responses_total[code=200]", 0) + 1
    assert after["ivr_call_setup_seconds_count"] == before["ivr_call_setup_seconds_count"] + 1
    assert after["ivr_media_clock_ticks_total"] > before["ivr_media_clock_ticks_total"]
    assert after["ivr_media_clock_lateness_seconds_count"] > before["ivr_media_clock_lateness_seconds_count"]
    for name in ("ivr_media_clock_skipped_ticks_total", "ivr_loop_stalls_total", "ivr_registrations",
                 "ivr_reloads_total[result=failed]", "ivr_recognizer_latency_seconds_count", "ivr_calls_max"):
        assert name in after


def test_a_user_streams_only_their_own_extension(web_server: WebServer) -> None:
    reply = web_server.client("201").get("/api/v1/events?extension=202")
    assert (reply.status, reply.json()) == (403, {"error": "extension 202 is not yours"})
    assert web_server.client("100").get("/api/v1/events?extension=999").json() == {"error": "no extension '999'"}


def test_the_sample_grafana_dashboard_uses_only_metrics_the_server_serves(web_server: WebServer) -> None:
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json").read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"\bivr_[a-z_]+", target["expr"])}
    text = Client(web_server.url).get("/metrics").text
    families = {family.name for family in text_string_to_metric_families(text)}
    unserved = {n for n in used if re.sub(r"_(total|bucket|count|sum)$", "", n) not in families}
    assert used and not unserved, unserved
