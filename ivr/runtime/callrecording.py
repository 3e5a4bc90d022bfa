"""Recording a bridged conversation into a mailbox ("Darf Anrufe aufzeichnen").

A flow's ``transfer to 201 record``, or a staff member's record code during the call
(``[features] record``, ivr.runtime.incall), starts a :class:`CallRecording`:

* Both sides are mixed by the media core's own mixer (:class:`~ivr.media.mixer.Mixer`): a
  private room of three seats, the caller, the callee and the recording's *ear*, which hears
  the sum of the two others through the mixer's limiter.  The bridge hands each side's
  decoded audio to its seat (:meth:`~ivr.runtime.bridge.Bridge.tap`).  When the call becomes
  a conference (a third person added), the ear moves into the conference room's mix
  (:meth:`CallRecording.follow`) and records everyone.
* The recording is a shared source of the media clock: once per 20 ms tick the ear's frame
  is appended to a :class:`~ivr.media.recording.WavRecorder` in the mailbox's ``incoming/``
  folder, where a voicemail message is recorded too.  The file is valid up to the last
  second at any time, and start-up recovery indexes what a crash cut short, as it does for
  voicemail.
* When it stops (the bridge ends, the code is pressed again, ``record_max_length``), the file
  is moved into the mailbox and indexed in a storage worker, like a voicemail message: it
  shows in voicemail access, ``ivr mailbox list`` and the console's mailbox API, and the
  mailbox's message-waiting lamp lights.  Its "caller" is the other party of the owner.

Whose mailbox: for ``record`` in a flow, the extension of the phone that placed the call,
else the extension that answered (:func:`owner_mailbox`); for the code, the extension of the
person who pressed it.  The simulator has no media clock: there a recording records nothing,
and nothing is stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ivr.config import Config
from ivr.media.mixer import PCM, Mixer, Seat
from ivr.media.recording import WavRecorder
from ivr.voicemail.store import Message

log = logging.getLogger("ivr.runtime.callrecording")


def owner_mailbox(config: Config, extension: str) -> str | None:
    """The mailbox a recording of ``extension``'s call goes to: its ``mailbox``, else its number
    when that is a mailbox; None when it has none."""
    found = config.extension(extension)
    if found is None:
        return None
    box = found.mailbox or found.number
    return box if config.mailbox(box) is not None else None


class CallRecording:
    """One recorded conversation (see the module docstring)."""

    def __init__(self, services: Any, *, mailbox: str, other: str, report: Callable[..., None]) -> None:
        self.services = services
        self.mailbox = mailbox
        self.other = other  # the owner's other party: the message's "caller"
        self.report = report  # the call's log
        self.started_at = services.wall()
        self.path = services.voicemail_store.incoming_path(mailbox, other, self.started_at)
        self.recorder = WavRecorder(self.path, max_length=services.config.features.record_max_length)
        self.mixer = Mixer(f"recording {mailbox}")
        self.caller_seat = self.mixer.add("caller")
        self.callee_seat = self.mixer.add("callee")
        self.source = self.mixer  # the mix the ear is in: this private one, or a conference room's
        self.ear: Seat = self.mixer.add("recording")
        self.finished = False
        self.clock = services.clock
        if self.clock is not None:
            self.clock.add_shared(self)
        report(event="call_recording", mailbox=mailbox, other=other)

    @property
    def sinks(self) -> tuple[Callable[[PCM], None], Callable[[PCM], None]]:
        """Where the bridge hands the caller's and the callee's audio."""
        return self.caller_seat.push, self.callee_seat.push

    def follow(self, mixer: Mixer) -> None:
        """Record the room of ``mixer`` from now on (the call became a conference)."""
        if self.finished or mixer is self.source:
            return
        self.source.remove(self.ear)
        self.source, self.ear = mixer, mixer.add("recording")

    def advance(self, tick_no: int) -> None:
        """The clock's tick: this tick's mix of everyone else, to the file."""
        if self.finished:
            return
        self.source.advance(tick_no)
        if self.recorder.write(self.source.pcm_for(self.ear)):
            self.stop("max_length")

    def stop(self, reason: str) -> None:
        """Finish the file and store it in the mailbox (in a storage worker); once."""
        if self.finished:
            return
        self.finished = True
        if self.clock is not None:
            self.clock.remove_shared(self)
        self.source.remove(self.ear)
        duration = self.recorder.close()
        self.report(event="call_recording_stopped", mailbox=self.mailbox, duration=round(duration, 2), reason=reason)
        if duration <= 0:
            return  # nothing recorded (the simulator): the recorder removed the empty file
        try:
            future = asyncio.get_running_loop().run_in_executor(
                self.services.storage_executor, self._store, duration
            )
        except RuntimeError:  # the server is stopping: start-up recovery indexes the file
            log.warning("call recording %s kept in incoming/ for start-up recovery", self.path)
            return
        future.add_done_callback(self._stored)

    def _store(self, duration: float) -> Message:
        """In a storage worker: into the mailbox and its index."""
        return self.services.voicemail_store.add(
            self.mailbox, caller=self.other, duration=duration, source=self.path, received_at=self.started_at
        )

    def _stored(self, done: asyncio.Future[Message]) -> None:
        """On the loop: the call's log says where the recording went (or that recovery will index it)."""
        error = None if done.cancelled() else done.exception()
        if done.cancelled() or error is not None:
            log.error("call recording for mailbox %s not stored (%s); %s is kept for start-up recovery",
                      self.mailbox, error or "cancelled", self.path)
            self.report(event="call_recording_not_stored", mailbox=self.mailbox, error=str(error or "cancelled"))
            return
        message = done.result()
        self.report(event="call_recording_stored", mailbox=self.mailbox, message=message.id,
                    duration=round(message.duration, 2))
