"""Voice2Mail against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import email
import io
import socket
import threading
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest
import soundfile
from aiosmtpd.controller import Controller

from ivr.config import Mailbox, SmtpConfig
from ivr.dsl.events import ActionDone, RecordingDone, StartRecording
from ivr.voicemail.leave import LeaveMessage
from ivr.voicemail.mailer import Voice2Mail
from ivr.voicemail.store import VoicemailStore

from .helpers import Driver, record

BOX = Mailbox(number="200", owner="Alice Example", emails=("alice@example.com", "desk@example.com"))


class Inbox:
    def __init__(self) -> None:
        self.mails: list[tuple[list[str], EmailMessage]] = []
        self.received = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        msg = email.message_from_bytes(envelope.content, policy=default_policy)
        self.mails.append((list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        self.received.set()
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _smtp_server(port: int) -> tuple[Controller, Inbox]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, inbox


def _leave_a_message(tmp_path, store: VoicemailStore, seconds: float) -> float:
    """A caller leaves a message through the real dialogue; returns the recorded duration."""
    d = Driver(LeaveMessage(mailbox=BOX, store=store, caller="+41791112233", data_dir=tmp_path))
    actions = d.play_out(d.start())
    (start,) = d.play_out(actions)
    assert isinstance(start, StartRecording)
    duration = record(start, seconds)
    d.play_out(d.send(RecordingDone(start.path, duration, "key")))
    assert d.m.result == ActionDone("voicemail", "saved")
    return duration


def _attachment_duration(msg: EmailMessage) -> float:
    (part,) = [p for p in msg.iter_attachments()]
    assert part.get_content_type() == "audio/wav"
    data = part.get_content()
    return soundfile.info(io.BytesIO(data)).duration


def test_new_message_is_mailed_with_the_wav(tmp_path):
    port = _free_port()
    controller, inbox = _smtp_server(port)
    try:
        store = VoicemailStore(tmp_path)
        recorded = _leave_a_message(tmp_path, store, 3.3)
        mailer = Voice2Mail(
            store,
            SmtpConfig(host="127.0.0.1", port=port, sender="ivr@acme.test"),
            mailboxes=[BOX],
            timezone="Europe/Zurich",
        )
        assert mailer.deliver_pending(now=2e9) == 1
        ((rcpt, msg),) = inbox.mails
        assert rcpt == ["alice@example.com", "desk@example.com"]
        assert msg["From"] == "ivr@acme.test"
        assert msg["Subject"] == "New voicemail from +41791112233 (3 s) in mailbox 200"
        plain = msg.get_body(preferencelist=("plain",))
        assert plain is not None
        body = plain.get_content()
        assert (
            "Caller:   +41791112233" in body
            and "Duration: 3.3 s" in body
            and "200 (Alice Example)" in body
        )
        assert abs(_attachment_duration(msg) - recorded) <= 0.1
        assert mailer.deliver_pending(now=2e9) == 0  # sent once only
        (m,) = store.list("200")
        assert store.mail_status(m.id)[0][2] == 2e9
    finally:
        controller.stop()


def test_smtp_down_then_up_delivers_after_retry(tmp_path):
    port = _free_port()
    store = VoicemailStore(tmp_path)
    recorded = _leave_a_message(tmp_path, store, 2.0)
    (m,) = store.list("200")
    mailer = Voice2Mail(store, SmtpConfig(host="127.0.0.1", port=port), base_delay=30, timeout=2)
    t0 = m.received_at + 1
    assert mailer.deliver_pending(now=t0) == 0  # nobody listening on the port
    ((attempts, error, sent),) = store.mail_status(m.id)
    assert attempts == 1 and "cannot reach SMTP server 127.0.0.1" in error and sent is None
    assert mailer.next_due() == pytest.approx(t0 + 30)
    assert mailer.deliver_pending(now=t0 + 10) == 0  # backing off
    assert mailer.deliver_pending(now=t0 + 30) == 0  # still down: next wait doubles
    assert mailer.next_due() == pytest.approx(t0 + 30 + 60)
    controller, inbox = _smtp_server(port)
    try:
        assert mailer.deliver_pending(now=t0 + 90) == 1
        ((_, msg),) = inbox.mails
        assert abs(_attachment_duration(msg) - recorded) <= 0.1
        ((attempts, error, sent),) = store.mail_status(m.id)
        assert (attempts, error, sent) == (2, "", t0 + 90)
        assert mailer.next_due() is None
    finally:
        controller.stop()


def test_run_thread_delivers_when_woken(tmp_path):
    port = _free_port()
    controller, inbox = _smtp_server(port)
    store = VoicemailStore(tmp_path)
    mailer = Voice2Mail(store, SmtpConfig(host="127.0.0.1", port=port))
    stop = threading.Event()
    thread = threading.Thread(target=mailer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        _leave_a_message(tmp_path, store, 1.5)
        mailer.wake()
        assert inbox.received.wait(timeout=20)
    finally:
        stop.set()
        mailer.wake()
        thread.join(timeout=20)
        controller.stop()
    assert not thread.is_alive()


def test_without_smtp_host_nothing_is_sent_and_nothing_dropped(tmp_path):
    store = VoicemailStore(tmp_path)
    _leave_a_message(tmp_path, store, 1.5)
    mailer = Voice2Mail(store, SmtpConfig())
    assert mailer.deliver_pending(now=2e9) == 0
    assert len(store.due_mail(now=2e9)) == 1
