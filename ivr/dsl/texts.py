"""The constant texts a compiled flow speaks, so they can be rendered before the first call.

:func:`texts_of` lists every ``say`` text without ``{variables}``, with the
voice and rate it is spoken in; ``ivr prompts render`` and ``ivr serve`` at
start-up hand the list to the TTS engine (:mod:`ivr.media.tts`), so no caller
waits for synthesis.  Texts with variables depend on the call and are
rendered at call time.  :func:`languages_of` is every language the flow speaks in, :func:`said_in` the languages each text
is said in (for ivr's own sentences, which
come in the call's language).  :func:`program_nodes` is the walk over a compiled flow's records
that this and the server's start-up (hold music, speech) share.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ivr.dsl.events import Say

_VARIABLE = re.compile(r"\{[a-z_][a-z0-9_]*\}")


def texts_of(program: Any) -> list[tuple[str, str | None, int | None]]:
    """Every constant ``say`` text of a compiled flow, with its voice and rate (None: the default).

    Walks the program's state tables for :class:`~ivr.dsl.events.Say` actions (and any
    frozen record with a ``text`` field named like a say statement); texts with
    ``{variables}`` depend on the call and are left out.  Duplicates are listed once.
    """
    settings = getattr(program, "settings", None)
    default_voice = _opt_str(getattr(settings, "voice", None))
    default_rate = _opt_int(getattr(settings, "rate", None))
    found: dict[tuple[str, str | None, int | None], None] = {}
    for node in program_nodes(program):
        text = _text_of(node)
        if text is None or _VARIABLE.search(text) or not text.strip():
            continue
        voice = _opt_str(getattr(node, "voice", None)) or default_voice
        rate = _opt_int(getattr(node, "rate", None)) or default_rate
        found[(text, voice, rate)] = None
    return list(found)


def languages_of(program: Any) -> list[str]:
    """Every language a flow speaks, as written: its ``language`` line ("" when it has none) and
    each constant ``set language = "..."``, in order, once each."""
    settings = getattr(program, "settings", None)
    found = {str(getattr(settings, "language", "") or ""): None}
    for node in program_nodes(program):
        if type(node).__name__ == "AssignOp" and node.name == "language":
            text = getattr(node.value, "text", None)
            if isinstance(text, str) and not _VARIABLE.search(text):
                found[text] = None
    return list(found)


def said_in(program: Any) -> dict[str, set[str]]:
    """Each constant ``say`` text -> the languages (as written; "" for none) a call can be in when it
    says it: a walk over the state table from the entry points, the language changing at each
    constant ``set language``.  A text the walk never reaches is left out."""
    states = getattr(program, "states", {})
    start = str(getattr(getattr(program, "settings", None), "language", "") or "")
    todo = [(name, start) for name in dict.fromkeys(getattr(program, "entries", {}).values())]
    seen: set[tuple[str, str]] = set()
    found: dict[str, set[str]] = {}
    while todo:
        name, language = todo.pop()
        state = states.get(name)
        if state is None or (name, language) in seen:
            continue
        seen.add((name, language))
        op = state.op
        text = _text_of(getattr(op, "prompt", None))
        if text is not None and not _VARIABLE.search(text):
            found.setdefault(text, set()).add(language)
        if getattr(op, "name", None) == "language" and isinstance(getattr(op.value, "text", None), str):
            language = language if _VARIABLE.search(op.value.text) else op.value.text
        todo += [(target, language) for target in state.transitions.values()]
    return found


def _text_of(node: Any) -> str | None:
    """The text of a say action or statement (``text`` a str, or a string node with ``.text``)."""
    if not _is_say(node):
        return None
    text = getattr(node, "text", None)
    if not isinstance(text, str):
        text = getattr(text, "text", None)
    return text if isinstance(text, str) else None


def _is_say(node: Any) -> bool:
    return isinstance(node, Say) or type(node).__name__.lower() in {
        "say",
        "saystmt",
        "saystatement",
        "sayprompt",
        "ask",
    }


def program_nodes(program: Any) -> Iterator[Any]:
    """Every record (dataclass) reachable from a compiled flow's state tables, each once, in order:
    states, their ops, actions and options."""
    for node in _walk(getattr(program, "states", program), set()):
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            yield node


def _walk(node: Any, seen: set[int]) -> Iterable[Any]:
    if isinstance(node, str | bytes | int | float | bool) or node is None or id(node) in seen:
        return
    seen.add(id(node))
    yield node
    if isinstance(node, Mapping):
        children: Iterable[Any] = node.values()
    elif isinstance(node, list | tuple | set | frozenset):
        children = node
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        children = (getattr(node, f.name, None) for f in dataclasses.fields(node))
    else:
        return
    for child in children:
        yield from _walk(child, seen)


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

