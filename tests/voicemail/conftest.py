"""The voicemail call tests use the fixtures of tests/peers/conftest.py (see tests/transfer/harness.py)."""

from tests.transfer.harness import fixtures

globals().update(fixtures)  # ivr_server, sipp and the fixtures they depend on
