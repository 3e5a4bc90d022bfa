"""The bridge on real media sessions over loopback: audio crosses both ways with PCMU on one leg and
PCMA on the other, an RFC 4733 key becomes an in-band tone on a leg without telephone-event, and an
in-band key passes as audio without being doubled."""

from __future__ import annotations

import asyncio

import numpy as np

from ivr.media import g711
from ivr.media.clip import Clip
from ivr.media.clock import MediaClock
from ivr.media.holdmusic import MusicPlayer
from ivr.media.session import MediaSession
from ivr.runtime.bridge import Bridge

PORTS = (43000, 43999)


async def linked(clock: MediaClock, pt: int, dtmf_pt: int | None) -> tuple[MediaSession, MediaSession]:
    """A phone and ivr's session for it, configured toward each other."""
    phone = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
    ivr = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
    phone.configure(remote=("127.0.0.1", ivr.local_port), payload_type=pt, dtmf_pt=dtmf_pt, direction="sendrecv")
    ivr.configure(remote=("127.0.0.1", phone.local_port), payload_type=pt, dtmf_pt=dtmf_pt, direction="sendrecv")
    return phone, ivr


def share(pcm: np.ndarray, hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / 8000)
    total = spectrum[freqs > 100].sum()
    return float(spectrum[np.abs(freqs - hz) < 30].sum() / total) if total else 0.0


async def ticks(clock: MediaClock, count: int) -> None:
    target = clock.ticks + count
    while clock.ticks < target:
        await asyncio.sleep(clock.interval / 4)


async def until(predicate: object, clock: MediaClock, what: str, limit: int = 250) -> None:
    start = clock.ticks
    while not predicate():  # type: ignore[operator]
        assert clock.ticks - start < limit, f"timed out waiting for {what}"
        await ticks(clock, 1)


def test_audio_and_keys_cross_a_pcmu_to_pcma_bridge() -> None:
    async def main() -> None:
        clock = MediaClock(asyncio.get_running_loop())
        clock.start()
        try:
            caller, ivr_a = await linked(clock, g711.PCMU, 101)
            callee, ivr_b = await linked(clock, g711.PCMA, None)
            bridge = Bridge(ivr_a, ivr_b)
            bridge.start()
            heard_by_caller: list[np.ndarray] = []
            heard_by_callee: list[np.ndarray] = []
            caller.on_audio, callee.on_audio = heard_by_caller.append, heard_by_callee.append
            keys_at_caller: list[str] = []
            keys_at_callee: list[str] = []
            caller.on_dtmf, callee.on_dtmf = keys_at_caller.append, keys_at_callee.append
            caller.enable_inband_dtmf(True)
            callee.enable_inband_dtmf(True)
            caller.play(Clip.tone(600, 1.0), prompt_id=1)
            callee.play(Clip.tone(1000, 1.0), prompt_id=2)
            await ticks(clock, 60)
            pcm_callee = np.concatenate(heard_by_callee)
            pcm_caller = np.concatenate(heard_by_caller)
            assert share(pcm_callee, 600) > 0.6 and share(pcm_caller, 1000) > 0.6
            assert share(pcm_callee, 1000) < 0.01  # no echo of the callee itself
            assert ivr_b.stats["packets_sent"] > 40 and ivr_a.stats["packets_sent"] > 40

            caller.send_dtmf("5")  # RFC 4733 on the caller's leg; the callee's leg has no telephone-event
            await until(lambda: keys_at_callee == ["5"], clock, "5 at the callee (in-band)")
            callee.send_dtmf("7")  # in-band: travels in the audio, detected only by the caller
            await until(lambda: keys_at_caller == ["7"], clock, "7 at the caller")
            await ticks(clock, 20)
            assert keys_at_caller == ["7"] and keys_at_callee == ["5"]
            assert bridge.keys == [("to_callee", "5")]

            bridge.stop()
            assert ivr_a.on_audio is None and ivr_a.playing is None
            for session in (caller, ivr_a, callee, ivr_b):
                session.close()
        finally:
            clock.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_caller_hold_plays_hold_music_to_the_callee_and_resume_restores_the_bridge() -> None:
    """The caller's re-INVITE with sendonly (our side becomes recvonly), then c=0.0.0.0: the callee
    hears the hold music instead of the caller (who still sends its tone); sendrecv brings it back."""

    async def main() -> None:
        clock = MediaClock(asyncio.get_running_loop())
        clock.start()
        music = MusicPlayer([Clip.tone(400, 2.0)], name="moh")
        taken: list[MusicPlayer] = []
        released: list[object] = []

        def acquire() -> MusicPlayer:
            clock.add_shared(music)
            taken.append(music)
            return music

        def release(player: object) -> None:
            clock.remove_shared(music)
            released.append(player)

        try:
            caller, ivr_a = await linked(clock, g711.PCMU, 101)
            callee, ivr_b = await linked(clock, g711.PCMA, None)
            bridge = Bridge(ivr_a, ivr_b, (acquire, release))
            bridge.start()
            heard: list[np.ndarray] = []
            callee.on_audio = heard.append
            caller.play(Clip.tone(600, 10.0), prompt_id=1)

            async def listen(frames: int) -> np.ndarray:
                await ticks(clock, 10)  # what was on the way before the change
                heard.clear()
                await ticks(clock, frames)
                return np.concatenate(heard)

            pcm = await listen(40)
            assert share(pcm, 600) > 0.6 and not taken

            ivr_a.configure(remote=("127.0.0.1", caller.local_port), payload_type=g711.PCMU, dtmf_pt=101,
                            direction="recvonly")  # the caller sent a=sendonly
            pcm = await listen(40)
            assert share(pcm, 400) > 0.6 and share(pcm, 600) < 0.01, "the callee should hear hold music only"
            assert taken == [music] and bridge.holds == 1

            ivr_a.configure(remote=("127.0.0.1", caller.local_port), payload_type=g711.PCMU, dtmf_pt=101,
                            direction="sendrecv")  # resume
            pcm = await listen(40)
            assert share(pcm, 600) > 0.6 and share(pcm, 400) < 0.01
            assert released == [music]

            ivr_a.configure(remote=("0.0.0.0", caller.local_port), payload_type=g711.PCMU, dtmf_pt=101,
                            direction="sendrecv")  # the old hold of RFC 2543: c=0.0.0.0
            pcm = await listen(40)
            assert share(pcm, 400) > 0.6 and bridge.holds == 2
            bridge.stop()  # ending the bridge while held gives the music back
            assert released == [music, music]
            for session in (caller, ivr_a, callee, ivr_b):
                session.close()
        finally:
            clock.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_callee_hold_plays_hold_music_to_the_caller_and_resume_restores_the_bridge() -> None:
    """The phone ivr rang holds (its re-INVITE a=sendonly: our leg becomes recvonly): the caller
    hears hold music instead of the callee, and the callee's voice again on sendrecv."""

    async def main() -> None:
        clock = MediaClock(asyncio.get_running_loop())
        clock.start()
        music = MusicPlayer([Clip.tone(400, 2.0)], name="moh")
        released: list[object] = []
        held: list[tuple[str, bool]] = []

        def acquire() -> MusicPlayer:
            clock.add_shared(music)
            return music

        def release(player: object) -> None:
            clock.remove_shared(music)
            released.append(player)

        try:
            caller, ivr_a = await linked(clock, g711.PCMU, 101)
            callee, ivr_b = await linked(clock, g711.PCMA, None)
            bridge = Bridge(ivr_a, ivr_b, (acquire, release))
            bridge.on_hold = lambda side, on: held.append((side, on))
            bridge.start()
            heard: list[np.ndarray] = []
            caller.on_audio = heard.append
            callee.play(Clip.tone(1000, 10.0), prompt_id=1)

            async def listen(frames: int) -> np.ndarray:
                await ticks(clock, 10)
                heard.clear()
                await ticks(clock, frames)
                return np.concatenate(heard)

            assert share(await listen(40), 1000) > 0.6
            ivr_b.configure(remote=("127.0.0.1", callee.local_port), payload_type=g711.PCMA, dtmf_pt=None,
                            direction="recvonly")
            pcm = await listen(40)
            assert share(pcm, 400) > 0.6 and share(pcm, 1000) < 0.01, "the caller should hear hold music only"
            assert held == [("callee", True)] and bridge.holds == 1
            ivr_b.configure(remote=("127.0.0.1", callee.local_port), payload_type=g711.PCMA, dtmf_pt=None,
                            direction="sendrecv")
            pcm = await listen(40)
            assert share(pcm, 1000) > 0.6 and share(pcm, 400) < 0.01
            assert held == [("callee", True), ("callee", False)] and released == [music]
            bridge.stop()
            for session in (caller, ivr_a, callee, ivr_b):
                session.close()
        finally:
            clock.stop()

    asyncio.run(asyncio.wait_for(main(), 30))
