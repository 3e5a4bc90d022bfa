"""Getting a flow ready before its first caller: what ``ivr serve`` does at start-up and on a reload.

A caller must never wait for work that could be done before the call: synthesising a
constant ``say`` text, decoding hold music, reading a directory file, loading a speech
model.  This module owns finding that work in a compiled flow and doing it:

* :func:`flow_texts` is every text a flow will speak with its voice: its constant ``say``
  texts and, when the deployment has mailboxes, the voicemail dialogues' texts in each language
  the flow speaks (and the conference dialogue's when the flow has a conference;
  ivr.runtime.languages picks the voice);
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
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import TYPE_CHECKING

from ivr.config import Config
from ivr.dsl.texts import languages_of, program_nodes, said_in, texts_of
from ivr.runtime.calllog import CallLog
from ivr.runtime.languages import call_language, choose_voice, has_recognizer

if TYPE_CHECKING:
    from ivr.dsl.compiler import Program
    from ivr.runtime.services import Services

Text = tuple[str, str | None, int | None]  # text, voice, rate (None: the deployment's)
VoiceLookup = Callable[[str], "str | None"]  # the TTS engine's voice for a language


def voicemail_texts(program: Program, config: Config, voice_for: VoiceLookup) -> list[Text]:
    """The voicemail dialogues' texts in every language the flow speaks, each in the voice the call
    will use for it, when the deployment has mailboxes."""
    if not config.mailboxes:
        return []
    from ivr.voicemail import prompt_texts

    settings = getattr(program, "settings", None)
    flow_voice = getattr(settings, "voice", None) or ""
    rate = getattr(settings, "rate", None) or None
    texts: list[Text] = []
    for written in languages_of(program):
        language = call_language(written, flow_voice, config.tts.voice)
        voice = choose_voice(language, flow_voice, config.tts, voice_for)
        texts += [(text, voice, rate) for text in prompt_texts(config.mailboxes, language)]
    return texts


def conference_texts(program: Program, config: Config, voice_for: VoiceLookup) -> list[Text]:
    """The conference dialogue's sentences in each language the flow speaks, when it has a
    conference (counts up to the largest room's size)."""
    from ivr.dsl.compiler import ConferenceOp

    rooms = [node for node in program_nodes(program) if isinstance(node, ConferenceOp)]
    if not rooms:
        return []
    from ivr.runtime.conference import prompt_texts

    settings = getattr(program, "settings", None)
    flow_voice = getattr(settings, "voice", None) or ""
    rate = getattr(settings, "rate", None) or None
    largest = 0 if any(not r.max_participants for r in rooms) else max(r.max_participants for r in rooms)
    texts: list[Text] = []
    for written in languages_of(program):
        language = call_language(written, flow_voice, config.tts.voice)
        voice = choose_voice(language, flow_voice, config.tts, voice_for)
        texts += [(text, voice, rate) for text in prompt_texts(largest, language)]
    return texts


def flow_texts(program: Program, config: Config, voice_for: VoiceLookup) -> list[Text]:
    """Every constant ``say`` of the flow, in the voice of each language a call can be in when it
    says it (after ``set language``), then the voicemail dialogues' texts; ``voice_for`` is the TTS
    engine's voice for a language."""
    settings = getattr(program, "settings", None)
    default = str(getattr(settings, "language", "") or "")
    languages = said_in(program)
    said: dict[Text, None] = {}
    for text, voice, rate in texts_of(program):
        for written in sorted(languages.get(text, {default})):
            language = call_language(written, voice or "", config.tts.voice)
            said[(text, choose_voice(language, voice or "", config.tts, voice_for), rate)] = None
    return list(said) + voicemail_texts(program, config, voice_for) + conference_texts(program, config, voice_for)


def prerender(program: Program, config: Config, calllog: CallLog | None) -> int:
    """Render every constant ``say`` of the flow and the voicemail dialogues' texts now, so no caller
    waits for synthesis; the number of texts."""
    from ivr.media.tts import TtsEngine

    engine = TtsEngine.in_data_folder(config.data, config.tts)
    texts = flow_texts(program, config, engine.voice_for)
    if not texts:
        return 0
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
    """Read the flow's directories and load the speech model of each language the flow speaks now,
    not during a caller's turn; a language without a recogniser is logged (its calls take keys only).
    The modules a call's set-up imports on first use are imported now too: importing (and
    compiling) them on the loop held the first caller's turn and every other call's audio."""
    from ivr.media import session  # noqa: F401
    from ivr.runtime import attended, journal, sipconfig, transfer  # noqa: F401  (every INVITE asks
    # attended whether it replaces a call; transfer with it: 25 ms of compiling in the first call)

    for name in getattr(program.settings, "directories", {}) or {}:
        try:
            services.directory(name)
        except Exception as exc:  # ivr check reports it; a call reaching it hears "not found"
            services.calllog.server("directory_error", f"directory {name!r}: {exc}")
    if not uses_speech(program):
        return
    speech = services.config.speech
    for language in dict.fromkeys(
        call_language(written, str(program.settings.voice or ""), services.config.tts.voice) for written in languages_of(program)
    ):
        if not has_recognizer(speech, language):
            services.calllog.server(
                "speech_language_unavailable",
                f"no speech recognizer for language {language!r} ([speech] language, [speech.models]): "
                f"calls in that language take keys only", language=language,
            )
            continue
        try:
            services.recognizer(language)
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
