"""A flow against the deployment it runs in: the checks and the loading that need the deployment file.

:mod:`ivr.dsl` knows a flow's files only.  What depends on the installation is
checked here, on the same AST and with the same diagnostics (``file:line:col``,
the line, a caret, a hint):

- prompt files: each constant ``play``, ``hold music`` and ``hold_music`` must be
  in a prompt folder (a warning if not), stay inside it through symbolic links,
  and be playable audio (or a folder holding some);
- extensions, mailboxes and trunks: every constant number a flow transfers to,
  rings or leaves voicemail in (also a sub-flow's parameter, at each ``call``
  passing a constant) must be defined in the deployment file, or allowed by a
  trunk for ``+`` numbers (warnings);
- languages: ivr's message catalogues must load (an error names the file and the message id);
  each language a flow speaks (``language de``, ``set language = "de"``) must have a
  message catalogue, or ivr's own sentences are English; a flow that listens for speech must
  have a recogniser for it, or its calls in that language take keys only (warnings);
- directories: each person's extension must be a deployment extension or a ring
  group of the flow, and a mailbox given must be a deployment mailbox (errors,
  at the directory file's line).

Deployment-file checks run only with an actual file: the embedded defaults know
no extensions.  :func:`load_flow` and :func:`check_flow` are
:mod:`ivr.dsl.loader`'s with these checks added; ``ivr serve`` (start and
reload), ``ivr check`` and the other commands load flows through them.
:func:`number_key` is the ``[numbers]`` setting made a matching rule for the
compiled program's entry points.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields, replace
from pathlib import Path

from ivr.config import Config, NumbersConfig, SpeechConfig
from ivr.directory.source import DirectoryError, load_directory
from ivr.dsl import ast, loader
from ivr.dsl.checks import dialled, prompt_paths
from ivr.dsl.compiler import Program, normalize_number
from ivr.dsl.errors import Diagnostic, SourcePos
from ivr.language import all_catalogues, base_language, known, language_of_voice, languages
from ivr.language.catalogue import MESSAGES, CatalogueError
from ivr.media.prompts import PromptStore
from ivr.runtime.languages import has_recognizer

ItemCheck = loader.ItemCheck


def load_flow(
    paths: Sequence[str | Path], *, prompt_folders: Sequence[Path] = (), strict: bool = False,
    config: Config | None = None,
) -> Program:
    """:func:`ivr.dsl.loader.load_flow` plus the prompt files in ``prompt_folders`` and, with
    ``config``, the deployment's extensions, mailboxes, trunks and its ``[numbers]`` matching."""
    program = loader.load_flow(paths, strict=strict, extra_checks=deployment_checks(prompt_folders, config))
    if config is not None:
        program = replace(program, number_key=number_key(config.numbers))
    return program


def check_flow(
    paths: Sequence[str | Path], *, prompt_folders: Sequence[Path] = (), config: Config | None = None
) -> list[Diagnostic]:
    """Every problem of a flow and of the flow in this deployment, errors first (``ivr check``)."""
    return loader.check_flow(paths, extra_checks=deployment_checks(prompt_folders, config))


def deployment_checks(prompt_folders: Sequence[Path], config: Config | None) -> list[ItemCheck]:
    folders = [Path(f) for f in prompt_folders]
    numbers = config.numbers if config is not None else NumbersConfig()
    speech = config.speech if config is not None else SpeechConfig()
    found: list[ItemCheck] = [
        lambda items: check_catalogues(),
        lambda items: check_prompts(items, folders), lambda items: check_entries(items, numbers),
        lambda items: check_languages(items, speech),
    ]
    if config is not None and config.path is not None:
        found.append(lambda items: check_numbers(items, config))
        found.append(lambda items: check_directories(items, config))
    return found


# --------------------------------------------------------------------------- numbers


def number_key(numbers: NumbersConfig) -> Callable[[str], str]:
    """Called number -> the form a flow's ``number`` lines are matched in.

    Without a country: digits only, ``+`` and ``00`` dropped (``+41 43``, ``004143``, ``4143``
    compare equal).  With one: a national number (trunk prefix 0, not 00) also gets the country
    code, so ``0435435570``, ``+41435435570`` and ``0041435435570`` all match each other.
    """
    code = numbers.country_code
    if not code:
        return normalize_number

    def key(number: str) -> str:
        digits = normalize_number(number)
        if _national(number):
            return code + digits[1:]
        return digits

    return key


def check_entries(items: Sequence[ast.Item], numbers: NumbersConfig) -> list[Diagnostic]:
    """Two ``number`` lines, written differently, that a call matches alike but that go to different steps."""
    key = number_key(numbers)
    first: dict[str, tuple[str, ast.NumberEntry]] = {}
    out: list[Diagnostic] = []
    for item in items:
        if not isinstance(item, ast.NumberEntry):
            continue
        for number in item.numbers:
            if number == "default" or not key(number):
                continue
            written, entry = first.setdefault(key(number), (number, item))
            if written != number and entry.step != item.step:
                out.append(Diagnostic(
                    "error", f"number {number} is the same as {written}, bound to '{entry.step}' and '{item.step}'",
                    item.pos, _same_number_hint(numbers, written, number, entry.pos),
                ))
    return out


def _same_number_hint(numbers: NumbersConfig, one: str, other: str, first: SourcePos) -> str:
    if numbers.country and (_national(one) or _national(other)):
        why = f"with [numbers] country = \"{numbers.country}\" a national number and its international form are one"
    else:
        why = "+41..., 0041... and 41... are one number"
    return f"{why}; the first is at {first}"


def _national(number: str) -> bool:
    text = number.strip()
    if "@" in text:
        text = text.split("@", 1)[0].removeprefix("sip:").removeprefix("sips:")
    digits = re.sub(r"[^\d+]", "", text)
    return digits.startswith("0") and not digits.startswith("00")


# --------------------------------------------------------------------------- prompt files


def check_prompts(items: Sequence[ast.Item], folders: Sequence[Path]) -> list[Diagnostic]:
    """Prompt files a flow plays that are missing, lead outside the folders or do not play."""
    if not folders:
        return []
    out: list[Diagnostic] = []
    for path, pos, folder_ok in prompt_paths(items):
        if not path or "{" in path or path.startswith("data:") or os.path.isabs(path) or ".." in Path(path).parts:
            continue  # decided at run time, or already an error of the flow itself
        out.extend(_prompt_file(path, pos, folder_ok, folders))
    return out


def _prompt_file(path: str, pos: SourcePos, folder_ok: bool, folders: Sequence[Path]) -> list[Diagnostic]:
    for folder in folders:
        candidate = folder / path
        if not (candidate.is_file() or (folder_ok and candidate.is_dir())):
            continue
        try:
            candidate.resolve().relative_to(folder.resolve())
        except ValueError:
            return [Diagnostic("error", "prompt path escapes the prompt folders", pos,
                               "a symbolic link leads outside the prompt folder")]
        return _prompt_audio(folder, path, pos)
    shown = ", ".join(str(f) for f in folders)
    return [Diagnostic("warning", f"prompt file not found: {path}", pos, f"looked in {shown}")]


def _prompt_audio(folder: Path, path: str, pos: SourcePos) -> list[Diagnostic]:
    """A prompt that exists must play: a readable audio file, or a folder holding some."""
    store = PromptStore([folder])
    if (folder / path).is_dir():
        if not store.audio_files(path):
            return [Diagnostic("error", f"no audio files in prompt folder: {path}", pos,
                               "put WAV, FLAC or OGG files in it")]
        return []
    problem = store.check(path)
    return [Diagnostic("error", f"prompt file is not playable: {path}", pos, problem)] if problem else []


# --------------------------------------------------------------------------- extensions, mailboxes, trunks


def check_numbers(items: Sequence[ast.Item], config: Config) -> list[Diagnostic]:
    """Numbers a flow dials or mailboxes it uses that the deployment file does not provide (warnings)."""
    name = Path(config.path or "").name
    out: list[Diagnostic] = []
    for number, pos, what in dialled(items):
        if what == "mailbox":
            if config.mailbox(number) is None:
                out.append(Diagnostic("warning", f"mailbox {number} is not in {name}", pos,
                                      "add it under [[mailboxes]]"))
        elif number.startswith("+"):
            if not any(fnmatch.fnmatchcase(number, p) for t in config.trunks for p in t.allow):
                out.append(Diagnostic("warning", f"no trunk in {name} allows calls to {number}", pos,
                                      "add the number or a pattern like \"+4179*\" to a trunk's allow list"))
        elif config.extension(number) is None:
            out.append(Diagnostic("warning", f"extension {number} is not in {name}", pos,
                                  "add it under [[extensions]]"))
    return out


# --------------------------------------------------------------------------- languages


def check_catalogues() -> list[Diagnostic]:
    """ivr's message catalogues, loaded and checked now: a broken one is an error before any call."""
    try:
        all_catalogues()
    except CatalogueError as exc:
        where = SourcePos(str(exc.path or MESSAGES), 1, 1)
        return [Diagnostic("error", str(exc), where, "fix the catalogue file (docs/languages.md, The catalogue)")]
    return []


def check_languages(items: Sequence[ast.Item], speech: SpeechConfig) -> list[Diagnostic]:
    """Languages a flow speaks without a message catalogue, and languages its calls can listen for
    speech in without a recogniser (a step that listens, reached after the language was set);
    first of all, ivr's own catalogues must load."""
    out = check_catalogues()
    if out:
        return out
    for language, pos in _languages_written(items):
        if not known(language):
            out.append(Diagnostic(
                "warning", f"language {language!r} has no message catalogue: ivr's own sentences are spoken in English",
                pos, f"ivr speaks {', '.join(languages())} (docs/languages.md says how to add one)",
            ))
    for language, pos in _languages_listened_in(items):
        if not has_recognizer(speech, language):
            base = base_language(language)
            out.append(Diagnostic(
                "warning", f"no speech recognizer for language {language!r}: its calls offer keys only", pos,
                f'name a vosk model folder for it under [speech.models], like {base} = "models/vosk-model-small-{base}"',
            ))
    return out


def _languages_written(items: Sequence[ast.Item]) -> Iterator[tuple[str, SourcePos]]:
    """Each ``language X`` setting and constant ``set language = "X"``, once per language."""
    seen: set[str] = set()
    for node in _nodes(items):
        value = _language_set(node)
        if value and base_language(value) not in seen:
            seen.add(base_language(value))
            yield value, _where(node)


def _language_set(node: object) -> str:
    """The constant language a ``language`` setting or ``set language = "..."`` names, else ""."""
    if isinstance(node, ast.Setting) and node.key == "language":
        return node.value
    if isinstance(node, ast.Set) and node.name == "language" and isinstance(node.value, ast.Str):
        return "" if "{" in node.value.text else node.value.text
    return ""


def _where(node: ast.Node) -> SourcePos:
    return (node.value_pos if isinstance(node, ast.Setting) else None) or node.pos


Language = tuple[str, SourcePos]  # a language and where the flow chose it


def _languages_listened_in(items: Sequence[ast.Item]) -> list[Language]:
    """Each language (once) some step that listens for speech can be reached in: a walk over the
    steps from the entry points, the language changing at each step that sets it."""
    steps = {i.name: i for i in items if isinstance(i, ast.Step | ast.Menu | ast.Collect | ast.Group | ast.Sub)}
    default = [(v, _where(i)) for i in items if (v := _language_set(i))][:1] or [
        (v, _where(i)) for i in items if isinstance(i, ast.Setting) and i.key == "voice" and (v := language_of_voice(i.value))
    ][:1]
    todo = [(i.step, lang) for i in items if isinstance(i, ast.NumberEntry) for lang in default]
    seen: set[tuple[str, str]] = set()
    found: dict[str, Language] = {}
    while todo:
        name, (language, pos) = todo.pop()
        step = steps.get(name)
        if step is None or (name, base_language(language)) in seen:
            continue
        seen.add((name, base_language(language)))
        chosen = [(v, _where(n)) for n in _nodes(step) if (v := _language_set(n))]
        if _listens(step):
            for lang in [(language, pos), *chosen]:
                found.setdefault(base_language(lang[0]), lang)
        after = chosen[-1] if chosen else (language, pos)
        todo += [(target, after) for target in _step_refs(step)]
    return list(found.values())


def _listens(step: ast.Node) -> bool:
    return any(
        (isinstance(n, ast.Choice) and bool(n.phrase or n.any_speech)) or (isinstance(n, ast.Directory) and n.by_speech)
        for n in _nodes(step)
    )


def _step_refs(step: ast.Node) -> Iterator[str]:
    for n in _nodes(step):
        if isinstance(n, ast.Goto):
            yield n.step
        elif isinstance(n, ast.Call):
            yield n.sub
        elif isinstance(n, ast.GroupRef):
            yield n.name


def _nodes(node: object) -> Iterator[ast.Node]:
    """Every syntax-tree node under ``node`` (a node, or a sequence of them), depth first."""
    if isinstance(node, list | tuple):
        for child in node:
            yield from _nodes(child)
    elif isinstance(node, ast.Node):
        yield node
        for f in fields(node):
            yield from _nodes(getattr(node, f.name))


# --------------------------------------------------------------------------- directories


def check_directories(items: Sequence[ast.Item], config: Config) -> list[Diagnostic]:
    """People in a flow's directory files whose extension or mailbox the deployment lacks (errors)."""
    name = Path(config.path or "").name
    groups = {i.name for i in items if isinstance(i, ast.Group)}
    extensions = {e.number for e in config.extensions} | groups
    mailboxes = {m.number for m in config.mailboxes}
    out: list[Diagnostic] = []
    for source in _directory_sources(items):
        path = Path(source.pos.file).parent / source.path
        if not path.is_file():
            continue  # the flow's own check warns about a missing file
        try:
            book = load_directory(path, name=source.name)
        except DirectoryError as exc:
            out.append(Diagnostic("warning", f"directory {source.name}: {exc.message}",
                                  SourcePos(str(path), max(exc.line, 1), 1)))
            continue
        for person in book.people:
            pos = SourcePos(str(path), max(person.line, 1), 1)
            if person.extension not in extensions:
                out.append(Diagnostic("error", f"{person.display_name}: extension {person.extension} is not in {name}",
                                      pos, "add it under [[extensions]], or correct the directory file"))
            if person.mailbox and person.mailbox not in mailboxes:
                out.append(Diagnostic("error", f"{person.display_name}: mailbox {person.mailbox} is not in {name}",
                                      pos, "add it under [[mailboxes]], or correct the directory file"))
    return out


def _directory_sources(items: Sequence[ast.Item]) -> Iterator[ast.DirectorySource]:
    seen: set[str] = set()
    for item in items:
        if isinstance(item, ast.DirectorySource) and item.name not in seen:
            seen.add(item.name)
            yield item
