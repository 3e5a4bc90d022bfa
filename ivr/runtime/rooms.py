"""Conference rooms of one server process: who is in which room, and what each participant hears.

A :class:`Room` holds a :class:`~ivr.media.mixer.Mixer` (the media core's mix on the shared
clock) and its :class:`Participant` s.  :class:`Rooms` is the process's registry: a room
exists while someone is in it, is registered with the media clock as a shared source
(``clock.add_shared``: one mix per tick per room), and survives a reload (it is one of the
process-wide engines of :class:`~ivr.runtime.services.Services`), so a caller who dials in
after a SIGHUP meets the same people.

A participant joins in two steps, so the conference dialogue (ivr.runtime.conference) can
say who is there before the caller hears the room: :meth:`Rooms.join` takes a seat (or says
the room is full) and :meth:`Participant.talk` connects the caller's media: the caller's
decoded audio goes into the seat, and the caller's session plays the participant, whose
:meth:`Participant.frame` is the mix of the others, or the room's music while the caller is
alone (or, in a room with a moderator PIN, while no moderator is there).  Entry and exit
tones are sounds of the mixer, heard by everyone but the one who comes or goes.

The decisions (alone, waiting for a moderator, full) are made here once, for the real
media and for the simulator alike; the simulator's media never asks for frames, and its
rooms may hold participants without media (a flow test's ``conference ROOM has N people``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ivr.dsl.events import ConferenceJoined
from ivr.media.clip import RATE
from ivr.media.mixer import Mixer, Seat

if TYPE_CHECKING:
    from ivr.runtime.ports import CallMedia

log = logging.getLogger("ivr.runtime.rooms")

TONE_SECONDS = 0.12
ENTRY_TONE = (600.0, 900.0)  # Hz, rising: someone came in
EXIT_TONE = (900.0, 600.0)  # falling: someone left
TONE_LEVEL = 6000


def _two_beeps(first: float, second: float) -> np.ndarray:
    t = np.arange(int(TONE_SECONDS * RATE)) / RATE
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms ramps: no clicks
    beeps = [np.sin(2 * np.pi * f * t) * fade * TONE_LEVEL for f in (first, second)]
    gap = np.zeros(int(0.05 * RATE))
    return np.concatenate([beeps[0], gap, beeps[1]]).astype(np.int16)


ENTRY_PCM = _two_beeps(*ENTRY_TONE)
EXIT_PCM = _two_beeps(*EXIT_TONE)


class MusicSource(Protocol):
    """Where a room's music comes from (:class:`~ivr.media.holdmusic.HoldMusic`)."""

    def player(self, source: str = "") -> Any: ...

    def release(self, player: Any) -> None: ...


class SharedClock(Protocol):
    """The media clock's shared sources (None in the simulator: nothing to pace)."""

    def add_shared(self, source: Any) -> None: ...

    def remove_shared(self, source: Any) -> None: ...


class Participant:
    """One caller in a room: a seat in the mix, and (once talking) the caller's media."""

    def __init__(self, room: Room, seat: Seat, moderator: bool, name: str) -> None:
        self.room = room
        self.seat = seat
        self.moderator = moderator
        self.name = name
        self.media: CallMedia | None = None
        self.talking = False  # connected to the room (after the announcements)
        self.music: Any = None  # the room's music player, held while talking
        self._music_source: MusicSource | None = None

    # -- what the caller hears

    def frame(self, payload_type: int) -> bytes:
        """This tick's frame for the caller: the others' mix, or the music while alone."""
        if self.room.hears_music(self) and self.music is not None:
            frame: bytes = self.music.frame(payload_type)
            return frame
        return self.seat.frame(payload_type)

    @property
    def hears_music(self) -> bool:
        return self.room.hears_music(self) and bool(self.room.music)

    # -- joining and leaving

    def talk(self, media: CallMedia | None, music: MusicSource | None) -> None:
        """Connect the caller: their audio into the seat, the room to their ear."""
        if self.talking or not self.seat.seated:
            return
        self.talking = True
        if self.room.music and music is not None:
            try:
                self.music, self._music_source = music.player(self.room.music), music
            except Exception:  # noqa: BLE001 -- music that cannot play: the caller hears silence
                log.exception("conference %s: no music %r", self.room.name, self.room.music)
        self.media = media
        if media is not None:
            media.stop_prompts(only_barge_in=False)
            media.on_audio = self.seat.push
            media.play(self, prompt_id=-1, barge_in=False)
        if self.room.tones:
            self.room.mixer.sound(ENTRY_PCM, exclude=self.seat)

    def leave(self) -> None:
        """The caller hung up (or the call ends): give back the seat, the music and the media."""
        if not self.seat.seated:
            return
        media, self.media = self.media, None
        if media is not None and not media.closed:
            media.on_audio = None
            media.stop_prompts(only_barge_in=False)
        if self.music is not None and self._music_source is not None:
            self._music_source.release(self.music)
        self.music = None
        self.room.remove(self)
        if self.talking and self.room.tones and self.room.participants:
            self.room.mixer.sound(EXIT_PCM)


class Room:
    """A conference room: its mix, its participants and the settings of its first caller."""

    def __init__(self, name: str, *, max_participants: int = 0, music: str = "", tones: bool = False,
                 wait_for_moderator: bool = False, on_empty: Callable[[Room], None] | None = None) -> None:
        self.name = name
        self.on_empty = on_empty  # the registry forgets a room its last participant left
        self.mixer = Mixer(name)
        self.participants: list[Participant] = []
        self.max_participants = max_participants
        self.music = music
        self.tones = tones
        self.wait_for_moderator = wait_for_moderator

    @property
    def moderators(self) -> int:
        return sum(1 for p in self.participants if p.moderator)

    def hears_music(self, participant: Participant) -> bool:
        """Alone in the room, or waiting for a moderator who is not there yet."""
        if len(self.participants) < 2:
            return True
        return self.wait_for_moderator and not participant.moderator and not self.moderators

    def add(self, moderator: bool, name: str) -> Participant:
        participant = Participant(self, self.mixer.add(name), moderator, name)
        self.participants.append(participant)
        return participant

    def remove(self, participant: Participant) -> None:
        if participant in self.participants:
            self.participants.remove(participant)
        self.mixer.remove(participant.seat)
        if not self.participants and self.on_empty is not None:
            self.on_empty(self)


def joined(room: str, participant: Participant | None) -> ConferenceJoined:
    """What the conference dialogue hears after :meth:`Rooms.join`: who is there, or that it is full."""
    if participant is None:
        return ConferenceJoined(room, full=True)
    others = [p for p in participant.room.participants if p is not participant]
    music = participant.room.music if participant.room.hears_music(participant) else ""
    return ConferenceJoined(room, others=len(others), music=music, moderators=sum(p.moderator for p in others))


class Rooms:
    """Every conference room of the process, by name (see the module docstring)."""

    def __init__(self, clock: SharedClock | None = None) -> None:
        self.clock = clock
        self.rooms: dict[str, Room] = {}

    def join(self, name: str, *, moderator: bool = False, who: str = "", max_participants: int = 0,
             music: str = "", tones: bool = False, wait_for_moderator: bool = False) -> Participant | None:
        """A seat in room ``name``, or None when it has ``max_participants`` already (0: no limit).

        The room takes the settings of the latest caller to join (the flow's line they came
        through: after a reload, the new flow's), and is created by its first.
        """
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(name, on_empty=self._drop_if_empty)
            if self.clock is not None:
                self.clock.add_shared(room.mixer)
        if max_participants and len(room.participants) >= max_participants:
            return None
        room.max_participants, room.music, room.tones = max_participants, music, tones
        room.wait_for_moderator = wait_for_moderator
        return room.add(moderator, who)

    def count(self, name: str) -> int:
        room = self.rooms.get(name)
        return len(room.participants) if room else 0

    def fill(self, name: str, people: int, **settings: Any) -> None:
        """Seat ``people`` participants without media in ``name`` (the simulator's other callers)."""
        for i in range(people):
            if self.join(name, who=f"simulated-{i + 1}", **settings) is None:
                break

    def _drop_if_empty(self, room: Room) -> None:
        if room.participants or self.rooms.get(room.name) is not room:
            return
        del self.rooms[room.name]
        if self.clock is not None:
            self.clock.remove_shared(room.mixer)
