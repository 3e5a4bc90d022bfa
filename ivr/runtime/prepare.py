"""Getting a flow ready before its first caller: what ``ivr serve`` does at start-up and on a reload.

A caller must never wait for work that could be done before the call: synthesising a
constant ``say`` text, decoding hold music, reading a directory file, loading a speech
model.  This module owns finding that work in a compiled flow and doing it:

* :func:`flow_texts` is every text a flow will speak with its voice: its constant ``say``
  texts and, when the deployment has mailboxes, the voicemail dialogues' texts;
  :func:`prerender` renders them into the TTS cache (``ivr prompts render`` lists them);
* :func:`start_workers` starts the thread pool's threads (starting one during a call
  waits on the loop for the new thread to run);
* :func:`music_sources` and :func:`uses_speech` read the flow's state tables;
  :func:`prepare_hold_music` decodes the music and :func:`warm` reads the directories and
  loads the speech model through a generation of :class:`~ivr.runtime.services.Services`.

A failure here is logged and the call that reaches the feature hears its fallback (silence,
"not found", a no-match); only a text that cannot be rendered stops a start or a reload.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import Executor
from typing import TYPE_CHECKING

from ivr.config import Config
from ivr.dsl.texts import program_nodes, texts_of
from ivr.runtime.calllog import CallLog

if TYPE_CHECKING:
    from ivr.dsl.compiler import Program
    from ivr.runtime.services import Services

Text = tuple[str, str | None, int | None]  # text, voice, rate (None: the deployment's)


def voicemail_texts(program: Program, config: Config) -> list[Text]:
    """The voicemail dialogues' texts in the flow's voice, when the deployment has mailboxes."""
    if not config.mailboxes:
        return []
    from ivr.voicemail import prompt_texts

    settings = getattr(program, "settings", None)
    voice = getattr(settings, "voice", None) or None
    rate = getattr(settings, "rate", None) or None
    return [(text, voice, rate) for text in prompt_texts(config.mailboxes)]


def flow_texts(program: Program, config: Config) -> list[Text]:
    """Every constant ``say`` of the flow, then the voicemail dialogues' texts."""
    return texts_of(program) + voicemail_texts(program, config)


def prerender(program: Program, config: Config, calllog: CallLog | None) -> int:
    """Render every constant ``say`` of the flow and the voicemail dialogues' texts now, so no caller
    waits for synthesis; the number of texts."""
    from ivr.media.tts import TtsEngine

    texts = flow_texts(program, config)
    if not texts:
        return 0
    engine = TtsEngine.in_data_folder(config.data, config.tts)
    engine.prerender(texts)
    if calllog is not None:
        calllog.server("prerendered", f"pre-rendered {len(texts)} prompt text(s)", texts=len(texts))
    return len(texts)


def prepare_hold_music(services: Services, sources: Iterable[str] | None = None) -> None:
    """Decode and encode the flow's hold music now: the first held caller must not stall the loop."""
    for source in sorted(music_sources(services.program) if sources is None else sources):
        try:
            player = services.hold_music.player(source)
        except Exception as exc:  # reported by ivr check; a call will just hear silence
            services.calllog.server("hold_music_error", f"hold music {source!r}: {exc}")
            continue
        for clip in getattr(player, "_clips", ()):
            clip.encoded(0), clip.encoded(8)
        services.hold_music.release(player)


def start_workers(executor: Executor, workers: int) -> None:
    """Start ``workers`` threads of ``executor`` now (its size), so no call waits for one to start.

    The pool starts a thread when work arrives and none is idle; ``Thread.start`` waits until
    the new thread runs, which on a busy machine held the event loop for tens of ms.  Each
    task here waits until all have started, so every one of them gets its own thread."""
    barrier = threading.Barrier(workers + 1)
    for _ in range(workers):
        executor.submit(barrier.wait, 10)
    barrier.wait(10)


def warm(services: Services, program: Program) -> None:
    """Read the flow's directories and load its speech model now, not during a caller's turn."""
    for name in getattr(program.settings, "directories", {}) or {}:
        try:
            services.directory(name)
        except Exception as exc:  # ivr check reports it; a call reaching it hears "not found"
            services.calllog.server("directory_error", f"directory {name!r}: {exc}")
    if uses_speech(program):
        try:
            services.recognizer()
        except Exception as exc:  # keys still work; each utterance will be a no-match
            services.calllog.server("speech_unavailable", f"speech recognition unavailable: {exc}")


def music_sources(program: Program) -> set[str]:
    """Every hold-music source a flow can ask for: its default and each ``music`` of its states."""
    found = {str(getattr(program.settings, "hold_music", "") or "")}
    found.update(m for node in program_nodes(program) if isinstance(m := getattr(node, "music", None), str))
    found.discard("")
    return found


def uses_speech(program: Program) -> bool:
    """Whether any state of the flow listens for speech (a non-empty ``phrases``)."""
    return any(getattr(node, "phrases", None) for node in program_nodes(program))
