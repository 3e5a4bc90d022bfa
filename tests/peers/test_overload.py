"""Overload that starves no one: a flood of INVITEs from one address while another places calls.

sipp bound to 127.0.0.2 sends INVITEs far above ``[overload] rate`` (10/s with a burst of 20
here, so the flood stays short) while sipp bound to 127.0.0.3 places a few ordinary calls at a low rate.  Every
ordinary call must succeed, the flood must be answered 503 (the calls it got through are
answered as usual), the server must go on serving, and its log must say what it refused once
per source and ``log_interval``, not once per request.  Bounded: ``-m`` on both, ``-timeout``,
process timeouts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.peers.conftest import SCENARIOS, free_port

needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed")

FLOOD_IP, CALLER_IP = "127.0.0.2", "127.0.0.3"
FLOOD_CALLS, FLOOD_RATE = 300, 200  # 1.5 s of INVITEs, twenty times the rate per address
RATE, BURST = 10, 20
CALLS, CALL_RATE = 4, 2
LOG_INTERVAL = 1.0


def sipp_from(ip: str, server: Any, folder: Path, args: list[str]) -> subprocess.Popen[str]:
    folder.mkdir()
    cmd = ["sipp", server.address, "-i", ip, "-p", str(free_port()), "-mp", str(free_port(span=4)),
           "-cp", str(free_port()), "-s", "+41435435570", "-nostdin", "-timeout", "30s", "-timeout_error",
           "-trace_err", "-error_file", str(folder / "errors.log"), *args]
    return subprocess.Popen(cmd, cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def counter(output: str, name: str) -> int:
    """The cumulative column of the last statistics screen sipp printed."""
    values = re.findall(rf"{name}\s*\|\s*\d+\s*\|\s*(\d+)", output)
    return int(values[-1]) if values else 0


@pytest.mark.peer
@pytest.mark.slow
@needs_sipp
def test_a_flood_from_one_address_starves_no_other_caller(
    ivr_server: Callable[..., Any], sipp: Callable[..., Any], tmp_path: Path
) -> None:
    # max_lag = 0: shedding on the loop's lag depends on how busy the machine is (CI runs many
    # tests at once); that rule is tested on a fake clock (tests/runtime/test_overload.py).
    # Here the per-address rule alone, end to end.
    server = ivr_server("menu.ivr", sections=f'[overload]\nlog_interval = "{LOG_INTERVAL:g}s"\nmax_lag = 0\n'
                                             f"rate = {RATE}\nburst = {BURST}\n")
    flood = sipp_from(FLOOD_IP, server, tmp_path / "flood",
                      ["-sn", "uac", "-r", str(FLOOD_RATE), "-m", str(FLOOD_CALLS), "-l", str(FLOOD_CALLS)])
    callers = sipp_from(CALLER_IP, server, tmp_path / "callers",
                        ["-sf", str(SCENARIOS / "basic_caller_bye.xml"), "-r", str(CALL_RATE), "-m", str(CALLS)])
    callers_out, _ = callers.communicate(timeout=60)
    flood_out, _ = flood.communicate(timeout=60)

    assert callers.returncode == 0, callers_out[-2000:]
    assert counter(callers_out, "Successful call") == CALLS
    flood_ok, flood_failed = counter(flood_out, "Successful call"), counter(flood_out, "Failed call")
    assert flood_ok + flood_failed == FLOOD_CALLS
    assert flood_failed > FLOOD_CALLS // 2, flood_out[-2000:]  # most of the flood was refused ...
    assert flood_ok >= BURST  # ... after its burst
    refused_503 = sum(1 for _ in re.finditer(r"SIP/2.0 503", (tmp_path / "flood" / "errors.log").read_text()))
    assert refused_503 > FLOOD_CALLS // 2  # sipp's error log shows the 503s it did not expect

    # Every refused INVITE is counted in the log, in one line per source and interval.
    counted = 0

    def all_counted(record: dict[str, Any]) -> bool:
        nonlocal counted
        counted += record["count"] if record.get("event") == "refused" else 0
        return counted >= refused_503

    server.wait_for(all_counted, timeout=3 * LOG_INTERVAL + 10, what="refused records counting every 503")
    refused = [r for r in server.records if r.get("event") == "refused"]
    assert {r["source"] for r in refused} == {FLOOD_IP}
    assert {r["reason"] for r in refused} == {"rate"}
    assert sum(r["count"] for r in refused) >= refused_503  # retransmitted INVITEs are refused again
    assert len(refused) <= 2 + (FLOOD_CALLS / FLOOD_RATE + 3) / LOG_INTERVAL  # not one per request
    stamps = [time.mktime(time.strptime(r["ts"][:19], "%Y-%m-%dT%H:%M:%S")) + float(r["ts"][19:-1]) for r in refused]
    assert all(b - a >= LOG_INTERVAL - 0.01 for a, b in zip(stamps, stamps[1:], strict=False))

    sipp("options.xml", server).check()  # still serving
    assert server.proc.poll() is None
