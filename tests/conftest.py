"""Suite-wide settings.

Hypothesis runs derandomized by default, so a CI run is reproducible and a red run can be
replayed; ``IVR_HYPOTHESIS=explore`` draws fresh random examples for a hunt (combine with
``IVR_FUZZ_EXAMPLES=5000`` for the flow fuzzers).

``postgres`` is a PostgreSQL cluster started once for the session, for the tests that run
the storage against the shared back end as well as SQLite (tests/postgres.py); ``tts_cache`` is
the one TTS cache of every ``ivr serve`` the session starts (a prompt is rendered once).

The differential test (tests/peers/test_differential.py) places minutes of real-time calls on
live servers.  When its cases are among the tests to run, ``differential_live`` starts those
calls with the session, on a thread of their own (tests/peers/differential.py ``LiveRun``), and
its tests run last: the calls are made while the other tests run, not after them.  The modules
without real peers run first, so that the calls overlap those rather than timing-sensitive
peer tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.postgres import Postgres
from tests.postgres import available as postgres_available

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("IVR_HYPOTHESIS", "ci"))


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL cluster of the test session's own (tests/postgres.py), stopped at the end."""
    if not postgres_available():
        pytest.skip("PostgreSQL (Debian postgresql) is not installed")
    cluster = Postgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def tts_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TTS cache shared by every server of the session (renders are written atomically)."""
    return tmp_path_factory.mktemp("tts-cache")


DIFFERENTIAL = "tests/peers/test_differential.py"
LIVE_CASES = "test_live_call_does_what_the_flow_test_says"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules without real peers first (while the differential test's calls are made beside
    them, these are the tests whose timing the calls cannot upset), then the modules with real
    peers (marked ``peer``), then the differential test, its live cases last of all.  Each
    module's tests stay together and in order."""
    with_peers = {i.module for i in items if i.get_closest_marker("peer") is not None}

    def rank(item: pytest.Item) -> int:
        if item.nodeid.startswith(DIFFERENTIAL):
            return 3 if item.name.startswith(LIVE_CASES) else 2
        return 1 if item.module in with_peers else 0

    items.sort(key=rank)  # stable: the order within each rank is the collection order


@pytest.fixture(scope="session", autouse=True)
def differential_live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tts_cache: Path
) -> Iterator[Any]:
    """The differential test's live calls, started with the session when its cases are to run
    (a ``tests.peers.differential.LiveRun``), else None."""
    if not any(
        i.nodeid.startswith(DIFFERENTIAL) and i.name.startswith(LIVE_CASES)
        for i in request.session.items
    ):
        yield None
        return
    from tests.peers import test_differential

    run = test_differential.start_live_run(tmp_path_factory.mktemp("differential"), tts_cache)
    try:
        yield run
    finally:
        run.close()
