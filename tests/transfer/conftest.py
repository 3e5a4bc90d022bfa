"""The transfer peer tests use the fixtures of tests/peers/conftest.py (see harness.py)."""

from .harness import fixtures

globals().update(fixtures)  # ivr_server, sipp, baresip and the fixtures they depend on
