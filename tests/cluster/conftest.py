"""The cluster tests use the peer harness's fixtures (tests/peers/conftest.py, via tests/transfer/harness.py)."""

from tests.transfer.harness import fixtures

globals().update(fixtures)  # sipp and the fixtures it depends on (tts_cache is tests/conftest.py's)
