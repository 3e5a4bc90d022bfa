"""The mailbox owner's menu: log in with mailbox number and PIN, listen, save, delete, greetings.

States (see :mod:`ivr.voicemail.dialogue` for the table mechanics)::

    box -> pin -> checking_pin -> (wrong: box or pin again; third failure: locked -> HangupCall)
    main:     1 messages, 0 options, * exit
    message:  1 repeat, 2 save, 3 delete, 4 previous, 6 next, * main menu
    options:  1 unavailable, 2 busy, 3 temporary greeting, 4 name, 5 remove temporary, * main menu
    greeting_beep -> greeting_recording -> greeting_review: 1 keep, 2 listen, 3 again, * discard

The PIN check (scrypt) and every query of the store run off the event loop
(:meth:`~ivr.voicemail.dialogue.Dialogue.fetch`): the dialogue waits in a state
of its own (``checking_pin``, ``counting``, ``listing``, ``finding``, ``changing``)
for the answer.  Digits are collected until ``#`` or an inter-digit pause; a menu re-prompts
after a silence and says goodbye after three.  Each failed login is logged
(mailbox and caller); the third ends the call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from ivr.config import Mailbox
from ivr.dsl.events import (
    SUB_MACHINE_FIRST_PROMPT_ID,
    Action,
    HangupCall,
    RecordingDone,
    StartRecording,
    StopRecording,
)
from ivr.language import Catalogue
from ivr.voicemail.dialogue import Dialogue, log, spoken_number
from ivr.voicemail.pins import hash_pin, is_hash, verify_pin
from ivr.voicemail.store import Counts, Message, VoicemailStore

MAX_LOGIN_FAILURES = 3
MENU_TIMEOUT = 8.0
FIRST_DIGIT_TIMEOUT = 8.0
INTER_DIGIT_TIMEOUT = 4.0
MAX_DIGITS = 20  # of a mailbox number or a PIN
MAX_SILENT_TRIES = 3
GREETING_MAX_LENGTH = 60.0

GREETING_KEYS = {"1": "unavailable", "2": "busy", "3": "temporary", "4": "name"}
# the owner's menu's constant sentences (voicemail.access.* in the catalogue), for pre-rendering
CONSTANT = (
    "ask_box", "ask_pin", "locked", "wrong_login", "goodbye", "no_messages", "no_more", "saved", "deleted",
    "temp_removed", "no_temp", "heard_nothing", "greeting_saved", "discarded", "main_menu", "message_menu",
    "options_menu", "greeting_review",
)

Step = Callable[[float], list[Action]]
_DECOY: list[str] = []


def _pin_problem(box: Mailbox | None) -> str:
    """What the admin must fix when nobody can log in to ``box`` (for the failed-login log line)."""
    if box is None:
        return ""
    if not box.pin_hash:
        return ": mailbox has no PIN set (ivr mailbox set-pin)"
    if not is_hash(box.pin_hash):
        return ": its pin_hash is not a hash made by `ivr mailbox set-pin`"
    return ""


def _decoy_hash() -> str:
    if not _DECOY:
        _DECOY.append(hash_pin("80417359"))
    return _DECOY[0]


def prompt_texts(lang: Catalogue) -> list[str]:
    """Every constant text of the owner's menu in ``lang``, for pre-rendering (counts and message headers vary)."""
    texts = [lang.say(f"voicemail.access.{m}") for m in CONSTANT] + [lang.say("common.not_an_option")]
    return texts + [lang.say(f"voicemail.access.record.{kind}") for kind in GREETING_KEYS.values()]


class MailboxAccess(Dialogue):
    """The flow's ``voicemail access [BOX]``; finishes with ``ActionDone("voicemail_access", "done" | "locked")``."""

    action = "voicemail_access"

    def __init__(
        self,
        *,
        mailboxes: Sequence[Mailbox],
        store: VoicemailStore,
        mailbox: str | None,
        caller: str,
        timezone: str = "UTC",
        first_prompt_id: int = SUB_MACHINE_FIRST_PROMPT_ID,
        voice: str = "",
        language: str = "",
    ) -> None:
        super().__init__(first_prompt_id=first_prompt_id, voice=voice, language=language)
        self.mailboxes = {m.number: m for m in mailboxes}
        self.store = store
        self.fixed_box = mailbox or None
        self.caller = caller
        self.tz = ZoneInfo(timezone)
        self.box: Mailbox | None = None  # set once logged in
        self.failures = 0
        self._entered_box = ""
        self._digits = ""
        self._silent = 0
        self._queue: list[int] = []
        self._index = 0
        self._message: Message | None = None  # the one being played
        self._greeting_kind = ""
        self._greeting_tmp: Path | None = None

    # ------------------------------------------------------------------ login

    def begin(self, now: float) -> list[Action]:
        return self._ask_login(now)

    def _ask_login(self, now: float) -> list[Action]:
        if self.fixed_box is None:
            return self._collect("box", [self.say("voicemail.access.ask_box")])
        self._entered_box = self.fixed_box
        return self._collect("pin", [self.say("voicemail.access.ask_pin")])

    def _collect(self, state: str, prompts: list[Action]) -> list[Action]:
        self._digits = ""
        return self.enter(state, prompts)

    def _done_box(self, now: float) -> list[Action]:
        self.next_timer = now + FIRST_DIGIT_TIMEOUT
        return []

    _done_pin = _done_box

    def _key_box(self, digit: str, now: float) -> list[Action]:
        return self._collect_key(digit, now, self._got_box)

    def _key_pin(self, digit: str, now: float) -> list[Action]:
        return self._collect_key(digit, now, self._got_pin)

    def _collect_key(self, digit: str, now: float, submit: Step) -> list[Action]:
        return self.collect_digit(digit, now, submit, limit=MAX_DIGITS, pause=INTER_DIGIT_TIMEOUT)

    def _timeout_box(self, now: float) -> list[Action]:
        return self._got_box(now) if self._digits else self._silence(now, self._ask_login)

    def _timeout_pin(self, now: float) -> list[Action]:
        return self._got_pin(now) if self._digits else self._silence(now, self._ask_login)

    def _got_box(self, now: float) -> list[Action]:
        self._entered_box = self._digits
        self._silent = 0
        return self._collect("pin", [self.say("voicemail.access.ask_pin")])

    def _got_pin(self, now: float) -> list[Action]:
        self._silent = 0
        box = self.mailboxes.get(self._entered_box)
        # An unknown box costs one scrypt too, so timing does not tell which mailboxes exist.
        stored = box.pin_hash if box is not None and box.pin_hash else ""
        digits = self._digits
        return self.fetch(
            "checking_pin", lambda: verify_pin(digits, stored or _decoy_hash()), lambda ok, now: self._pin_checked(box, ok, now)
        )

    def _pin_checked(self, box: Mailbox | None, matched: bool, now: float) -> list[Action]:
        if matched and box is not None and box.pin_hash:
            self.box = box
            log.info("voicemail: %s logged in to mailbox %s", self.caller, box.number)
            return self._welcome()
        self.failures += 1
        log.warning(
            "voicemail: failed login to mailbox %s from %s (%d of %d)%s",
            self._entered_box or "?",
            self.caller,
            self.failures,
            MAX_LOGIN_FAILURES,
            _pin_problem(box),
        )
        if self.failures >= MAX_LOGIN_FAILURES:
            log.error(
                "voicemail: mailbox %s locked out for %s after %d failed logins",
                self._entered_box or "?",
                self.caller,
                self.failures,
            )
            return self.enter("locked", [self.say("voicemail.access.locked")], barge_in=False)
        # The re-prompt queued after this one is what the next state waits for.
        wrong = self.say("voicemail.access.wrong_login")
        return [wrong, *self._ask_login(now)]

    def _done_locked(self, now: float) -> list[Action]:
        self.finish("locked")
        return [HangupCall("voicemail_locked")]

    # ------------------------------------------------------------------ main menu

    def _welcome(self) -> list[Action]:
        assert self.box is not None
        box = self.box.number
        return self.fetch("counting", lambda: self.store.counts(box), self._summary)

    def _summary(self, counts: Counts, now: float) -> list[Action]:
        new, saved = counts
        lang = self.lang
        new_text = lang.say("voicemail.access.new_messages", count=new)
        saved_text = lang.say("voicemail.access.saved_messages", count=saved)
        return self._main_menu([self.say("voicemail.access.summary", new=new_text, saved=saved_text)])

    def _main_menu(self, before: list[Action] | None = None) -> list[Action]:
        return self.enter("main", [*(before or []), self.say("voicemail.access.main_menu")])

    def _done_main(self, now: float) -> list[Action]:
        self.next_timer = now + MENU_TIMEOUT
        return []

    _done_message = _done_options = _done_greeting_review = _done_main

    def _timeout_main(self, now: float) -> list[Action]:
        return self._silence(now, lambda now: self._main_menu())

    def _key_main(self, digit: str, now: float) -> list[Action]:
        self._silent = 0
        if digit == "1":
            return self._start_listening()
        if digit == "0":
            return self._options_menu()
        if digit in "*#":
            return self._goodbye()
        return self._main_menu([self.say("common.not_an_option")])

    def _silence(self, now: float, again: Step) -> list[Action]:
        self._silent += 1
        if self._silent >= MAX_SILENT_TRIES:
            return self._goodbye()
        return again(now)

    def _goodbye(self) -> list[Action]:
        return self.enter("goodbye", [self.say("voicemail.access.goodbye")], barge_in=False)

    def _done_goodbye(self, now: float) -> list[Action]:
        return self.finish("done")

    # ------------------------------------------------------------------ messages

    def _start_listening(self) -> list[Action]:
        assert self.box is not None
        box = self.box.number
        return self.fetch("listing", lambda: self.store.list(box), self._listen_to)

    def _listen_to(self, messages: list[Message], now: float) -> list[Action]:
        self._queue = [m.id for m in messages]
        self._index = 0
        if not self._queue:
            return self._main_menu([self.say("voicemail.access.no_messages")])
        return self._play_current()

    def _find(self, queue: list[int], index: int) -> tuple[int, Message | None, str]:
        """In a storage worker: the first message of ``queue`` from ``index`` still there (another call or
        the CLI may have deleted some meanwhile), with its index and Play path."""
        while 0 <= index < len(queue):
            msg = self.store.get(queue[index])
            if msg is not None:
                return index, msg, self.store.data_ref(msg.path)
            index += 1
        return index, None, ""

    def _play_current(self, before: list[Action] | None = None) -> list[Action]:
        queue, index = list(self._queue), self._index
        return self.fetch("finding", lambda: self._find(queue, index), lambda found, now: self._present(found, before))

    def _present(self, found: tuple[int, Message | None, str], before: list[Action] | None) -> list[Action]:
        self._index, msg, path = found
        self._message = msg
        if msg is None:
            return self._main_menu([*(before or []), self.say("voicemail.access.no_more")])
        header = self.say(
            f"voicemail.access.header.{'new' if msg.status == 'new' else 'saved'}",
            index=self._index + 1,
            total=len(self._queue),
            received=datetime.fromtimestamp(msg.received_at, self.tz),
            caller=spoken_number(msg.caller, self.lang),
        )
        prompts = [
            *(before or []),
            header,
            self.play(path),
            self.say("voicemail.access.message_menu"),
        ]
        return self.enter("message", prompts)

    def _key_message(self, digit: str, now: float) -> list[Action]:
        self._silent = 0
        msg = self._message
        if digit == "1":
            return self._play_current()
        if digit == "2" and msg is not None:
            self._index += 1
            return self._change(lambda: self.store.mark_saved(msg.id), "voicemail.access.saved")
        if digit == "3" and msg is not None:
            self._queue.pop(self._index)
            return self._change(lambda: self.store.delete(msg.id), "voicemail.access.deleted")
        if digit == "4":
            self._index = max(0, self._index - 1)
            return self._play_current()
        if digit in "6#":
            self._index += 1
            return self._play_current()
        if digit == "*":
            return self._welcome()
        return self.enter("message", [self.say("common.not_an_option"), self.say("voicemail.access.message_menu")])

    def _change(self, work: Callable[[], object], said: str) -> list[Action]:
        """Save or delete the message off the loop, then say ``said`` and play the next one."""
        return self.fetch("changing", work, lambda _, now: self._play_current([self.say(said)]))

    def _timeout_message(self, now: float) -> list[Action]:
        return self._silence(now, lambda now: self.enter("message", [self.say("voicemail.access.message_menu")]))

    # ------------------------------------------------------------------ options and greetings

    def _options_menu(self, before: list[Action] | None = None) -> list[Action]:
        return self.enter("options", [*(before or []), self.say("voicemail.access.options_menu")])

    def _timeout_options(self, now: float) -> list[Action]:
        return self._silence(now, lambda now: self._options_menu())

    def _key_options(self, digit: str, now: float) -> list[Action]:
        assert self.box is not None
        self._silent = 0
        if digit in GREETING_KEYS:
            self._greeting_kind = GREETING_KEYS[digit]
            return self.enter("greeting_intro", [self.say(f"voicemail.access.record.{self._greeting_kind}")])
        if digit == "5":
            return self._remove_temporary()
        if digit in "*#":
            return self._main_menu()
        return self._options_menu([self.say("common.not_an_option")])

    def _remove_temporary(self) -> list[Action]:
        assert self.box is not None
        box = self.box.number
        return self.fetch("changing", lambda: self.store.remove_greeting(box, "temporary"), self._temporary_removed)

    def _temporary_removed(self, existed: bool, now: float) -> list[Action]:
        text = "voicemail.access.temp_removed" if existed else "voicemail.access.no_temp"
        return self._options_menu([self.say(text)])

    def _done_greeting_intro(self, now: float) -> list[Action]:
        return self.enter("greeting_beep", [self.beep()], barge_in=False)

    def _key_greeting_intro(self, digit: str, now: float) -> list[Action]:
        return self._done_greeting_intro(now)

    def _done_greeting_beep(self, now: float) -> list[Action]:
        assert self.box is not None
        self._greeting_tmp = self.store.greeting_draft(self.box.number, self._greeting_kind)
        self.state = "greeting_recording"
        return [
            StartRecording(
                path=str(self._greeting_tmp),
                max_length=GREETING_MAX_LENGTH,
                silence=3.0,
                min_length=0.5,
            )
        ]

    def _recorded_greeting_recording(self, event: RecordingDone, now: float) -> list[Action]:
        if event.duration <= 0:
            return self._options_menu([self.say("voicemail.access.heard_nothing")])
        return self.enter("greeting_review", [self.say("voicemail.access.greeting_review")])

    def _key_greeting_review(self, digit: str, now: float) -> list[Action]:
        assert self.box is not None and self._greeting_tmp is not None
        self._silent = 0
        if digit == "1":
            return self._keep_greeting()
        if digit == "2":
            return self.enter(
                "greeting_listen", [self.play(self.store.data_ref(self._greeting_tmp))]
            )
        if digit == "3":
            return self._done_greeting_intro(now)
        if digit == "*":
            self._greeting_tmp.unlink(missing_ok=True)
            return self._options_menu([self.say("voicemail.access.discarded")])
        return self.enter(
            "greeting_review",
            [self.say("common.not_an_option"), self.say("voicemail.access.greeting_review")],
        )

    def _keep_greeting(self) -> list[Action]:
        """Move the draft into place off the loop (into the shared folder, on a cluster)."""
        assert self.box is not None and self._greeting_tmp is not None
        box, kind, draft = self.box.number, self._greeting_kind, self._greeting_tmp
        return self.fetch("changing", lambda: self.store.keep_greeting(box, kind, draft), self._greeting_kept)

    def _greeting_kept(self, _: None, now: float) -> list[Action]:
        assert self.box is not None
        log.info("voicemail: mailbox %s recorded its %s greeting", self.box.number, self._greeting_kind)
        return self._options_menu([self.say("voicemail.access.greeting_saved")])

    def _timeout_greeting_review(self, now: float) -> list[Action]:
        return self._silence(
            now, lambda now: self.enter("greeting_review", [self.say("voicemail.access.greeting_review")])
        )

    def _done_greeting_listen(self, now: float) -> list[Action]:
        return self.enter("greeting_review", [self.say("voicemail.access.greeting_review")])

    _key_greeting_listen = _key_greeting_review

    # ------------------------------------------------------------------ hang-up

    def on_hangup(self, now: float) -> list[Action]:
        recording = self.state == "greeting_recording"
        if self._greeting_tmp is not None and self.state.startswith("greeting"):
            self._greeting_tmp.unlink(missing_ok=True)  # an unconfirmed greeting is not kept
        self.finish("locked" if self.state == "locked" else "done")
        return [StopRecording()] if recording else []
