"""VoicemailService: start-up recovery of a cut recording, then it is mailed."""

from __future__ import annotations

import email
import socket
import threading
from email.policy import default as default_policy

import numpy as np
from aiosmtpd.controller import Controller

from ivr.config import Config, Mailbox, SmtpConfig
from ivr.media.recording import WavRecorder
from ivr.voicemail.service import VoicemailService
from ivr.voicemail.store import VoicemailStore


class Inbox:
    def __init__(self) -> None:
        self.subjects: list[str] = []
        self.received = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.subjects.append(
            email.message_from_bytes(envelope.content, policy=default_policy)["Subject"]
        )
        self.received.set()
        return "250 OK"


def test_start_recovers_a_crashed_message_and_mails_it(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    box = Mailbox(number="200", emails=("a@example.com",))
    config = Config(data=tmp_path, mailboxes=(box,), smtp=SmtpConfig(host="127.0.0.1", port=port))
    store = VoicemailStore(tmp_path)
    rec = WavRecorder(
        store.incoming_path("200", "+41791112233", 1_700_000_000), max_length=60, clock=lambda: 0.0
    )
    rec.write((np.sin(np.arange(16000) / 3) * 9000).astype(np.int16))  # 2 s, never closed: a crash
    service = VoicemailService(config)
    try:
        recovered = service.start()
        assert [(m.mailbox, m.caller) for m in recovered] == [("200", "+41791112233")]
        assert inbox.received.wait(timeout=20)
        assert inbox.subjects == ["New voicemail from +41791112233 (2 s) in mailbox 200"]
    finally:
        service.stop()
        controller.stop()
