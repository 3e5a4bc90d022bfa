"""The outside world of a simulated call: the SIP network, the audio path and the recogniser.

``ivr simulate`` and ``ivr test`` run the server's own call runtime (ivr.runtime.call, the
transfers, the directory and voicemail dialogues) and replace only what lies beyond its
edges, through the same narrow interfaces ``ivr serve`` fills with the real thing:

* :class:`SimulatedNetwork` stands where :class:`~ivr.sip.ua.UserAgent` stands: it takes the
  runner's commands (answer, hang up, INVITE a transfer target, REFER) and answers with the
  agent's own events, as the caller and the far-end phones of the scenario would (a phone
  that answers after a few seconds, one that is busy, one that never answers).
* :class:`SimulatedMedia` stands where :class:`~ivr.media.session.MediaSession` stands: a
  clip "plays" for exactly its length on the virtual clock and is then reported done; a
  stopped prompt is reported done too; the caller's keys and voice come in through it.
* :class:`ScriptedRecognizer` stands where the speech engine stands: the endpointer still
  listens to the caller's (synthesised) voice, and the words the scenario says the caller
  said are the result when the grammar has them.

Nothing here decides what a call does; that stays in the runtime.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from ivr.dsl import events as ev
from ivr.media.clip import Clip
from ivr.media.g2p import normalize_phrase
from ivr.media.recognizer import Recognition
from ivr.sip.events import (
    CallConfirmed,
    CallEnded,
    OutgoingCallAnswered,
    OutgoingCallFailed,
    OutgoingCallProgress,
    ReferProgress,
)
from ivr.sip.refer import Replaces
from ivr.sip.replaces import Replaced, ReplacesError
from ivr.sip.sdp import SessionDescription, negotiate

if TYPE_CHECKING:
    from ivr.sip.auth import DigestClient

RING_ANSWER_SECONDS = 5.0  # a phone that answers picks up after ringing this long
REFUSED_SECONDS = 1.0  # busy / unavailable / failed come back quickly
TALK_SECONDS = 60.0  # an answered transfer is a one-minute conversation
FAR_END_HOST = "192.0.2.20"  # documentation address (RFC 5737) of every simulated phone

# The final response a far end gives for each scripted refusal (ivr.runtime.transfer maps it back).
REFUSALS: dict[ev.TransferOutcome, tuple[int, str]] = {
    "busy": (486, "Busy Here"),
    "unavailable": (404, "Not Found"),
    "failed": (503, "Service Unavailable"),
}


def _noop(*_args: Any) -> None:
    pass


# --------------------------------------------------------------------------- media


@dataclass
class _Playing:
    source: Any
    prompt_id: int
    barge_in: bool


class SimulatedMedia:
    """A call leg's audio on the virtual clock (the part of MediaSession the runtime uses)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, port: int) -> None:
        self.loop = loop
        self.local_port = port
        self.on_prompt_done: Callable[[int], None] = _noop
        self.on_dtmf: Callable[[str], None] = _noop
        self.on_audio: Callable[[npt.NDArray[np.int16]], None] | None = None
        self.on_timeout: Callable[[], None] = _noop
        self.closed = False
        self.direction = "sendrecv"
        self.remote: tuple[str, int] | None = None
        self.inband_dtmf = False
        self._queue: deque[_Playing] = deque()
        self._end: asyncio.TimerHandle | None = None
        self.stats: dict[str, Any] = {"packets_sent": 0, "packets_received": 0, "lost": 0, "jitter_ms": 0.0}

    # -- what the runtime calls

    def configure(self, *, remote: tuple[str, int] | None, payload_type: int, dtmf_pt: int | None,
                  direction: str, ptime: int = 20, signalling_host: str | None = None,
                  remote_rtcp: tuple[str, int] | None = None) -> None:
        self.remote, self.direction = remote, direction

    def enable_inband_dtmf(self, on: bool) -> None:
        self.inband_dtmf = on

    def play(self, source: Any, *, prompt_id: int, barge_in: bool = True) -> None:
        if self.closed:
            return
        self._queue.append(_Playing(source, prompt_id, barge_in))
        if len(self._queue) == 1:
            self._start_head()

    def stop_prompts(self, *, only_barge_in: bool = True) -> None:
        kept: deque[_Playing] = deque()
        stopped: list[_Playing] = []
        for item in self._queue:
            (kept if only_barge_in and not item.barge_in else stopped).append(item)
        if not stopped:
            return
        head_stopped = self._queue[0] is stopped[0]
        self._queue = kept
        if head_stopped:
            self._cancel_end()
            if kept:
                self._start_head()
        for item in stopped:
            self.loop.call_soon(self._report, item.prompt_id)

    def receive_info_key(self, digit: str) -> None:
        self.on_dtmf(digit)

    def send_dtmf(self, digit: str) -> None:
        pass  # a key relayed to this leg's phone (a bridge): no simulated phone acts on it

    def close(self) -> None:
        self.closed = True
        self._cancel_end()
        self._queue.clear()

    # -- what the simulated caller does

    @property
    def busy(self) -> bool:
        """Something is playing to this leg (a prompt, ringback, music, the other party)."""
        return bool(self._queue)

    def press(self, digit: str) -> None:
        if not self.closed:
            self.on_dtmf(digit)

    def hear(self, pcm: np.ndarray) -> None:
        """One 20 ms frame of the caller's audio, for whoever listens now."""
        if not self.closed and self.on_audio is not None:
            self.on_audio(pcm)

    # -- playing

    def _start_head(self) -> None:
        source = self._queue[0].source
        if isinstance(source, Clip):  # shared players and relays play until stopped
            self._end = self.loop.call_later(source.duration, self._head_done)

    def _head_done(self) -> None:
        self._end = None
        item = self._queue.popleft()
        if self._queue:
            self._start_head()
        self._report(item.prompt_id)

    def _cancel_end(self) -> None:
        if self._end is not None:
            self._end.cancel()
            self._end = None

    def _report(self, prompt_id: int) -> None:
        if not self.closed:
            self.on_prompt_done(prompt_id)


# --------------------------------------------------------------------------- network


class World(Protocol):
    """What the network needs from the simulated call it belongs to."""

    def outcome_for(self, target: str) -> ev.TransferOutcome:
        """How the far end ``target`` behaves when it is rung."""

    def sends_early_media(self, target: str) -> bool:
        """Whether ``target`` answers ringing with early media (183 with SDP)."""

    def to_runner(self, event: object) -> None:
        """Hand an event of the caller's dialog to the call runner."""

    def to_network_user(self, event: object) -> None:
        """Hand an event about a transfer leg or a REFER to whoever placed it."""


class SimulatedNetwork:
    """The SIP world around one simulated call: its caller's dialog and the far-end phones.

    Implements the user agent commands the runtime gives (the same names and arguments as
    :class:`~ivr.sip.ua.UserAgent`) and hands back the agent's events: the caller's through
    the runner's ``on_sip_event``, the transfer legs' through ``services.leg_event``.
    """

    def __init__(self, sim: World) -> None:
        self.sim = sim
        self._ids = itertools.count(1)
        self._timers: dict[str, list[asyncio.TimerHandle]] = {}

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    # -- the caller's dialog

    def ringing(self, call_id: str, now: float) -> None:
        pass

    def answer(self, call_id: str, sdp: bytes, now: float) -> None:
        self.loop.call_soon(self.sim.to_runner, CallConfirmed(call_id, None))  # the caller's ACK

    def reject(self, call_id: str, status: int, now: float, reason: str | None = None, *,
               headers: Iterable[tuple[str, str]] = ()) -> None:
        pass  # the caller's phone gets the final response; the runner ends the call itself

    def accept_reoffer(self, call_id: str, sdp: bytes, now: float) -> None:
        pass

    def reject_reoffer(self, call_id: str, status: int, now: float) -> None:
        pass

    def hangup(self, call_id: str, now: float) -> None:
        """Our BYE or CANCEL: a far end that was about to answer or talking stops."""
        for handle in self._timers.pop(call_id, []):
            handle.cancel()

    # -- far ends

    def invite(self, target_uri: str, sdp: bytes, now: float, *, from_uri: str,
               headers: Iterable[tuple[str, str]] = (), destination: tuple[str, int],
               transport: str = "udp", auth: DigestClient | None = None) -> str:
        call_id = f"leg-{next(self._ids)}@simulated"
        target = _user_of(target_uri)
        outcome = self.sim.outcome_for(target)
        answer = _answer_for(sdp)
        if self.sim.sends_early_media(target):
            self._at(call_id, 0.0, OutgoingCallProgress(call_id, 183, answer))
        else:
            self._at(call_id, 0.0, OutgoingCallProgress(call_id, 180))
        if outcome == "answered":
            self._at(call_id, RING_ANSWER_SECONDS, OutgoingCallAnswered(call_id, answer))
            self._at(call_id, RING_ANSWER_SECONDS + TALK_SECONDS, CallEnded(call_id, "bye"))
        elif outcome != "no_answer":
            status, reason = REFUSALS[outcome]
            self._at(call_id, REFUSED_SECONDS, OutgoingCallFailed(call_id, status, reason))
        return call_id

    def refer(self, call_id: str, refer_to: str, now: float, *, referred_by: str | None = None) -> bool:
        """The caller's phone accepts the REFER and reports how calling the target went (RFC 3515)."""
        outcome = self.sim.outcome_for(_user_of(refer_to))
        self._at(call_id, 0.1, ReferProgress(call_id, "response", 202))
        if outcome == "answered":
            self._at(call_id, RING_ANSWER_SECONDS, ReferProgress(call_id, "notify", 200, final=True))
        elif outcome != "no_answer":
            self._at(call_id, REFUSED_SECONDS, ReferProgress(call_id, "notify", REFUSALS[outcome][0], final=True))
        return True

    def notify_refer(self, call_id: str, status: int, now: float, *, reason: str | None = None) -> bool:
        return False  # no simulated phone sends a REFER, so there is nobody to tell

    def replaced(self, replaces: Replaces) -> Replaced:
        """A simulated call has no other dialogs for a ``Replaces`` to name."""
        raise ReplacesError(481, f"no dialog {replaces.call_id} in a simulation")

    def _at(self, call_id: str, seconds: float, event: object) -> None:
        handle = self.loop.call_later(seconds, self.sim.to_network_user, event)
        self._timers.setdefault(call_id, []).append(handle)


def _user_of(uri: str) -> str:
    """``sip:+41791234567@trunk.example;user=phone`` -> ``+41791234567``; ``<sip:201@h>`` -> ``201``."""
    text = uri.strip().strip("<>")
    text = re.sub(r"^(sips?|tel):", "", text)
    return text.split("@", 1)[0].split(";", 1)[0]


def _answer_for(offer_body: bytes) -> bytes:
    """A far-end phone's SDP answer to our offer (PCMU, as a desk phone answers)."""
    offer = SessionDescription.parse(offer_body)
    answer = negotiate(offer, local_ip=FAR_END_HOST, local_port=40000, session_id=1, version=1)
    return bytes(answer.sdp)


# --------------------------------------------------------------------------- speech


class ScriptedRecognizer:
    """The recogniser's place: the caller's words, when the grammar has them (else no match).

    ``words`` gives what the utterance that just ended is heard as: one phrase, or two when
    the flow test says the recogniser's engines disagreed (``say "a" or "b"``); phrases
    outside the grammar are dropped, the first left is the result, the second its rival.
    """

    def __init__(self, words: Callable[[], tuple[str, ...]]) -> None:
        self.words = words

    def session(self, phrases: Sequence[str]) -> _ScriptedSession:
        return _ScriptedSession(self, tuple(phrases))

    def check(self, phrases: Sequence[str]) -> list[str]:
        return []


class _ScriptedSession:
    def __init__(self, recognizer: ScriptedRecognizer, phrases: tuple[str, ...]) -> None:
        self.recognizer = recognizer
        self.phrases = phrases

    def accept(self, pcm16_8k: np.ndarray) -> None:
        pass

    def finish_candidates(self) -> Recognition:
        grammar = {normalize_phrase(p): p for p in self.phrases}
        heard = [grammar[n] for n in dict.fromkeys(normalize_phrase(w) for w in self.recognizer.words()) if n in grammar]
        return Recognition(heard[0], 0.9, tuple(heard[1:])) if heard else Recognition("", 0.0)

    def finish(self) -> tuple[str, float]:
        found = self.finish_candidates()
        return found.text, found.confidence

    def close(self) -> None:
        pass
