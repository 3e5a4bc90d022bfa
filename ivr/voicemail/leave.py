"""Leaving a message: greeting, beep, record, optional review, store.

States (see :mod:`ivr.voicemail.dialogue` for the table mechanics)::

    opening (the box's count and recorded greetings, off the loop) --> greeting | full
    greeting --done/key--> beep --done--> recording --RecordingDone--> review | storing
    review: 1 keep, 2 listen, 3 record again; no answer after 3 tries keeps it
    storing (off the loop) --> saved --done--> finished "saved";   nothing recorded twice --> finished "empty"
    mailbox full --> full --done--> finished "full"

A message is never lost to a hang-up: hanging up during the recording stops
it and stores what was recorded (if the runner's ``RecordingDone`` does not
come, the file itself is measured); hanging up during review keeps it.  After
a hang-up the dialogue finishes at once and the store call goes on without it:
:meth:`LeaveMessage._store` logs the message and wakes Voice2Mail itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

import soundfile

from ivr.config import Mailbox
from ivr.dsl.events import (
    SUB_MACHINE_FIRST_PROMPT_ID,
    Action,
    RecordingDone,
    StartRecording,
    StopRecording,
    StorageWork,
)
from ivr.language import Catalogue
from ivr.media.recording import needs_repair, repair_wav
from ivr.voicemail.dialogue import Dialogue, log
from ivr.voicemail.store import MailboxFull, Message, VoicemailStore

HANGUP_GRACE = 3.0  # seconds to wait for RecordingDone after the caller hung up mid-recording
REVIEW_TIMEOUT = 6.0
REVIEW_TRIES = 3
RECORD_TRIES = 2

GREETINGS = ("unavailable", "busy", "temporary")  # the kinds of absence a greeting can say


def owner_name(mailbox: Mailbox, lang: Catalogue) -> str:
    return mailbox.owner or lang.say("voicemail.leave.extension", number=mailbox.number)


def _kind(greeting: str) -> str:
    return greeting if greeting in GREETINGS else "unavailable"


def prompt_texts(mailboxes: Sequence[Mailbox], lang: Catalogue) -> list[str]:
    """Every text a caller leaving a message can hear in ``lang``, for pre-rendering."""
    texts = [lang.say(f"voicemail.leave.{m}") for m in ("nothing_heard", "nothing_recorded", "saved_goodbye", "review_menu")]
    texts.append(lang.say("common.not_an_option"))
    texts += [lang.say(f"voicemail.leave.after_name.{kind}") for kind in GREETINGS]
    for box in mailboxes:
        owner = owner_name(box, lang)
        texts += [lang.say(f"voicemail.leave.greeting.{kind}", owner=owner) for kind in GREETINGS]
        texts.append(lang.say("voicemail.leave.full", owner=owner))
    return texts


class LeaveMessage(Dialogue):
    """The caller's side of voicemail (the flow's ``voicemail BOX [busy|temporary] [review]``).

    Finishes with ``ActionDone("voicemail", "saved" | "empty" | "full")``.
    """

    action = "voicemail"

    def __init__(
        self,
        *,
        mailbox: Mailbox,
        store: VoicemailStore,
        caller: str,
        greeting: str = "unavailable",
        temporary_first: bool = True,
        review: bool = False,
        data_dir: Path,
        silence: float | None = None,
        min_length: float | None = None,
        end_key: str = "#",
        on_saved: Callable[[Message], None] | None = None,
        first_prompt_id: int = SUB_MACHINE_FIRST_PROMPT_ID,
        voice: str = "",
        language: str = "",
    ) -> None:
        super().__init__(first_prompt_id=first_prompt_id, voice=voice, language=language)
        self.mailbox = mailbox
        self.store = store
        self.caller = caller
        self.greeting = greeting
        self.temporary_first = temporary_first
        self.review = review
        self.data_dir = Path(data_dir)
        self.silence = (
            mailbox.silence if silence is None else silence
        )  # None: the mailbox's setting
        self.min_length = mailbox.min_length if min_length is None else min_length
        self.end_key = end_key
        self.on_saved = on_saved
        self.message: Message | None = None
        self._recording: Path | None = None
        self._duration = 0.0
        self._started_at = 0.0
        self._tries = 0
        self._review_tries = 0
        self._recorded: dict[str, str] = {}  # greetings recorded by phone: kind -> Play path

    # ------------------------------------------------------------------ start and greeting

    def begin(self, now: float) -> list[Action]:
        return self.fetch("opening", self._look_up, self._opened)

    def _look_up(self) -> tuple[int, dict[str, str]]:
        """In a storage worker: how many messages the box holds, and its greetings recorded by phone."""
        box, store = self.mailbox.number, self.store
        counts = store.counts(box)
        recorded = {k: store.data_ref(store.greeting_path(box, k)) for k in (*GREETINGS, "name") if store.has_greeting(box, k)}
        return counts.new + counts.saved, recorded

    def _opened(self, found: tuple[int, dict[str, str]], now: float) -> list[Action]:
        count, self._recorded = found
        if count >= self.mailbox.max_messages:
            log.warning(
                "voicemail: mailbox %s is full, message from %s refused",
                self.mailbox.number,
                self.caller,
            )
            return self.enter("full", [self.say("voicemail.leave.full", owner=self._owner())])
        return self.enter("greeting", self._greeting_prompts())

    def _greeting_prompts(self) -> list[Action]:
        """The greeting, first found of: the temporary one (unless the flow says ``no temporary``),
        the step's kind (unavailable or busy), the owner's recorded name then TTS, TTS alone
        (docs/voicemail.md, "Which greeting plays")."""
        kinds = ("temporary", self.greeting) if self.temporary_first else (self.greeting,)
        for kind in kinds:
            path = self._greeting(kind) if kind in GREETINGS else None
            if path is not None:
                return [self.play(path)]
        name = self._greeting("name")
        if name is not None:
            return [self.play(name), self.say(f"voicemail.leave.after_name.{_kind(self.greeting)}")]
        return [self.say(f"voicemail.leave.greeting.{_kind(self.greeting)}", owner=self._owner())]

    def _greeting(self, kind: str) -> str | None:
        """The ``Play`` path of a greeting: recorded by phone (data folder), else from ivr.toml."""
        return self._recorded.get(kind) or self.mailbox.greeting(kind)

    def _owner(self) -> str:
        return owner_name(self.mailbox, self.lang)

    def _done_full(self, now: float) -> list[Action]:
        return self.finish("full")

    def _done_greeting(self, now: float) -> list[Action]:
        return self._beep()

    def _key_greeting(self, digit: str, now: float) -> list[Action]:
        return self._beep()  # any key skips the greeting

    # ------------------------------------------------------------------ beep and recording

    def _beep(self) -> list[Action]:
        return self.enter("beep", [self.beep()], barge_in=False)

    def _done_beep(self, now: float) -> list[Action]:
        self._tries += 1
        self._recording = self.store.incoming_path(self.mailbox.number, self.caller, now)
        self._started_at = now
        self.state = "recording"
        return [
            StartRecording(
                path=str(self._recording),
                max_length=self.mailbox.max_length,
                end_key=self.end_key,
                silence=self.silence,
                min_length=self.min_length,
            )
        ]

    def _recorded_recording(self, event: RecordingDone, now: float) -> list[Action]:
        self._duration = event.duration
        if event.duration <= 0:
            return self._nothing_recorded(event.reason)
        if (
            event.reason == "hangup"
        ):  # the runner stopped it because the caller left: keep it, no goodbye
            return self._save(now, goodbye=False)
        if self.review:
            return self._review_menu()
        return self._save(now, goodbye=True)

    def _nothing_recorded(self, reason: str) -> list[Action]:
        if reason == "hangup":
            return self.finish("empty")
        if self._tries < RECORD_TRIES:
            return self.enter("retry", [self.say("voicemail.leave.nothing_heard")])
        return self.enter("empty_bye", [self.say("voicemail.leave.nothing_recorded")])

    def _done_retry(self, now: float) -> list[Action]:
        return self._beep()

    def _done_empty_bye(self, now: float) -> list[Action]:
        return self.finish("empty")

    # ------------------------------------------------------------------ review

    def _review_menu(self) -> list[Action]:
        return self.enter("review", [self.say("voicemail.leave.review_menu")])

    def _done_review(self, now: float) -> list[Action]:
        self.next_timer = now + REVIEW_TIMEOUT
        return []

    def _key_review(self, digit: str, now: float) -> list[Action]:
        self._review_tries = 0
        if digit == "1":
            return self._save(now, goodbye=True)
        if digit == "2" and self._recording is not None:
            return self.enter("listening", [self.play(self.store.data_ref(self._recording))])
        if digit == "3":
            self._discard()
            self._tries = 0
            return self._beep()
        return self.enter("review", [self.say("common.not_an_option"), *self._review_menu()])

    def _timeout_review(self, now: float) -> list[Action]:
        self._review_tries += 1
        if self._review_tries >= REVIEW_TRIES:
            return self._save(now, goodbye=True)  # an undecided caller still keeps the message
        return self._review_menu()

    def _done_listening(self, now: float) -> list[Action]:
        return self._review_menu()

    def _key_listening(self, digit: str, now: float) -> list[Action]:
        return self._key_review(digit, now)

    # ------------------------------------------------------------------ saving

    def _save(self, now: float, *, goodbye: bool) -> list[Action]:
        """Store the recording off the loop; without a goodbye (the caller has gone) finish at once."""
        if not goodbye:
            work = StorageWork(f"{self.action}.storing", self._store)
            return [work, *self.finish("saved")]
        return self.fetch("storing", self._store, self._stored, self._store_failed)

    def _store(self) -> Message | None:
        """In a storage worker: move the recording into the box and index it; log it, wake Voice2Mail."""
        assert self._recording is not None
        try:
            message = self.store.add(
                self.mailbox.number,
                caller=self.caller,
                duration=self._duration,
                source=self._recording,
                received_at=self._started_at,
                notify=self.mailbox.emails,
                max_messages=self.mailbox.max_messages,
            )
        except MailboxFull:
            # Full between the greeting and now (another caller): keep the recording in
            # incoming/, where start-up recovery indexes it, rather than lose it.
            log.warning(
                "voicemail: mailbox %s filled up during a call; message kept in incoming/",
                self.mailbox.number,
            )
            return None
        log.info(
            "voicemail: message %d stored in mailbox %s from %s (%.1f s)",
            message.id,
            self.mailbox.number,
            self.caller,
            self._duration,
        )
        if self.on_saved is not None:
            self.on_saved(message)
        return message

    def _stored(self, message: Message | None, now: float) -> list[Action]:
        self.message = message
        return self.enter("saved", [self.say("voicemail.leave.saved_goodbye")], barge_in=False)

    def _store_failed(self, error: str, now: float) -> list[Action]:
        """The index did not answer: the recording stays on disk (start-up recovery indexes it)."""
        log.error("voicemail: message for mailbox %s not indexed (%s); its recording is kept", self.mailbox.number, error)
        return self._stored(None, now)

    def _done_saved(self, now: float) -> list[Action]:
        return self.finish("saved")

    def _discard(self) -> None:
        if self._recording is not None:
            self._recording.unlink(missing_ok=True)
        self._recording, self._duration = None, 0.0

    # ------------------------------------------------------------------ hang-up

    def on_hangup(self, now: float) -> list[Action]:
        if self.state == "recording":
            self.state = "recording_after_hangup"
            self.next_timer = now + HANGUP_GRACE
            return [StopRecording()]
        if self.state in ("review", "listening"):
            return self._save(now, goodbye=False)
        if self.state in ("storing", "saved"):
            return self.finish("saved")  # the store call goes on without the dialogue
        if self.state == "recording_after_hangup":
            return []
        return self.finish("empty")

    def _recorded_recording_after_hangup(self, event: RecordingDone, now: float) -> list[Action]:
        self._duration = event.duration
        if event.duration <= 0:
            return self.finish("empty")
        return self._save(now, goodbye=False)

    def _timeout_recording_after_hangup(self, now: float) -> list[Action]:
        """The runner never reported the recording: measure the file ourselves."""
        path = self._recording
        duration = 0.0
        if path is not None and path.is_file():
            with contextlib.suppress(OSError, RuntimeError):
                duration = (
                    repair_wav(path) if needs_repair(path) else soundfile.info(str(path)).duration
                )
        if duration < self.min_length:
            self._discard()
            return self.finish("empty")
        self._duration = duration
        return self._save(now, goodbye=False)
