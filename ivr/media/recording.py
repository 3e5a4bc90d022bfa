"""Recording the caller: crash-safe PCM16 8 kHz mono WAV files.

:class:`WavRecorder` writes audio as it arrives (the media session's
``on_audio`` frames), fsyncs at least once a second and rewrites the RIFF and
data sizes when it does, so a process killed with SIGKILL mid-message leaves
a file that is playable up to the last second; :func:`repair_wav` (run by
:func:`repair_all` over the data folder at start-up) fixes the sizes of the
files a crash left behind.

Samples are written with ``os.pwrite`` on the event loop (a page-cache copy);
the fsyncs happen on one background thread for all recordings, so a slow
disk never delays the media clock.

The recorder also decides when a recording ends by itself: at ``max_length``
or after ``silence`` seconds below ``silence_threshold_db`` (dBFS, RMS per
20 ms frame).  On a silence end the trailing silence is cut off.  Ending on a
key, on hang-up or on request is the runner's call: it simply closes the
recorder.  :meth:`WavRecorder.close` deletes a recording shorter than
``min_length`` (nothing stored, duration 0), as ``StartRecording`` specifies.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

RATE = 8000
SAMPLE_BYTES = 2
HEADER_BYTES = 44
SYNC_INTERVAL = 1.0  # seconds of wall time between fsyncs (and header updates)
KEEP_SILENCE = 0.3  # seconds of trailing silence kept when a recording ends on silence


class RecordingError(OSError):
    """A recording file that cannot be written or repaired; the message names the file."""


def wav_header(data_bytes: int) -> bytes:
    """The canonical 44-byte header of a PCM16 8 kHz mono WAV with ``data_bytes`` of samples."""
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, RATE, RATE * SAMPLE_BYTES, SAMPLE_BYTES, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def level_db(pcm16: np.ndarray) -> float:
    """RMS level in dBFS (-inf for digital silence)."""
    if not len(pcm16):
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(pcm16.astype(np.float64)))))
    return 20 * np.log10(rms / 32768) if rms > 0 else float("-inf")


class _Syncer:
    """One background thread that fsyncs recordings, so the event loop never waits for the disk.

    fsync can take milliseconds (more on a busy disk); done on the loop for dozens of
    recordings a second it would delay RTP.  Writes and header updates stay on the loop
    (page-cache writes, microseconds); only the flush to the device happens here.
    """

    def __init__(self) -> None:
        self._pending: dict[int, WavRecorder] = {}
        self._busy = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def request(self, recorder: WavRecorder) -> None:
        with self._cond:
            self._pending[id(recorder)] = recorder
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="recording-fsync", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def drain(self, timeout: float) -> bool:
        """Wait until every requested fsync is done (shutdown, tests); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending))
                batch = list(self._pending.values())
                self._pending.clear()
                self._busy = len(batch)
            for recorder in batch:
                try:
                    recorder._fsync()
                except OSError:
                    pass  # the disk failed; the recorder's next write reports it on the loop
            with self._cond:
                self._busy = 0
                self._cond.notify_all()


def drain_syncs(timeout: float = 10.0) -> bool:
    """Wait for the background fsyncs of all recordings (call before exiting)."""
    return _SYNCER.drain(timeout)


_SYNCER = _Syncer()


class WavRecorder:
    """Appends int16 8 kHz audio to a WAV file that stays playable if the process dies.

    Samples go straight to the kernel (``os.pwrite``, no user-space buffer), so a SIGKILL
    loses nothing written; the header sizes are rewritten and an fsync requested at least
    once a second (``background_sync``: by a helper thread, off the event loop).
    """

    def __init__(
        self,
        path: Path,
        *,
        max_length: float,
        silence: float = 0.0,
        silence_threshold_db: float = -45,
        min_length: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        background_sync: bool = True,
    ) -> None:
        self.path = Path(path)
        self.max_samples = int(max_length * RATE)
        self.silence_samples = int(silence * RATE)
        self.threshold_db = silence_threshold_db
        self.min_length = min_length
        self.samples = 0
        self.reason: str | None = None
        self.fsyncs = 0  # completed fsyncs, for tests and the curious
        self._silent_since: int | None = None  # sample index where the current silence began
        self._clock = clock
        self._background = background_sync
        self._fd_lock = threading.Lock()  # the fsync thread must never touch a closed (reused) fd
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot record: {exc.strerror}") from None
        os.pwrite(self._fd, wav_header(0), 0)
        self._last_sync = clock()
        self._fsync()

    @property
    def duration(self) -> float:
        return self.samples / RATE

    def write(self, pcm16: np.ndarray) -> str | None:
        """Append samples; returns ``"max_length"`` or ``"silence"`` once the recording should end.

        After an end reason is returned further audio is ignored (the reason is returned again).
        """
        if self.reason is not None or self._fd is None:
            return self.reason
        pcm = np.asarray(pcm16, dtype="<i2")
        room = self.max_samples - self.samples
        if len(pcm) >= room:
            pcm, self.reason = pcm[:room], "max_length"
        os.pwrite(self._fd, pcm.tobytes(), HEADER_BYTES + self.samples * SAMPLE_BYTES)
        self._track_silence(pcm)
        self.samples += len(pcm)
        if self.reason is None and self._silence_reached():
            self.reason = "silence"
        if self._clock() - self._last_sync >= SYNC_INTERVAL:
            self._checkpoint()
        return self.reason

    def close(self) -> float:
        """Finish the file and return its duration; 0.0 (file deleted) when shorter than ``min_length``."""
        if self._fd is None:
            return self.duration
        if self.reason == "silence" and self._silent_since is not None:
            self.samples = min(self.samples, self._silent_since + int(KEEP_SILENCE * RATE))
        with self._fd_lock:
            fd, self._fd = self._fd, None
            os.ftruncate(fd, HEADER_BYTES + self.samples * SAMPLE_BYTES)
            _write_sizes(fd, self.samples * SAMPLE_BYTES)
            os.fsync(fd)  # once per recording: the message is complete on disk before it is indexed
            os.close(fd)
            self.fsyncs += 1
        if self.duration < self.min_length or self.samples == 0:
            self.path.unlink(missing_ok=True)
            self.samples = 0
        return self.duration

    def _track_silence(self, pcm: np.ndarray) -> None:
        if not self.silence_samples:
            return
        for start in range(0, len(pcm), 160):
            chunk = pcm[start : start + 160]
            if level_db(chunk) < self.threshold_db:
                if self._silent_since is None:
                    self._silent_since = self.samples + start
            else:
                self._silent_since = None

    def _silence_reached(self) -> bool:
        return (
            self.silence_samples > 0
            and self._silent_since is not None
            and self.samples - self._silent_since >= self.silence_samples
        )

    def _checkpoint(self) -> None:
        """Rewrite the sizes in the header, then have everything flushed to the device."""
        assert self._fd is not None
        _write_sizes(self._fd, self.samples * SAMPLE_BYTES)
        self._last_sync = self._clock()
        if self._background:
            _SYNCER.request(self)
        else:
            self._fsync()

    def _fsync(self) -> None:
        with self._fd_lock:
            if self._fd is not None:
                os.fsync(self._fd)
                self.fsyncs += 1


def _write_sizes(fd: int, data_bytes: int) -> None:
    os.pwrite(fd, struct.pack("<I", 36 + data_bytes), 4)
    os.pwrite(fd, struct.pack("<I", data_bytes), 40)


def _data_chunk(raw: bytes) -> tuple[int, int] | None:
    """(offset of the data size field, offset of the samples) in a RIFF/WAVE file, or None."""
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(raw):
        chunk_id, size = raw[pos : pos + 4], struct.unpack("<I", raw[pos + 4 : pos + 8])[0]
        if chunk_id == b"data":
            return pos + 4, pos + 8
        pos += 8 + size + (size & 1)
    return None


def _block_align(raw: bytes) -> int:
    pos = raw.find(b"fmt ")
    if pos < 0 or pos + 22 > len(raw):
        return SAMPLE_BYTES
    return max(1, struct.unpack("<H", raw[pos + 20 : pos + 22])[0])


def _byte_rate(raw: bytes) -> int:
    pos = raw.find(b"fmt ")
    if pos < 0 or pos + 20 > len(raw):
        return RATE * SAMPLE_BYTES
    return max(1, struct.unpack("<I", raw[pos + 16 : pos + 20])[0])


def needs_repair(path: Path) -> bool:
    """True when the header's sizes disagree with the file's length (a crash mid-recording)."""
    with open(path, "rb") as f:
        head = f.read(4096)
        size = f.seek(0, os.SEEK_END)
    where = _data_chunk(head)
    if where is None:
        return False
    data_size = struct.unpack("<I", head[where[0] : where[0] + 4])[0]
    riff_size = struct.unpack("<I", head[4:8])[0]
    return data_size != size - where[1] or riff_size != size - 8


def repair_wav(path: Path | str) -> float:
    """Fix the RIFF and data sizes of a WAV cut short by a crash; returns its duration in seconds.

    A trailing partial sample is dropped.  Raises RecordingError for a file that is not a WAV.
    """
    path = Path(path)
    with open(path, "r+b") as f:
        head = f.read(4096)
        where = _data_chunk(head)
        if where is None:
            raise RecordingError(f"{path}: not a WAV file with a data chunk; cannot repair")
        size_field, start = where
        size = f.seek(0, os.SEEK_END)
        align = _block_align(head)
        data = (max(0, size - start) // align) * align
        if start + data != size:
            f.truncate(start + data)
        f.seek(4)
        f.write(struct.pack("<I", start + data - 8))
        f.seek(size_field)
        f.write(struct.pack("<I", data))
        f.flush()
        os.fsync(f.fileno())
    return data / _byte_rate(head)


def repair_all(folder: Path | str) -> list[Path]:
    """Repair every WAV under ``folder`` whose header a crash left wrong; returns the repaired files."""
    repaired = []
    for path in sorted(Path(folder).rglob("*.wav")):
        try:
            if path.is_file() and needs_repair(path):
                repair_wav(path)
                repaired.append(path)
        except (OSError, struct.error):
            continue  # unreadable or foreign: leave it for the admin rather than fail the start-up
    return repaired
