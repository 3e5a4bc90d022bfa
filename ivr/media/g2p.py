"""Pronunciations (ARPAbet) for words, from cmudict or, for names it lacks, from espeak-ng.

pocketsphinx aborts a grammar whose words have no pronunciation, and callers'
names ("Nguyen", "Siobhan", "Zürcher") are exactly what a dictionary lacks.
:func:`pronunciations` returns every known pronunciation of a word: the
bundled cmudict entries first, then espeak-ng's phonemes (``--ipa``, US and
British voices) mapped to the 39-phone ARPAbet set of the acoustic model.
espeak-ng is a separate program: its output is cached per process, and a
word it cannot say raises :class:`PronunciationError` with the word.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import unicodedata
from pathlib import Path

#: IPA (as espeak-ng prints it) -> ARPAbet; longest sequences are tried first.
IPA_TO_ARPABET: dict[str, str] = {
    "aɪə": "AY AH",  # "Diaz" dˈaɪəz: a schwa, not an r-coloured vowel
    "aɪ": "AY",
    "aʊ": "AW",
    "eɪ": "EY",
    "oʊ": "OW",
    "əʊ": "OW",
    "ɔɪ": "OY",
    "eə": "EH R",
    "ɛə": "EH R",
    "ɪə": "IH R",
    "ʊə": "UH R",
    "uːə": "UW AH",
    "tʃ": "CH",
    "dʒ": "JH",
    "ɜː": "ER",
    "ɝ": "ER",
    "ɚ": "ER",
    "ɑː": "AA",
    "ɔː": "AO",
    "iː": "IY",
    "uː": "UW",
    "oː": "OW",
    "eː": "EY",
    "aː": "AA",
    "n̩": "AH N",
    "l̩": "AH L",
    "ɑ": "AA",
    "ɒ": "AA",
    "æ": "AE",
    "a": "AE",
    "ʌ": "AH",
    "ə": "AH",
    "ᵻ": "IH",
    "ɐ": "AH",
    "ɔ": "AO",
    "ɛ": "EH",
    "e": "EH",
    "ɪ": "IH",
    "i": "IY",
    "ʊ": "UH",
    "u": "UW",
    "o": "OW",
    "y": "UW",
    "ø": "ER",
    "œ": "ER",
    "ɜ": "ER",
    "b": "B",
    "d": "D",
    "ð": "DH",
    "f": "F",
    "ɡ": "G",
    "g": "G",
    "h": "HH",
    "j": "Y",
    "k": "K",
    "l": "L",
    "ɫ": "L",
    "m": "M",
    "n": "N",
    "ŋ": "NG",
    "p": "P",
    "ɹ": "R",
    "r": "R",
    "ɾ": "T",
    "ʔ": "T",
    "s": "S",
    "ʃ": "SH",
    "t": "T",
    "θ": "TH",
    "v": "V",
    "w": "W",
    "z": "Z",
    "ʒ": "ZH",
    "x": "HH",
    "ç": "HH",
    "ɲ": "N Y",
    "ʎ": "L Y",
    "c": "K",
    "ɟ": "G",
    "ʁ": "R",
    "ʀ": "R",
}
_IGNORED = set("ˈˌːˑ-‿|. ̩̃")
ARPABET = frozenset(
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z ZH".split()
)
ESPEAK_VOICES = ("en-us", "en-gb")


class PronunciationError(Exception):
    """No pronunciation can be made for ``word`` (espeak-ng missing, or no mappable phoneme)."""

    def __init__(self, word: str, reason: str) -> None:
        self.word = word
        super().__init__(f"no pronunciation for {word!r}: {reason}")


def normalize_phrase(text: str) -> str:
    """Lower case, accents folded, punctuation to spaces: the form grammars and matching use.

    Hangul and other scripts without combining accents keep their letters (NFC), so Korean
    names survive; apostrophes vanish ("O'Brien" -> "obrien").
    """
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    folded = unicodedata.normalize("NFC", stripped).lower().replace("'", "").replace("’", "")
    folded = re.sub(r"[^\w]+|_", " ", folded)
    return " ".join(folded.split())


def ipa_to_arpabet(ipa: str) -> list[str]:
    """Map one word's IPA string to ARPAbet phones (stress, length and ties dropped)."""
    text = unicodedata.normalize("NFC", ipa)
    phones: list[str] = []
    i = 0
    keys = sorted(IPA_TO_ARPABET, key=len, reverse=True)
    while i < len(text):
        if text[i] in _IGNORED or text[i].isspace():
            i += 1
            continue
        for key in keys:
            if text.startswith(key, i):
                phones.extend(IPA_TO_ARPABET[key].split())
                i += len(key)
                break
        else:
            i += 1  # a diacritic or a phoneme outside English: skip rather than guess
    return _merge_repeats(phones)


def _merge_repeats(phones: list[str]) -> list[str]:
    """espeak-ng writes geminates ("tt") that ARPAbet words never have, and "ɚɹ" where ARPAbet's ER
    already holds the r ("Zachary" zˈækɚɹi is Z AE K ER IY, as in cmudict)."""
    out: list[str] = []
    for p in phones:
        if not out or (out[-1] != p and (out[-1], p) != ("ER", "R")):
            out.append(p)
    return out


@functools.lru_cache(maxsize=1)
def cmudict() -> dict[str, tuple[str, ...]]:
    """The cmudict bundled with pocketsphinx: word -> pronunciations (ARPAbet, no stress)."""
    from pocketsphinx import get_model_path

    path = Path(get_model_path()) / "en-us" / "cmudict-en-us.dict"
    entries: dict[str, list[str]] = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            word, _, phones = line.strip().partition(" ")
            base = word.split("(", 1)[0]
            entries.setdefault(base, []).append(phones.strip())
    return {w: tuple(p) for w, p in entries.items()}


@functools.lru_cache(maxsize=4096)
def espeak_ipa(word: str, voice: str = "en-us") -> str:
    """espeak-ng's IPA for ``word`` spoken by ``voice`` (cached per process)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise PronunciationError(word, "espeak-ng is not installed")
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    done = subprocess.run(
        [exe, "-q", "--ipa", "-v", voice, "--", word],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=10,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise PronunciationError(word, f"espeak-ng failed: {done.stderr.strip()}")
    return done.stdout.strip()


def espeak_pronunciations(word: str) -> tuple[str, ...]:
    """ARPAbet pronunciations of ``word`` from espeak-ng's US and British voices (deduplicated)."""
    found: list[str] = []
    for voice in ESPEAK_VOICES:
        phones = " ".join(ipa_to_arpabet(espeak_ipa(word, voice)))
        if phones and phones not in found:
            found.append(phones)
    if not found:
        raise PronunciationError(word, "espeak-ng gave no usable phonemes")
    return tuple(found)


def pronunciations(word: str, *, with_espeak: bool = True) -> tuple[str, ...]:
    """All pronunciations of a lower-case ``word``: cmudict's, then espeak-ng's new ones.

    espeak-ng's variants are added even for dictionary words: callers (and synthesizers)
    say foreign names either way, and the extra path costs the grammar little.
    """
    known = list(cmudict().get(word, ()))
    if with_espeak or not known:
        for p in espeak_pronunciations(word):
            if p not in known:
                known.append(p)
    return tuple(known)
