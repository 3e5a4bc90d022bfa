"""The transfer peer tests reuse the server engineer's harness in tests/peers/conftest.py."""

from tests.peers.conftest import baresip, ivr_server, sipp  # noqa: F401 -- fixtures
