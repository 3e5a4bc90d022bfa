"""A call's language: which catalogue ivr's own sentences come from, and which voice speaks.

The call's language is the flow's (``set language = "de"`` from then on, else its ``language``
line), else the language of the flow's voice (``voice de``), else that of the deployment's
``[tts] voice``, else English.  The voice that speaks a sentence in that language is, in order:
the flow's voice when it speaks the language, ``[tts.voices]``' voice for the language, the
deployment's voice when it speaks the language, espeak-ng's voice for the language, the
deployment's voice.  Speech is recognised by the ``[speech]`` engine in its ``language`` and by
the vosk models of ``[speech.models]`` in theirs (:func:`has_recognizer`); a call in a language
without one takes keys only.  A sentence of ivr's own catalogue plays from the language's prompt set
instead when the prompt folders hold a recording of it (``de/voicemail.leave.saved_goodbye.wav``,
:func:`recording_path`).  So ``set language = "fr"`` in a flow written with ``voice en-us`` makes
the rest of the call French, in a French voice.
"""

from __future__ import annotations

from collections.abc import Callable

from ivr.config import SpeechConfig, TtsConfig
from ivr.language import base_language, language_of_voice
from ivr.media.clip import Clip
from ivr.media.prompts import AUDIO_SUFFIXES, PromptPathError, PromptStore


def call_language(flow_language: str, flow_voice: str, default_voice: str) -> str:
    """The base language of a call (``de``), by the precedence of the module docstring."""
    if flow_language:
        return base_language(flow_language)
    return language_of_voice(flow_voice) or language_of_voice(default_voice) or "en"


def speaks(voice: str, language: str) -> bool:
    """Whether ``voice`` names a voice of ``language`` (``en-gb`` speaks ``en``)."""
    return bool(voice) and base_language(voice) == base_language(language)


def choose_voice(
    language: str, flow_voice: str, tts: TtsConfig, espeak_voice_for: Callable[[str], str | None]
) -> str | None:
    """The voice for a sentence in ``language`` (None: the engine's default)."""
    if speaks(flow_voice, language):
        return flow_voice
    mapped = tts.voice_for(base_language(language)) or tts.voice_for(language.lower())
    if mapped:
        return mapped
    if speaks(tts.voice, language):
        return None
    return espeak_voice_for(language) or flow_voice or None


def has_recognizer(speech: SpeechConfig, language: str) -> bool:
    """Whether the deployment recognises speech in ``language`` (``[speech] language`` or ``[speech.models]``)."""
    return base_language(language) in {base_language(lang) for lang in speech.languages()}


def recording_path(language: str, message: str, suffix: str = ".wav") -> str:
    """Where a recording of catalogue sentence ``message`` sits in the prompt folders."""
    return f"{base_language(language)}/{message}{suffix}"


def has_recording(store: PromptStore, language: str, message: str) -> bool:
    """Whether the prompt folders hold a recording of ``message`` in ``language`` (any audio suffix)."""
    for suffix in AUDIO_SUFFIXES:
        try:
            if store.resolve(recording_path(language, message, suffix)).is_file():
                return True
        except (FileNotFoundError, PromptPathError):
            continue
    return False


def recorded_sentence(store: PromptStore, language: str, message: str) -> Clip | None:
    """The recording of ``message`` in ``language``'s prompt set, or None (then TTS speaks it)."""
    for suffix in AUDIO_SUFFIXES:
        try:
            return store.load(recording_path(language, message, suffix))
        except (FileNotFoundError, PromptPathError):
            continue
    return None
