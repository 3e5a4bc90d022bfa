"""The transfer peer tests use the fixtures of tests/peers/conftest.py (see harness.py)."""

from .harness import baresip, ivr_server, sipp  # noqa: F401 -- fixtures
