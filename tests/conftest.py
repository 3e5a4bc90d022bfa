"""Suite-wide settings.

Hypothesis runs derandomized by default, so a CI run is reproducible and a red run can be
replayed; ``IVR_HYPOTHESIS=explore`` draws fresh random examples for a hunt (combine with
``IVR_FUZZ_EXAMPLES=5000`` for the flow fuzzers).

``postgres`` is a PostgreSQL cluster started once for the session, for the tests that run
the storage against the shared back end as well as SQLite (tests/postgres.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

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
