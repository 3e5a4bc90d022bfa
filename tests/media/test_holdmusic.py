"""Hold music: one shared player per source, advanced by the clock, refcounted listeners."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from ivr.media import g711
from ivr.media.clip import Clip
from ivr.media.holdmusic import HoldMusic, HoldMusicError, MusicPlayer
from ivr.media.prompts import PromptStore

REPO_PROMPTS = Path(__file__).resolve().parents[2] / "prompts"


class FakeClock:
    def __init__(self) -> None:
        self.shared: list[object] = []

    def add_shared(self, source: object) -> None:
        self.shared.append(source)

    def remove_shared(self, source: object) -> None:
        self.shared.remove(source)

    def tick(self, n: int) -> None:
        for s in self.shared:
            s.advance(n)  # type: ignore[attr-defined]


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
    clock = FakeClock()
    music = HoldMusic(PromptStore([tmp_path]), clock)
    p1, p2 = music.player("moh/"), music.player("moh/")
    assert p1 is p2 and clock.shared == [p1] and music.listeners("moh/") == 2
    # Folder: files in name order (a then b).
    assert [c.name.rsplit("/", 1)[-1] for c in (p1.clip,)] == ["a.wav"]
    other = music.player("jingle.wav, moh/a.wav")
    assert other is not p1 and len(clock.shared) == 2
    clock.tick(0)
    for tick in range(1, 6):
        clock.tick(tick)
    assert p1.clip.name.endswith("b.wav")  # 5 frames per clip: the sixth tick is b's first frame
    music.release(p1)
    assert clock.shared == [p1, other]
    music.release(p2)
    assert clock.shared == [other] and music.listeners("moh/") == 0
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
