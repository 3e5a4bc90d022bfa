"""``ivr serve`` start-up: a broken flow or deployment file stops it before it binds a port."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.peer]


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ivr", "serve", *args, "--data", str(tmp_path / "data"), "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )


def test_broken_flow_prints_its_diagnostics_and_exits_1_before_binding(tmp_path: Path) -> None:
    flow = tmp_path / "broken.ivr"
    flow.write_text("number default -> start\n\nstart:\n    say \"Hello.\"\n    -> suport\n\nsupport:\n    hangup\n")
    result = serve(tmp_path, str(flow))
    assert result.returncode == 1
    assert f"{flow}:5:" in result.stderr and "suport" in result.stderr and "support" in result.stderr
    assert "listening on" not in result.stderr


def test_bad_deployment_file_is_reported_with_its_name(tmp_path: Path) -> None:
    config = tmp_path / "ivr.toml"
    config.write_text('[server]\nlisten = "127.0.0.1:5060"\ndrain_timeout = "soon"\n')
    flow = Path(__file__).parent / "flows" / "hangup.ivr"
    result = serve(tmp_path, str(flow), "--config", str(config))
    assert result.returncode == 2
    assert "drain_timeout" in result.stderr and str(config) in result.stderr
    assert "listening on" not in result.stderr


def test_no_flow_at_all_is_an_error(tmp_path: Path) -> None:
    result = serve(tmp_path)
    assert result.returncode == 2
    assert "no flow given" in result.stderr
