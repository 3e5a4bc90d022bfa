"""Dial by name on the keypad: the sans-IO sub-dialogue behind ``directory NAME by keys``.

The caller types the first letters of the last name (or first name, or
either: the flow's ``by first name`` / ``by either name``) on the keypad; after
three letters or ``#`` the matches are read out one by one ("Press 1 for Alice
Johnson"), with the person's recorded name when there is one and TTS
otherwise, eight to a page (9: more names, ``*``: start over).  ``0`` asks for
the operator at any point; letters that match nobody re-prompt, three times.

Like the flow machine it is told the time and returns actions
(:mod:`ivr.dsl.events`): ``start(now)``, ``handle(event, now)``,
``next_timer``; ``result`` is the :class:`~ivr.dsl.events.DirectoryResult`
once ``finished``.  What it says comes from the message catalogue of the call's language
(``directory.*`` in :mod:`ivr.language`).
"""

from __future__ import annotations

import itertools

from ivr.directory.matching import MatchBy, distinguishing_label, keypad_matches
from ivr.directory.source import DirectoryBook, Person
from ivr.dsl.events import (
    SUB_MACHINE_FIRST_PROMPT_ID,
    Action,
    DirectoryResult,
    Event,
    Hangup,
    Key,
    Listen,
    Play,
    PromptDone,
    Say,
    Speech,
    StopPrompts,
    SubMachine,
    TimerFired,
)
from ivr.language import catalogue

PAGE_SIZE = 8
LETTERS_NEEDED = 3

# Prompt ids of sub-dialogues start far above the flow machine's (the events contract) so the
# runner's PromptDone events can never be mistaken for one of the flow's prompts.
_prompt_ids = itertools.count(SUB_MACHINE_FIRST_PROMPT_ID)


class DialogueBase(SubMachine):
    """Prompt bookkeeping shared by the keypad and speech dialogues."""

    def __init__(self, *, voice: str = "", language: str = "", timeout: float = 6.0, tries: int = 3) -> None:
        self.voice = voice
        self.language = language
        self.lang = catalogue(language)
        self.timeout = timeout
        self.tries = tries
        self.next_timer: float | None = None
        self.finished = False
        self.result: Event | None = None
        self._last_prompt: int | None = None
        self._prompting = False

    def _say(self, message: str, out: list[Action], **args: object) -> None:
        """Catalogue sentence ``message`` (``args`` fill its placeholders)."""
        self._say_text(self.lang.say(message, **args), out, "" if args else message)

    def _say_text(self, text: str, out: list[Action], message: str = "") -> None:
        pid = next(_prompt_ids)
        out.append(Say(text, pid, voice=self.voice, language=self.lang.language, message=message))
        self._last_prompt = pid
        self._prompting = True

    def _play(self, path: str, out: list[Action]) -> None:
        pid = next(_prompt_ids)
        out.append(Play(path, pid))
        self._last_prompt = pid
        self._prompting = True

    def _barge_in(self, out: list[Action]) -> None:
        """A key or an utterance stops whatever is still being read out."""
        if self._prompting:
            out.append(StopPrompts())
            self._prompting = False

    def _prompt_done(self, event: PromptDone, now: float) -> bool:
        """True when the last queued prompt finished: the no-input timer starts then."""
        if event.prompt_id != self._last_prompt:
            return False
        self._prompting = False
        self.next_timer = now + self.timeout
        return True

    def _finish(self, result: DirectoryResult, out: list[Action]) -> list[Action]:
        self.finished = True
        self.result = result
        self.next_timer = None
        out.append(Listen())
        return out


def selected(person: Person) -> DirectoryResult:
    return DirectoryResult("selected", person.extension, person.display_name, person.mailbox or "")


class KeypadDialogue(DialogueBase):
    """Asterisk-style dial-by-name on the keypad (letters per ITU-T E.161)."""

    def __init__(
        self,
        book: DirectoryBook,
        *,
        match: MatchBy = "last",
        voice: str = "",
        language: str = "",
        timeout: float = 6.0,
        tries: int = 3,
        operator: bool = True,
    ) -> None:
        super().__init__(voice=voice, language=language, timeout=timeout, tries=tries)
        self.book = book
        self.match = match
        self.operator = operator
        self.state = "letters"
        self.digits = ""
        self.matches: list[Person] = []
        self.page = 0
        self.misses = 0

    # ------------------------------------------------------------------ SubMachine
    def start(self, now: float, first_digit: str = "") -> list[Action]:
        out: list[Action] = []
        if first_digit:
            return self._letter(first_digit, now, out)
        return self._ask_letters(out)

    def handle(self, event: Event, now: float) -> list[Action]:
        out: list[Action] = []
        if self.finished:
            return out
        if isinstance(event, Hangup):
            return self._finish(DirectoryResult("not_found"), out)
        if isinstance(event, PromptDone):
            self._prompt_done(event, now)
        elif isinstance(event, TimerFired) and self.next_timer is not None and now >= self.next_timer:
            self._no_input(out)
        elif isinstance(event, Key):
            self._barge_in(out)
            self._key(event.digit, now, out)
        elif isinstance(event, Speech):
            pass  # keypad only: speech is not listened for
        return out

    # ------------------------------------------------------------------ states
    def _ask_letters(self, out: list[Action]) -> list[Action]:
        self.state = "letters"
        self.digits = ""
        self.next_timer = None
        self._say(f"directory.keypad.{self.match}", out)
        out.append(Listen(timeout=self.timeout))
        return out

    def _key(self, digit: str, now: float, out: list[Action]) -> None:
        if digit == "0" and self.operator:
            self._finish(DirectoryResult("operator"), out)
        elif self.state == "letters":
            self._letter(digit, now, out)
        else:
            self._choice(digit, out)

    def _letter(self, digit: str, now: float, out: list[Action]) -> list[Action]:
        self.next_timer = now + self.timeout  # inter-digit timeout
        if digit == "*":
            return self._ask_letters(out)
        if digit in "23456789":
            self.digits += digit
        if (digit == "#" and self.digits) or len(self.digits) >= LETTERS_NEEDED:
            self._lookup(out)
        return out

    def _lookup(self, out: list[Action]) -> None:
        self.matches = keypad_matches(self.book.people, self.digits, self.match)
        if not self.matches:
            self.misses += 1
            self._say("directory.keypad_no_match", out)
            if self.misses >= self.tries:
                self._give_up(out)
            else:
                self._ask_letters(out)
            return
        self.state = "choose"
        self.page = 0
        self._read_page(out)

    def _read_page(self, out: list[Action]) -> None:
        self.next_timer = None
        page = self._page_people()
        for n, person in enumerate(page, start=1):
            self._say("directory.press_for", out, n=n)
            if person.name_recording:
                self._play(person.name_recording, out)
            else:
                self._say_text(distinguishing_label(person, self.matches, self.lang), out)
        if (self.page + 1) * PAGE_SIZE < len(self.matches):
            self._say("directory.more", out)
        self._say("directory.start_over", out)
        out.append(Listen(timeout=self.timeout))

    def _page_people(self) -> list[Person]:
        return self.matches[self.page * PAGE_SIZE : (self.page + 1) * PAGE_SIZE]

    def _choice(self, digit: str, out: list[Action]) -> None:
        page = self._page_people()
        if digit == "*":
            self._ask_letters(out)
        elif digit == "9" and (self.page + 1) * PAGE_SIZE < len(self.matches):
            self.page += 1
            self._read_page(out)
        elif digit.isdigit() and 1 <= int(digit) <= len(page):
            self._finish(selected(page[int(digit) - 1]), out)
        else:
            self._read_page(out)

    def _no_input(self, out: list[Action]) -> None:
        self.next_timer = None
        if self.state == "letters" and self.digits:
            self._lookup(out)  # the caller typed fewer than three letters and stopped: use them
            return
        self.misses += 1
        if self.misses >= self.tries:
            self._give_up(out)
        elif self.state == "choose":
            self._read_page(out)
        else:
            self._ask_letters(out)

    def _give_up(self, out: list[Action]) -> None:
        self._say("directory.goodbye", out)
        self._finish(DirectoryResult("not_found"), out)
