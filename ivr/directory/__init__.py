"""Dial-by-name directory: sources (CSV/TOML), matching, the keypad and speech sub-dialogues, per-deployment tuning."""

from ivr.directory.keypad import KeypadDialogue
from ivr.directory.matching import PhraseIndex, keypad_digits, keypad_matches
from ivr.directory.source import (
    DirectoryBook,
    DirectoryError,
    Person,
    check_directory,
    load_directory,
)
from ivr.directory.speech import DirectoryDialogue

__all__ = [
    "DirectoryBook",
    "DirectoryDialogue",
    "DirectoryError",
    "KeypadDialogue",
    "Person",
    "PhraseIndex",
    "check_directory",
    "keypad_digits",
    "keypad_matches",
    "load_directory",
]
