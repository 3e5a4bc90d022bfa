"""Bridging two call legs: the caller's media session and the callee's.

Each leg keeps its own :class:`~ivr.media.session.MediaSession` with the codec
negotiated on that leg, its own SSRC, sequence numbers and timestamps (so
each phone sees one continuous stream, RFC 3550 section 7.1 on translators).
Audio crosses as 8 kHz PCM: what one session decodes is queued in an
:class:`~ivr.media.relay.AudioRelay`, which the other session plays as a never-ending source,
encoding each 20 ms frame in its own codec.  PCMU on one side and PCMA on
the other is therefore transcoded; same codec on both sides round-trips
exactly (G.711 decode then encode is the identity).  Keys are passed on as
keys: an RFC 4733 event or SIP INFO from one side is sent to the other as an
event (or an in-band tone if that leg negotiated no telephone-event), and
in-band detection is switched off while bridged so a tone that already
travels in the audio is not doubled.

The relay absorbs the two clocks' drift and network jitter with a small
buffer: playback starts once ``PREBUFFER`` frames are queued, an underrun
plays silence and rebuffers, and more than ``MAX_FRAMES`` queued drops the
oldest audio so the delay never grows.

Either side may put the call on hold (re-INVITE with ``sendonly``/``inactive``
or the old ``c=0.0.0.0``, RFC 3264 section 8.4), seen on that side's session
(our direction becomes ``recvonly``/``inactive``, or no remote address): the
other side then hears hold music from our side instead of the held audio, and
the bridge resumes when the holder sends ``sendrecv`` again.  No re-INVITE goes
to the other side: its leg keeps sending and receiving as before, which every
phone handles.  A phone at the callee's end that holds one call and takes
another ("Makeln") therefore leaves each held caller with music.

Two hooks serve the in-call features (ivr.runtime.incall): :meth:`Bridge.tap` hands each
side's decoded audio to a listener as well (a recording, ivr.runtime.callrecording), and
``Bridge.keys_from`` sees every key before it is relayed and may keep it (a feature code
typed by the staff side); :meth:`Bridge.announce` plays a sentence to one side, after which
that side hears the other again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ivr.media import g711
from ivr.media.clip import FRAME_SAMPLES, Clip
from ivr.media.dtmf import DtmfError
from ivr.media.relay import AudioRelay
from ivr.runtime.ports import CallMedia

log = logging.getLogger("ivr.runtime.bridge")

_SILENCE = {pt: bytes([code]) * FRAME_SAMPLES for pt, code in g711.SILENCE.items()}


class HoldPlayer(Protocol):
    """A shared player (``ivr.media.holdmusic.MusicPlayer``): one frame per tick, in any codec."""

    def frame(self, payload_type: int) -> bytes: ...


HoldSource = tuple[Callable[[], HoldPlayer], Callable[[HoldPlayer], None]]  # (acquire, release)
AudioSink = Callable[[npt.NDArray[np.int16]], None]


def caller_holds(session: CallMedia) -> bool:
    """Whether the phone of ``session`` put the call on hold (our direction follows theirs)."""
    return session.direction in ("recvonly", "inactive") or session.remote is None


class _Feed:
    """What one side's session plays: the other side's relayed audio, or hold music while the
    other side holds (acquired at the first held frame, released on resume or when the bridge stops)."""

    def __init__(self, bridge: Bridge, holder: CallMedia, relay: AudioRelay, side: str) -> None:
        self.bridge = bridge
        self.holder = holder  # the side whose hold this feed follows
        self.relay = relay
        self.side = side  # "caller" or "callee": who holds, for on_hold
        self.music: HoldPlayer | None = None

    def frame(self, payload_type: int) -> bytes:
        if caller_holds(self.holder):
            music = self.hold_started()
            return music.frame(payload_type) if music is not None else _SILENCE[payload_type]
        if self.music is not None:
            self.hold_ended()
        return self.relay.frame(payload_type)

    def hold_started(self) -> HoldPlayer | None:
        """The other side holds: the hold music to play (taken once per hold)."""
        bridge = self.bridge
        if self.music is None and bridge.hold is not None:
            bridge.holds += 1
            try:
                self.music = bridge.hold[0]()
            except Exception:  # noqa: BLE001 -- music that cannot play: this side hears silence
                log.exception("bridge: no hold music for the %s's peer", self.side)
                bridge.hold = None
            if bridge.on_hold is not None:
                bridge.on_hold(self.side, True)
        return self.music

    def hold_ended(self) -> None:
        """The other side resumed (or the bridge stops): give the music back, drop audio queued while held."""
        music, self.music = self.music, None
        bridge = self.bridge
        if music is not None and bridge.hold is not None:
            bridge.hold[1](music)
            if bridge.on_hold is not None and bridge.active:
                bridge.on_hold(self.side, False)
            self.relay.chunks.clear()
            self.relay.queued = 0
            self.relay.playing = False


class Bridge:
    """Caller and callee talking through ivr (see the module docstring).

    :meth:`start` takes over both sessions' audio and key callbacks;
    :meth:`stop` gives the caller's back (the flow may go on after the bridge).
    """

    def __init__(self, caller: CallMedia, callee: CallMedia, hold: HoldSource | None = None) -> None:
        self.caller = caller
        self.callee = callee
        self.to_callee = AudioRelay()
        self.to_caller = AudioRelay()
        self.hold = hold  # where hold music comes from (None: silence while held)
        self.holds = 0  # times either side put the call on hold, for logs and tests
        # told ("caller" or "callee": who holds, True on hold / False on resume), for call logs
        self.on_hold: Callable[[str, bool], None] | None = None
        self.keys: list[tuple[str, str]] = []  # (direction, digit), for logs and tests
        # Told each key first ("caller" or "callee": who pressed it); True keeps it from the other side.
        self.keys_from: Callable[[str, str], bool] | None = None
        self.tapped: tuple[AudioSink, AudioSink] | None = None  # (caller's audio, callee's audio)
        self.on_stop: Callable[[Bridge], None] | None = None  # told once the bridge has stopped
        self.callee_feed = _Feed(self, caller, self.to_callee, "caller")  # the callee hears
        self.caller_feed = _Feed(self, callee, self.to_caller, "callee")  # the caller hears
        # The caller's own callbacks and in-band detection, given back by stop()
        self._caller_audio: Callable[[npt.NDArray[np.int16]], None] | None = None
        self._caller_dtmf: Callable[[str], None] | None = None
        self._caller_inband = False
        self.active = False

    def start(self) -> None:
        self._caller_audio, self._caller_dtmf = self.caller.on_audio, self.caller.on_dtmf
        self._caller_inband = self.caller.inband_dtmf  # restored on stop
        self.caller.stop_prompts(only_barge_in=False)
        self.callee.stop_prompts(only_barge_in=False)  # a leg bridged before (a transfer's) plays an old feed
        self.caller.enable_inband_dtmf(False)
        self.callee.enable_inband_dtmf(False)
        self._wire_audio()
        self.caller.on_dtmf = self._relay_key(self.callee, "to_callee")
        self.callee.on_dtmf = self._relay_key(self.caller, "to_caller")
        self.caller.play(self.caller_feed, prompt_id=-1, barge_in=False)
        self.callee.play(self.callee_feed, prompt_id=-1, barge_in=False)
        self.active = True

    def _wire_audio(self) -> None:
        """Each side's audio to the other's relay, and to the tap's listener when there is one."""
        if self.tapped is None:
            self.caller.on_audio, self.callee.on_audio = self.to_callee.push, self.to_caller.push
            return
        caller_sink, callee_sink = self.tapped
        to_callee, to_caller = self.to_callee.push, self.to_caller.push

        def from_caller(pcm: npt.NDArray[np.int16]) -> None:
            to_callee(pcm)
            caller_sink(pcm)

        def from_callee(pcm: npt.NDArray[np.int16]) -> None:
            to_caller(pcm)
            callee_sink(pcm)

        self.caller.on_audio, self.callee.on_audio = from_caller, from_callee

    def tap(self, sinks: tuple[AudioSink, AudioSink] | None) -> None:
        """Hand the caller's and the callee's audio to ``sinks`` as well (None: stop)."""
        self.tapped = sinks
        if self.active:
            self._wire_audio()

    def announce(self, side: str, clip: Clip) -> None:
        """Play ``clip`` to ``side`` ("caller" or "callee"), then the other side's audio again."""
        media, feed = (self.caller, self.caller_feed) if side == "caller" else (self.callee, self.callee_feed)
        if not self.active or media.closed:
            return
        media.stop_prompts(only_barge_in=False)
        media.play(clip, prompt_id=-1, barge_in=False)
        media.play(feed, prompt_id=-1, barge_in=False)

    def relay_keys(self, side: str, digits: str) -> None:
        """Send keys ``side`` typed to the other side (a feature code's start that was none)."""
        target, direction = (self.callee, "to_callee") if side == "caller" else (self.caller, "to_caller")
        relay = self._relay_key(target, direction, intercept=False)
        for digit in digits:
            relay(digit)

    def key_from_callee(self, digit: str) -> None:
        """A key the callee sent by SIP INFO (the runner's leg events deliver it here)."""
        self._relay_key(self.caller, "to_caller")(digit)

    def _relay_key(self, target: CallMedia, direction: str, intercept: bool = True) -> Callable[[str], None]:
        side = "caller" if direction == "to_callee" else "callee"

        def relay(digit: str) -> None:
            if not self.active or target.closed:
                return
            if intercept and self.keys_from is not None and self.keys_from(side, digit):
                return
            try:
                target.send_dtmf(digit)
            except DtmfError:
                return
            self.keys.append((direction, digit))

        return relay

    def stop(self) -> None:
        if not self.active:
            return
        self.active = False
        if not self.caller.closed:
            self.caller.stop_prompts(only_barge_in=False)
            self.caller.on_audio = self._caller_audio
            self.caller.on_dtmf = self._caller_dtmf or self.caller.on_dtmf
            self.caller.enable_inband_dtmf(self._caller_inband)
        self.callee.on_audio = None
        self.callee_feed.hold_ended()
        self.caller_feed.hold_ended()
        if self.on_stop is not None:
            self.on_stop(self)

    @property
    def stats(self) -> dict[str, int]:
        return {
            "to_callee_frames": self.to_callee.frames_out,
            "to_caller_frames": self.to_caller.frames_out,
            "underruns": self.to_callee.underruns + self.to_caller.underruns,
            "dropped_samples": self.to_callee.dropped + self.to_caller.dropped,
            "keys": len(self.keys),
        }
