"""Voice2Mail: every new message e-mailed to its mailbox's addresses, with the WAV attached.

The queue is the ``outbox`` table of the voicemail index, filled in the same
transaction that stores a message (:meth:`VoicemailStore.add` with
``notify``), so a message can never be stored without its e-mail being due.
:meth:`Voice2Mail.deliver_pending` sends what is due through the ``[smtp]``
server of the deployment file (RFC 5321 via smtplib, STARTTLS and AUTH when
configured); a failure leaves the item queued with an exponential backoff
(30 s, 1 min, 2 min ... capped at an hour) and the error recorded.  Nothing is
ever dropped: an item stays until a server accepted it.

The server runs :meth:`Voice2Mail.run` in a thread (or calls
``deliver_pending`` from a periodic task); :meth:`Voice2Mail.wake` makes it
send at once after a new message.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from zoneinfo import ZoneInfo

from ivr.config import Mailbox, SmtpConfig
from ivr.voicemail.store import OutboxItem, VoicemailStore

log = logging.getLogger("ivr.voicemail.mail")

BASE_DELAY = 30.0
MAX_DELAY = 3600.0
IDLE_POLL = 10.0  # also how soon a message is mailed when nobody calls wake()


class Voice2Mail:
    """Delivers the voicemail outbox over SMTP with retries; thread-safe."""

    def __init__(
        self,
        store: VoicemailStore,
        smtp: SmtpConfig,
        *,
        mailboxes: Sequence[Mailbox] = (),
        timezone: str = "UTC",
        base_delay: float = BASE_DELAY,
        max_delay: float = MAX_DELAY,
        timeout: float = 10.0,
    ) -> None:
        self.store = store
        self.smtp = smtp
        self.owners: dict[str, str] = {}
        self.tz = ZoneInfo("UTC")
        self.describe(mailboxes, timezone)
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.timeout = timeout
        self._lock = threading.Lock()
        self._wake = threading.Event()

    def describe(self, mailboxes: Sequence[Mailbox], timezone: str) -> None:
        """Name the owners of ``mailboxes`` and date mails in ``timezone`` (a reload calls this again).

        Raises ``ValueError``/``LookupError`` for an unknown zone, keeping the owners set.
        """
        self.owners = {m.number: m.owner for m in mailboxes}
        self.tz = ZoneInfo(timezone)

    @property
    def configured(self) -> bool:
        return bool(self.smtp.host)

    def deliver_pending(self, now: float) -> int:
        """Send every due e-mail; returns how many were accepted by the server."""
        if not self.configured:
            return 0
        with self._lock:
            due = self.store.due_mail(now)
            if not due:
                return 0
            try:
                client = self._connect()
            except (OSError, smtplib.SMTPException) as exc:
                for item in due:
                    self._failed(
                        item,
                        f"cannot reach SMTP server {self.smtp.host}:{self.smtp.port}: {exc}",
                        now,
                    )
                return 0
            try:
                return sum(self._send(client, item, now) for item in due)
            finally:
                try:
                    client.quit()
                except (OSError, smtplib.SMTPException):
                    client.close()

    def next_due(self) -> float | None:
        """When the next queued e-mail is due (None: nothing queued)."""
        return self.store.next_mail_due() if self.configured else None

    def wake(self) -> None:
        """A new message was stored: deliver without waiting for the next poll."""
        self._wake.set()

    def run(self, stop: threading.Event, *, clock: Callable[[], float] = time.time) -> None:
        """Deliver until ``stop`` is set (the server's mail thread)."""
        while not stop.is_set():
            try:
                self.deliver_pending(clock())
            except Exception:  # keep the thread alive whatever one round does; the queue is intact
                log.exception("voice2mail: delivery round failed")
            due = self.next_due()
            wait = IDLE_POLL if due is None else min(IDLE_POLL, max(0.0, due - clock()))
            self._wake.wait(wait)
            self._wake.clear()

    def build(self, item: OutboxItem) -> EmailMessage:
        """The e-mail for one queued message: text summary plus the WAV."""
        m = item.message
        when = datetime.fromtimestamp(m.received_at, self.tz)
        owner = self.owners.get(m.mailbox, "")
        # Header values must not carry CR/LF or unencodable characters (a raising build would
        # hold up every e-mail queued behind this one); callers arrive cleaned, old rows may not.
        caller = "".join(c if c.isprintable() else "\ufffd" for c in m.caller) or "unknown caller"
        mail = EmailMessage()
        mail["From"] = self.smtp.sender
        mail["To"] = ", ".join(item.recipients)
        mail["Subject"] = f"New voicemail from {caller} ({m.duration:.0f} s) in mailbox {m.mailbox}"
        mail["Date"] = format_datetime(datetime.fromtimestamp(m.received_at).astimezone())
        mail["Message-ID"] = make_msgid(idstring=f"vm{m.id}")
        mail["X-Ivr-Mailbox"] = m.mailbox
        mail["X-Ivr-Caller"] = caller
        mail["X-Ivr-Duration"] = f"{m.duration:.2f}"
        mailbox = f"{m.mailbox} ({owner})" if owner else m.mailbox
        mail.set_content(
            f"A new voicemail message was left.\n\n"
            f"Mailbox:  {mailbox}\n"
            f"Caller:   {caller}\n"
            f"Received: {when:%A %d %B %Y, %H:%M:%S %Z}\n"
            f"Duration: {m.duration:.1f} s\n"
        )
        try:
            audio = m.path.read_bytes()
        except OSError as exc:
            mail.set_content(
                mail.get_content() + f"\nThe recording could not be attached: {exc.strerror}.\n"
            )
        else:
            name = f"voicemail-{m.mailbox}-{when:%Y%m%d-%H%M%S}.wav"
            mail.add_attachment(audio, maintype="audio", subtype="wav", filename=name)
        return mail

    def _connect(self) -> smtplib.SMTP:
        client = smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.timeout)
        try:
            if self.smtp.starttls:
                client.starttls(context=ssl.create_default_context())
            if self.smtp.username:
                client.login(self.smtp.username, self.smtp.password)
        except (OSError, smtplib.SMTPException):
            client.close()
            raise
        return client

    def _send(self, client: smtplib.SMTP, item: OutboxItem, now: float) -> int:
        try:
            refused = client.send_message(self.build(item))
        except (OSError, smtplib.SMTPException) as exc:
            self._failed(item, f"{type(exc).__name__}: {exc}", now)
            return 0
        if refused:
            log.warning(
                "voice2mail: message %d: some recipients refused: %s", item.message.id, refused
            )
        self.store.mail_sent(item.id, now)
        log.info(
            "voice2mail: message %d of mailbox %s sent to %s",
            item.message.id,
            item.message.mailbox,
            ", ".join(item.recipients),
        )
        return 1

    def _failed(self, item: OutboxItem, error: str, now: float) -> None:
        delay = min(self.base_delay * 2**item.attempts, self.max_delay)
        self.store.mail_failed(item.id, error, now + delay)
        log.warning(
            "voice2mail: message %d of mailbox %s not sent (attempt %d, next in %.0f s): %s",
            item.message.id,
            item.message.mailbox,
            item.attempts + 1,
            delay,
            error,
        )
