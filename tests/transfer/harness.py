"""The server engineer's peer harness (tests/peers/conftest.py: ``ivr serve`` as a process, sipp
and baresip runners), loaded by path so these tests reuse it rather than keep a copy."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from _pytest.fixtures import FixtureFunctionDefinition

_PATH = Path(__file__).resolve().parents[1] / "peers" / "conftest.py"


def _load() -> Any:
    """The module pytest already loaded for tests/peers, or a copy of our own."""
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve() == _PATH:
            return module
    name = "_ivr_peer_harness"
    spec = importlib.util.spec_from_file_location(name, _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


peers = _load()

# Every fixture of the harness (ivr_server, sipp, baresip and whatever they come to depend on).
fixtures: dict[str, Any] = {
    name: value for name, value in vars(peers).items()
    if isinstance(value, FixtureFunctionDefinition) or hasattr(value, "_pytestfixturefunction")
}
SIPP: str | None = peers.SIPP
free_port = peers.free_port
