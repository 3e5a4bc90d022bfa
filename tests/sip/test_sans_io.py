"""The protocol cores never import asyncio (STYLE.md: sans-IO), directly or through an import."""

from __future__ import annotations

import subprocess
import sys

SANS_IO = [
    "ivr.dsl.parser", "ivr.dsl.checks", "ivr.dsl.compiler", "ivr.dsl.machine", "ivr.dsl.events",
    "ivr.dsl.schedule", "ivr.dsl.loader", "ivr.dsl.graph",
    "ivr.sip.message", "ivr.sip.sdp", "ivr.sip.transaction", "ivr.sip.dialog", "ivr.sip.ua",
    "ivr.sip.auth", "ivr.sip.registrar", "ivr.sip.throttle", "ivr.sip.trunk", "ivr.sip.timers", "ivr.sip.info",
    "ivr.sip.events", "ivr.sip.uacore", "ivr.sip.client",
    "ivr.media.g711", "ivr.media.rtp", "ivr.media.dtmf",
    "ivr.voicemail.dialogue", "ivr.voicemail.leave", "ivr.voicemail.access",
]  # fmt: skip


def test_protocol_cores_do_not_import_asyncio() -> None:
    probe = (
        "import importlib, sys\n"
        f"for name in {SANS_IO!r}:\n"
        "    importlib.import_module(name)\n"
        "    if 'asyncio' in sys.modules:\n"
        "        print(name)\n"
        "        break\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout == "", f"{out.stdout.strip()} brings asyncio in"
