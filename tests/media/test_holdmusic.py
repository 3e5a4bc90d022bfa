"""Hold music: one shared player per source, advanced by the clock, refcounted listeners."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ivr.media import g711
from ivr.media.clip import Clip
from ivr.media.clock import MediaClock
from ivr.media.holdmusic import HoldMusic, HoldMusicError, MusicPlayer
from ivr.media.prompts import PromptStore

REPO_PROMPTS = Path(__file__).resolve().parents[2] / "prompts"


class _Handle:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class ManualLoop:
    """The one thing the real MediaClock needs of a loop, with time moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[_Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> _Handle:
        self.timers.append(_Handle(when, callback))
        return self.timers[-1]

    def run_ticks(self, n: int) -> None:
        for _ in range(n):
            handle = min((h for h in self.timers if not h.cancelled), key=lambda h: h.when)
            self.timers.remove(handle)
            self.now = handle.when
            handle.callback()


def _numbered_clip(value: int, frames: int) -> Clip:
    """A clip whose every sample is ``value``: frames say which clip is playing."""
    return Clip(np.full(frames * 160, value, dtype=np.int16), name=str(value))


def test_fixed_order_loops_and_advances_once_per_tick():
    player = MusicPlayer([_numbered_clip(1000, 2), _numbered_clip(2000, 1)], name="t")
    heard = []
    for tick in range(8):
        player.advance(tick)
        player.advance(tick)  # a second call in the same tick does not move it
        heard.append(int(player.pcm_frame()[0]))
    assert heard == [1000, 1000, 2000, 1000, 1000, 2000, 1000, 1000]
    assert player.frame(g711.PCMU) == g711.encode(np.full(160, 1000, np.int16), g711.PCMU)


def test_skipped_ticks_are_skipped_in_the_music_too():
    player = MusicPlayer([_numbered_clip(v, 1) for v in (1, 2, 3, 4, 5)], name="t")
    player.advance(0)
    player.advance(3)
    assert int(player.pcm_frame()[0]) == 4


def test_a_restarted_clock_does_not_freeze_the_music():
    player = MusicPlayer([_numbered_clip(v, 1) for v in (1, 2, 3)], name="t")
    player.advance(500)
    player.advance(501)
    player.advance(0)  # tick numbers start again
    player.advance(1)
    assert int(player.pcm_frame()[0]) == 3


def test_random_order_plays_every_track_each_round_without_repeating_across_rounds():
    clips = [_numbered_clip(v, 1) for v in range(1, 6)]
    player = MusicPlayer(clips, order="random", seed=7, name="r")
    heard = []
    for tick in range(50):
        player.advance(tick)
        heard.append(int(player.pcm_frame()[0]))
    rounds = [heard[i : i + 5] for i in range(0, 50, 5)]
    assert all(sorted(r) == [1, 2, 3, 4, 5] for r in rounds)
    assert any(r != [1, 2, 3, 4, 5] for r in rounds)
    assert all(heard[i] != heard[i + 1] for i in range(49))


def test_empty_music_is_an_error():
    with pytest.raises(HoldMusicError, match="hold music 'x': no audio to play"):
        MusicPlayer([Clip.silence(0)], name="x")


def _write(path: Path, value: float, seconds: float = 0.1) -> None:
    soundfile.write(
        path, np.full(int(8000 * seconds), value, dtype=np.float32), 8000, subtype="PCM_16"
    )


def test_hold_music_shares_one_player_per_source_and_refcounts(tmp_path):
    (tmp_path / "moh").mkdir()
    _write(tmp_path / "moh" / "b.wav", 0.2)
    _write(tmp_path / "moh" / "a.wav", 0.1)
    _write(tmp_path / "jingle.wav", 0.3)
    loop = ManualLoop()
    clock = MediaClock(loop)
    clock.start()
    music = HoldMusic(PromptStore([tmp_path]), clock)
    p1, p2 = music.player("moh/"), music.player("moh/")
    assert p1 is p2 and music.listeners("moh/") == 2
    # Folder: files in name order (a then b).
    assert [c.name.rsplit("/", 1)[-1] for c in (p1.clip,)] == ["a.wav"]
    other = music.player("jingle.wav, moh/a.wav")
    assert other is not p1
    loop.run_ticks(6)  # ticks 0-5: the first one sets the start, five frames follow
    assert p1.clip.name.endswith("b.wav")  # 5 frames per clip: the sixth tick is b's first frame
    assert other.clip.name.endswith("moh/a.wav") and other.position == 0  # after the jingle's 5 frames
    music.release(p1)
    loop.run_ticks(1)
    assert p1.position == 1 and other.position == 1  # one listener left: p1 still advances
    music.release(p2)
    assert music.listeners("moh/") == 0
    loop.run_ticks(3)
    assert p1.position == 1 and other.position == 4  # off the clock: p1 stands still
    assert music.player("moh/") is not p1  # a later listener starts a new player
    with pytest.raises(ValueError, match="not in use"):
        music.release(p1)


def test_missing_or_empty_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    music = HoldMusic(PromptStore([tmp_path]))
    with pytest.raises(FileNotFoundError):
        music.player("nope/")
    with pytest.raises(HoldMusicError, match="no audio files found"):
        music.player("empty/")
    assert music.check("empty/") == "hold music 'empty/': no audio files found"
    assert music.listeners("empty/") == 0


def test_shipped_default_track_plays(tmp_path):
    music = HoldMusic(PromptStore([REPO_PROMPTS]))
    player = music.player("")
    assert player.clip.duration > 15
    levels = []
    for tick in range(200):
        player.advance(tick)
        levels.append(float(np.sqrt(np.mean(player.pcm_frame().astype(float) ** 2))))
    assert np.mean(levels) > 500  # audible music, not silence
    assert (REPO_PROMPTS / "LICENSE").read_text().count("moh/default.ogg") == 1


def test_shuffle_marker_makes_a_folder_random(tmp_path):
    (tmp_path / "moh").mkdir()
    for i in range(4):
        _write(tmp_path / "moh" / f"{i}.wav", 0.1)
    music = HoldMusic(PromptStore([tmp_path]))
    assert music.player("moh/").order == "fixed"
    assert music.player("random:moh/").order == "random"
    (tmp_path / "moh" / ".shuffle").write_text("")
    music = HoldMusic(PromptStore([tmp_path]))
    assert music.player("moh/").order == "random"
