"""The cluster tests use the peer harness's fixtures (tests/peers/conftest.py, via tests/transfer/harness.py)."""

from tests.transfer.harness import fixtures

globals().update(fixtures)  # sipp, tts_cache and the fixtures they depend on
