"""Dial by name by speech, with keypad fallback: the sans-IO sub-dialogue behind ``directory NAME``.

The caller is asked for a name; the runner recognizes it against the
directory's phrases (``Listen(phrases=...)``) and sends back ``Speech(text)``
with a whole phrase, or ``""`` for no match.  :class:`~ivr.directory.matching.PhraseIndex`
maps the phrase back to people; namesakes are told apart by department (said
or keyed) or extension; the match is confirmed ("Did you say Alice Johnson?
Say yes or press 1") unless the flow says ``no confirm``.  When the recognizer heard two
people (``Speech.alternatives``: the combined engine's models disagreed), the caller is
asked which one ("Did you mean Alice Johnson or Alicia Jensen?"), by name or with 1 or 2,
and the one picked is selected.  Two misses (no
match, no input, or a "no" at the confirmation) hand over to the keypad
directory when the flow allows keys; a digit 2-9 does so at once, starting
the keypad search with that letter; 0 asks for the operator.

Two hand-overs make "say the name, or press 9 for the keypad" work: the flow's
``press 9 for keypad`` names a key that switches to the keypad directory
without spelling a letter (and the first question says so), and a name the
caller already said at the menu that led here (``heard``) is looked up at once
instead of being asked for again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ivr.directory.keypad import DialogueBase, KeypadDialogue, selected
from ivr.directory.matching import MatchBy, PhraseIndex, distinguishing_label
from ivr.directory.source import DirectoryBook, Person, normalize_phrase
from ivr.dsl.events import (
    Action,
    DirectoryResult,
    Event,
    Hangup,
    Key,
    Listen,
    PromptDone,
    Speech,
    TimerFired,
)

if TYPE_CHECKING:
    from ivr.media.recognizer import Recognizer

SPEECH_MISSES = 2
KEY_NAMES = {"*": "star", "#": "pound"}  # the catalogue's keys.* id of a key read out as a word
# A recognizer answer can take up to the endpointer's max utterance after the prompt ends;
# our own timer is only the safety net for a runner that never answers.
SPEECH_GRACE = 10.0


class DirectoryDialogue(DialogueBase):
    """``directory NAME [by speech] [by keys] [by first|last|either name] [no confirm]``."""

    def __init__(
        self,
        book: DirectoryBook,
        *,
        by_speech: bool = True,
        by_keys: bool = True,
        match: MatchBy = "last",
        confirm: bool = True,
        voice: str = "",
        language: str = "",
        timeout: float = 6.0,
        tries: int = 3,
        keypad_key: str = "",
        heard: str = "",
    ) -> None:
        if not (by_speech or by_keys):
            raise ValueError("a directory needs speech, keys or both")
        super().__init__(voice=voice, language=language, timeout=timeout, tries=tries)
        self.book = book
        self.by_speech = by_speech
        self.by_keys = by_keys
        self.match = match
        self.confirm = confirm
        self.yes = tuple(normalize_phrase(p) for p in self.lang.phrases("speech.yes"))
        self.no = tuple(normalize_phrase(p) for p in self.lang.phrases("speech.no"))
        self.index = PhraseIndex.build(book)
        self.state = "name"
        self.misses = 0
        self.candidates: tuple[Person, ...] = ()
        self.chosen: Person | None = None
        self.keypad: KeypadDialogue | None = None
        self.keypad_key = keypad_key if by_keys else ""
        self.heard = heard

    # ------------------------------------------------------------------ SubMachine
    def start(self, now: float) -> list[Action]:
        if not self.by_speech or not self.index.phrases:
            return self._to_keypad(now, "")
        if self.index.lookup(self.heard):
            return self._speech(self.heard, now, [])  # said at the menu: not asked again
        if not self.keypad_key:
            return self._ask_name("directory.say_name", [])
        key = self.lang.say(f"keys.{KEY_NAMES.get(self.keypad_key, 'digit')}", key=self.keypad_key)
        return self._ask_name("directory.say_name_or_keypad", [], key=key)

    def handle(self, event: Event, now: float) -> list[Action]:
        if self.finished:
            return []
        if self.keypad is not None:
            return self._delegate(event, now)
        out: list[Action] = []
        if isinstance(event, Hangup):
            return self._finish(DirectoryResult("not_found"), out)
        if isinstance(event, PromptDone):
            if self._prompt_done(event, now):
                self.next_timer = now + self.timeout + SPEECH_GRACE
        elif isinstance(event, TimerFired) and self.next_timer is not None and now >= self.next_timer:
            return self._miss(now, out)
        elif isinstance(event, Key):
            self._barge_in(out)
            return self._key(event.digit, now, out)
        elif isinstance(event, Speech):
            self._barge_in(out)
            return self._speech(event.text, now, out, event.alternatives)
        return out

    def _delegate(self, event: Event, now: float) -> list[Action]:
        assert self.keypad is not None
        out = self.keypad.handle(event, now)
        self._follow_keypad()
        return out

    def _follow_keypad(self) -> None:
        assert self.keypad is not None
        self.next_timer = self.keypad.next_timer
        if self.keypad.finished:
            self.finished = True
            self.result = self.keypad.result
            self.next_timer = None

    # ------------------------------------------------------------------ states
    def _listen_phrases(self) -> tuple[str, ...]:
        if self.state == "confirm":
            return self.yes + self.no
        if self.state == "namesakes":
            return tuple(dict.fromkeys(normalize_phrase(p.department) for p in self.candidates if p.department))
        if self.state == "which":
            return tuple(dict.fromkeys(normalize_phrase(n) for p in self.candidates for n in p.spoken_names)) + self.no
        return self.index.phrases

    def _ask(self, texts: list[str], out: list[Action]) -> list[Action]:
        """Say ``texts`` (already in the call's language), then listen."""
        self.next_timer = None
        for text in texts:
            self._say_text(text, out)
        out.append(Listen(phrases=self._listen_phrases(), timeout=self.timeout))
        return out

    def _ask_name(self, message: str, out: list[Action], **args: object) -> list[Action]:
        self.state = "name"
        self.next_timer = None
        self._say(message, out, **args)
        out.append(Listen(phrases=self._listen_phrases(), timeout=self.timeout))
        return out

    def _key(self, digit: str, now: float, out: list[Action]) -> list[Action]:
        if digit == "0":
            return self._finish(DirectoryResult("operator"), out)
        if self.state == "confirm":
            return self._answer(digit == "1" if digit in "12" else None, now, out)
        if self.state == "namesakes":
            return self._pick_namesake(digit, now, out)
        if self.state == "which":
            return self._pick_which(digit, now, out)
        if digit == self.keypad_key:
            return out + self._to_keypad(now, "")  # the flow's keypad key: no letter typed yet
        if digit in "23456789" and self.by_keys:
            return out + self._to_keypad(now, digit)
        return out

    def _speech(self, text: str, now: float, out: list[Action], alternatives: tuple[str, ...] = ()) -> list[Action]:
        said = normalize_phrase(text)
        if self.state == "confirm":
            answer = True if said in self.yes else False if said in self.no else None
            return self._answer(None if alternatives else answer, now, out)  # heard both ways: ask again
        if self.state == "which":
            return self._said_which(text, now, out)
        if self.state == "namesakes":
            found = [p for p in self.candidates if said and normalize_phrase(p.department) == said]
            return self._choose(found[0], now, out) if len(found) == 1 else self._miss(now, out)
        people = self.index.lookup(text)
        if not people:
            return self._miss(now, out)
        rival = self._rival(people, alternatives)
        if rival is not None:
            return self._ask_which(people[0], rival, out)
        self.candidates = people
        if len(people) > 1:
            return self._ask_namesakes(out)
        return self._choose(people[0], now, out)

    def _ask_namesakes(self, out: list[Action]) -> list[Action]:
        self.state = "namesakes"
        lang = self.lang
        texts = [lang.say("directory.namesakes", count=len(self.candidates), name=self.candidates[0].display_name)]
        for n, person in enumerate(self.candidates[:9], start=1):
            label = distinguishing_label(person, self.candidates, lang)
            texts.append(lang.say("directory.press_for_name", n=n, name=label))
        return self._ask(texts, out)

    def _pick_namesake(self, digit: str, now: float, out: list[Action]) -> list[Action]:
        if digit.isdigit() and 1 <= int(digit) <= min(len(self.candidates), 9):
            return self._choose(self.candidates[int(digit) - 1], now, out)
        return self._ask_namesakes(out)

    # ------------------------------------------------------------------ two candidates

    def _rival(self, people: tuple[Person, ...], alternatives: tuple[str, ...]) -> Person | None:
        """The one other person the recognizer also heard, when ``people`` is one person."""
        others = {p for alt in alternatives for p in self.index.lookup(alt)} - set(people)
        return others.pop() if len(people) == 1 and len(others) == 1 else None

    def _ask_which(self, first: Person, second: Person, out: list[Action]) -> list[Action]:
        self.state = "which"
        self.candidates = (first, second)
        text = self.lang.say("directory.which_of_two", first=first.display_name, second=second.display_name)
        return self._ask([text], out)

    def _pick_which(self, digit: str, now: float, out: list[Action]) -> list[Action]:
        if digit in ("1", "2"):
            return self._finish(selected(self.candidates[int(digit) - 1]), out)
        return self._ask_which(self.candidates[0], self.candidates[1], out)

    def _said_which(self, text: str, now: float, out: list[Action]) -> list[Action]:
        named = self.index.lookup(text)
        found = [p for p in self.candidates if p in named]
        return self._finish(selected(found[0]), out) if len(found) == 1 else self._miss(now, out)

    # ------------------------------------------------------------------ one candidate

    def _choose(self, person: Person, now: float, out: list[Action]) -> list[Action]:
        self.chosen = person
        if not self.confirm:
            return self._finish(selected(person), out)
        self.state = "confirm"
        if not person.name_recording:
            return self._ask([self.lang.say("directory.confirm", name=person.display_name)], out)
        # The person's own recording is clearer than TTS of a name: "Did you say <recording>? ..."
        before, _, after = self.lang.say("directory.confirm", name="\0").partition("\0")
        self.next_timer = None
        if before.strip():
            self._say_text(before.strip(), out)
        self._play(person.name_recording, out)
        return self._ask([after.lstrip("?.!, ").strip()], out)

    def _answer(self, yes: bool | None, now: float, out: list[Action]) -> list[Action]:
        if yes is True and self.chosen is not None:
            return self._finish(selected(self.chosen), out)
        if yes is None:
            assert self.chosen is not None
            return self._choose(self.chosen, now, out)  # neither yes nor no: ask again
        self.chosen = None
        return self._miss(now, out)

    def _miss(self, now: float, out: list[Action]) -> list[Action]:
        self.misses += 1
        if self.misses >= SPEECH_MISSES and self.by_keys:
            return out + self._to_keypad(now, "")
        if self.misses >= max(SPEECH_MISSES, self.tries):
            self._say("directory.goodbye", out)
            return self._finish(DirectoryResult("not_found"), out)
        return self._ask_name("directory.say_again" if self.by_keys else "directory.say_again_speech_only", out)

    def _to_keypad(self, now: float, first_digit: str) -> list[Action]:
        self.state = "keypad"
        self.keypad = KeypadDialogue(
            self.book,
            match=self.match,
            voice=self.voice,
            language=self.language,
            timeout=self.timeout,
            tries=self.tries,
        )
        out: list[Action] = [Listen()] if self.by_speech else []
        out += self.keypad.start(now, first_digit)
        self._follow_keypad()
        return out


def check_speech(book: DirectoryBook, recognizer: Recognizer) -> list[str]:
    """Names of ``book`` that ``recognizer`` cannot hear, for ``ivr check`` and server start-up.

    vosk drops phrases with out-of-vocabulary words without a word; pocketsphinx cannot load a
    word without a pronunciation.  Either way the caller could never be put through by voice.
    """
    return [f"{book.path}: {problem}" for problem in recognizer.check(PhraseIndex.build(book).phrases)]
