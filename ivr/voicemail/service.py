"""What ``ivr serve`` runs for voicemail besides the dialogues: crash recovery and Voice2Mail.

:class:`VoicemailService` is the one object the server needs: ``start()`` at
start-up (after :func:`~ivr.media.recording.repair_all`) indexes messages a
crash cut short and starts the mail thread when ``[smtp]`` names a host;
``message_saved`` (give it to :class:`~ivr.voicemail.leave.LeaveMessage` as
``on_saved``) wakes the thread so a new message is mailed at once; ``stop()``
on shutdown.  The queue lives in SQLite, so stopping never loses an e-mail.
"""

from __future__ import annotations

import logging
import threading

from ivr.config import Config
from ivr.voicemail.mailer import Voice2Mail
from ivr.voicemail.store import Message, VoicemailStore

log = logging.getLogger("ivr.voicemail")


class VoicemailService:
    def __init__(
        self, config: Config, store: VoicemailStore | None = None, *, timezone: str = "UTC"
    ) -> None:
        self.config = config
        self.store = store or VoicemailStore(config.data)
        self.mailer = Voice2Mail(
            self.store, config.smtp, mailboxes=config.mailboxes, timezone=timezone
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> list[Message]:
        """Recover what a crash left, start mailing; returns the recovered messages."""
        notify = {m.number: m.emails for m in self.config.mailboxes}
        recovered = self.store.recover(notify)
        for m in recovered:
            log.warning(
                "voicemail: recovered message %d in mailbox %s (%.1f s) after a crash",
                m.id,
                m.mailbox,
                m.duration,
            )
        if self.mailer.configured and self._thread is None:
            self._thread = threading.Thread(
                target=self.mailer.run, args=(self._stop,), name="voice2mail", daemon=True
            )
            self._thread.start()
        return recovered

    def message_saved(self, message: Message) -> None:
        self.mailer.wake()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.mailer.wake()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
