"""Audio uploaded in the console: mailbox greetings (a user's own) and recorded prompts (admins).

A greeting is one of a mailbox's kinds (unavailable, busy, temporary, name: docs/voicemail.md)
and lands where a greeting recorded by phone lands, through the voicemail store's own
:meth:`~ivr.voicemail.store.VoicemailStore.keep_greeting`; a greeting uploaded here takes the
same precedence over the deployment file's ``greetings = {...}``.  A prompt is a recording of
``LANG/ID.wav`` in the first prompt folder: ``de/voicemail.leave.saved_goodbye.wav`` replaces
that sentence's TTS (docs/languages.md), and a flow can ``play "de/welcome.wav"``.

An upload is a WAV file (``RIFF``/``WAVE``, any rate and channel count libsndfile reads); it is
converted with the prompts' own code (:func:`ivr.media.prompts.to_pcm16_8k`) to what playback
uses, 8 kHz mono 16-bit PCM, and written atomically.  Anything else is a 4xx with a JSON error
and changes nothing.  A request names a mailbox, a kind, a language and an id, each checked
against what the deployment defines or a strict pattern, never a path, and the file's resolved
place is checked to be inside the data or prompt folder before anything is written or read.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import soundfile
from aiohttp import web

from ivr.language import all_catalogues
from ivr.media.clip import RATE
from ivr.media.prompts import to_pcm16_8k
from ivr.voicemail.store import GREETINGS
from ivr.web.api import _box, console_of
from ivr.web.pages import _lang, _table, csrf_field, h, render
from ivr.web.routes import ApiError, Route
from ivr.web.state import Console
from ivr.web.users import WebUser

API = "/api/v1"
WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")
PROMPT_ID = re.compile(r"[a-z0-9][a-z0-9_-]*(\.[a-z0-9_-]+)*", re.IGNORECASE)
MAX_ID = 100
MIN_SECONDS = 0.1


# ------------------------------------------------------------------ the audio


def telephone_audio(data: bytes) -> np.ndarray:
    """An uploaded WAV file as 8 kHz mono int16 samples; ApiError 400 when it is not a usable WAV."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ApiError(400, "not a WAV file (expected a RIFF/WAVE header)")
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise ApiError(400, f"not a readable WAV file: {exc}") from None
    if len(samples) < MIN_SECONDS * rate:
        raise ApiError(400, f"the recording is shorter than {MIN_SECONDS:g} s")
    return to_pcm16_8k(samples, rate)


def write_wav(pcm: np.ndarray, dest: Path) -> None:
    """Write ``pcm`` as an 8 kHz 16-bit WAV at ``dest``, atomically (a temporary file beside it, renamed)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".upload", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            soundfile.write(f, pcm, RATE, subtype="PCM_16", format="WAV")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def uploaded_wav(request: web.Request) -> bytes:
    """The WAV file of a request: an ``audio/wav`` body (the API) or a form's ``file`` field (a page)."""
    if request.content_type == "multipart/form-data":
        form = await request.post()
        field = form.get("file")
        if not isinstance(field, web.FileField):
            raise ApiError(400, "choose a WAV file to upload")
        return bytes(field.file.read())
    if request.content_type not in WAV_TYPES:
        raise ApiError(415, f"expected a WAV file (Content-Type: audio/wav), got {request.content_type!r}")
    return await request.read()


def _inside(path: Path, folder: Path) -> Path:
    """``path`` resolved, if it stays inside ``folder``; ApiError 400 otherwise (a symlink leading out)."""
    real = path.resolve()
    if not real.is_relative_to(folder.resolve()):
        raise ApiError(400, "that name leads outside the data and prompt folders")
    return real


# ------------------------------------------------------------------ greetings


def _kind(request: web.Request) -> str:
    kind = request.match_info["kind"]
    if kind not in GREETINGS:
        raise ApiError(404, f"no greeting kind {kind!r}; one of {', '.join(GREETINGS)}")
    return kind


def greeting_file(console: Console, box: str, kind: str) -> Path:
    store = console.voicemail_store
    return _inside(store.greeting_path(box, kind), store.root)


def greetings_of(console: Console, box: str) -> dict[str, bool]:
    return {kind: greeting_file(console, box, kind).is_file() for kind in GREETINGS}


async def list_greetings(request: web.Request) -> web.Response:
    box = _box(request)
    console = console_of(request)
    return web.json_response({"mailbox": box, "greetings": await console.blocking(greetings_of, console, box)})


def store_greeting(console: Console, box: str, kind: str, data: bytes) -> None:
    """Convert an uploaded WAV and put it in place of ``box``'s ``kind`` greeting (a worker thread's job)."""
    pcm = telephone_audio(data)
    store = console.voicemail_store
    greeting_file(console, box, kind)  # checked before anything is written
    draft = store.greeting_draft(box, kind)
    write_wav(pcm, draft)
    store.keep_greeting(box, kind, draft)


async def upload_greeting(request: web.Request) -> web.Response:
    box, kind = _box(request), _kind(request)
    console = console_of(request)
    data = await uploaded_wav(request)
    await console.blocking(store_greeting, console, box, kind, data)
    return web.json_response({"mailbox": box, "greetings": await console.blocking(greetings_of, console, box)})


async def greeting_audio(request: web.Request) -> web.StreamResponse:
    box, kind = _box(request), _kind(request)
    path = greeting_file(console_of(request), box, kind)
    if not path.is_file():
        raise ApiError(404, f"mailbox {box} has no {kind} greeting")
    return web.FileResponse(path, headers={"Content-Type": "audio/wav", "Cache-Control": "no-store"})


async def delete_greeting(request: web.Request) -> web.Response:
    box, kind = _box(request), _kind(request)
    console = console_of(request)
    store = console.voicemail_store
    greeting_file(console, box, kind)
    await console.blocking(store.remove_greeting, box, kind)
    return web.json_response({"mailbox": box, "greetings": await console.blocking(greetings_of, console, box)})


# ------------------------------------------------------------------ prompts


def prompt_folder(console: Console) -> Path:
    folders = console.config.prompt_folders
    if not folders:
        raise ApiError(409, "the deployment has no prompt folders ([prompts] folders)")
    return Path(folders[0]).resolve()


def prompt_file(console: Console, language: str, prompt_id: str) -> Path:
    """Where ``LANG/ID.wav`` sits in the first prompt folder; ApiError 400/404 for a name that is not one."""
    if language not in all_catalogues():
        raise ApiError(404, f"no language {language!r}; one of {', '.join(sorted(all_catalogues()))}")
    if len(prompt_id) > MAX_ID or not PROMPT_ID.fullmatch(prompt_id):
        raise ApiError(400, f"a prompt id is letters, digits, '_', '-' and inner dots (at most {MAX_ID}), "
                            f"like voicemail.leave.saved_goodbye; got {prompt_id!r}")
    folder = prompt_folder(console)
    return _inside(folder / language / f"{prompt_id}.wav", folder)


def _prompt_params(request: web.Request) -> tuple[str, str]:
    return request.match_info["lang"], request.match_info["id"]


def prompts_of(console: Console) -> list[dict[str, Any]]:
    """The uploaded (or copied) recordings, by language, with the catalogue sentence each replaces."""
    folder = prompt_folder(console)
    out = []
    for language, catalogue in sorted(all_catalogues().items()):
        sub = folder / language
        files = sorted(sub.glob("*.wav")) if sub.is_dir() else []
        for path in files:
            prompt_id = path.stem
            if not PROMPT_ID.fullmatch(prompt_id) or not path.resolve().is_relative_to(folder):
                continue
            sentence = catalogue.say(prompt_id) if prompt_id in catalogue.ids() and catalogue.constant(prompt_id) \
                else None
            out.append({"language": language, "id": prompt_id, "sentence": sentence,
                        "path": f"{language}/{prompt_id}.wav"})
    return out


async def list_prompts(request: web.Request) -> web.Response:
    console = console_of(request)
    return web.json_response({"prompts": await console.blocking(prompts_of, console)})


def store_prompt(console: Console, language: str, prompt_id: str, data: bytes) -> dict[str, Any]:
    path = prompt_file(console, language, prompt_id)
    write_wav(telephone_audio(data), path)
    return {"language": language, "id": prompt_id, "path": f"{language}/{prompt_id}.wav"}


async def upload_prompt(request: web.Request) -> web.Response:
    console = console_of(request)
    language, prompt_id = _prompt_params(request)
    prompt_file(console, language, prompt_id)  # a bad name is refused before the body is read
    data = await uploaded_wav(request)
    return web.json_response(await console.blocking(store_prompt, console, language, prompt_id, data))


async def prompt_audio(request: web.Request) -> web.StreamResponse:
    path = prompt_file(console_of(request), *_prompt_params(request))
    if not path.is_file():
        raise ApiError(404, "no such prompt recording")
    return web.FileResponse(path, headers={"Content-Type": "audio/wav", "Cache-Control": "no-store"})


async def delete_prompt(request: web.Request) -> web.Response:
    path = prompt_file(console_of(request), *_prompt_params(request))
    if not path.is_file():
        raise ApiError(404, "no such prompt recording")
    path.unlink()
    language, prompt_id = _prompt_params(request)
    return web.json_response({"language": language, "id": prompt_id, "deleted": True})


# ------------------------------------------------------------------ the table

GREETINGS_ANSWER = {"type": "object", "properties": {
    "mailbox": {"type": "string"},
    "greetings": {"type": "object", "properties": {k: {"type": "boolean"} for k in GREETINGS}}}}
PROMPT = {"type": "object", "properties": {"language": {"type": "string"}, "id": {"type": "string"},
                                           "sentence": {"type": ["string", "null"]}, "path": {"type": "string"}}}
WAV = "audio/wav"
GREETING = f"{API}/mailboxes/{{box}}/greetings"
PROMPTS = f"{API}/prompts"

ROUTES: tuple[Route, ...] = (
    Route("GET", GREETING, list_greetings, "which greetings a mailbox has (unavailable, busy, temporary, name)",
          "user", "voicemail", response=GREETINGS_ANSWER),
    Route("PUT", f"{GREETING}/{{kind}}", upload_greeting, "upload a greeting (a WAV file, converted to 8 kHz "
          "mono); it replaces the one recorded by phone", "user", "voicemail", body_type=WAV,
          response=GREETINGS_ANSWER),
    Route("GET", f"{GREETING}/{{kind}}/audio", greeting_audio, "a greeting's audio", "user", "voicemail",
          produces=WAV),
    Route("DELETE", f"{GREETING}/{{kind}}", delete_greeting, "remove a greeting", "user", "voicemail",
          response=GREETINGS_ANSWER),
    Route("GET", PROMPTS, list_prompts, "the recorded prompts (LANG/ID.wav) in the first prompt folder",
          "admin", "prompts", response={"type": "object", "properties": {"prompts": {"type": "array",
                                                                                     "items": PROMPT}}}),
    Route("PUT", f"{PROMPTS}/{{lang}}/{{id}}", upload_prompt, "upload a prompt recording as LANG/ID.wav (a WAV "
          "file, converted to 8 kHz mono); ID may be a catalogue sentence's id", "admin", "prompts",
          body_type=WAV, response=PROMPT),
    Route("GET", f"{PROMPTS}/{{lang}}/{{id}}/audio", prompt_audio, "a prompt recording's audio", "admin",
          "prompts", produces=WAV),
    Route("DELETE", f"{PROMPTS}/{{lang}}/{{id}}", delete_prompt, "delete a prompt recording", "admin", "prompts"),
)


# ------------------------------------------------------------------ the pages


def _notice(request: web.Request, t: dict[str, str]) -> str:
    saved = f'<p class=ok id=saved>{h(t["saved"])}</p>' if request.query.get("saved") else ""
    error = f'<p class=error id=error>{h(request.query["error"])}</p>' if request.query.get("error") else ""
    return saved + error


def _upload_form(request: web.Request, action: str, t: dict[str, str], extra: str = "", ident: str = "") -> str:
    return (f'<form class=inline method=post enctype="multipart/form-data" action="{h(action)}">'
            f'{csrf_field(request)}{extra}<input type=file name=file accept=".wav,audio/wav" id="file{ident}"> '
            f'<button id="upload{ident}">{h(t["upload"])}</button></form>')


def _delete_form(request: web.Request, action: str, t: dict[str, str], ident: str) -> str:
    return (f'<form class=inline method=post action="{h(action)}">{csrf_field(request)}'
            f'<button id="remove{ident}">{h(t["delete"])}</button></form>')


async def greetings_page(request: web.Request) -> web.Response:
    t = _lang(request)
    console = console_of(request)
    user: WebUser = request["user"]
    parts = [f'<p>{h(t["greetings_help"])}</p>', _notice(request, t)]
    for box in [m for m in console.config.mailboxes if user.owns_mailbox(m.number)]:
        have = await console.blocking(greetings_of, console, box.number)
        rows = []
        for kind in GREETINGS:
            base = f"/console/greetings/{box.number}/{kind}"
            ident = f"-{box.number}-{kind}"
            player = (f'<audio controls preload=none id="play{h(ident)}" '
                      f'src="{API}/mailboxes/{h(box.number)}/greetings/{kind}/audio"></audio>'
                      + _delete_form(request, base + "/delete", t, ident)) if have[kind] else h(t["none"])
            rows.append([h(t[f"greeting_{kind}"]), player, _upload_form(request, base, t, ident=ident)])
        parts.append(f'<h2>{h(t["mailbox"])} {h(box.number)} {h(box.owner)}</h2>'
                     + _table([t["kind"], t["recording"], ""], rows, ""))
    return render(request, "greetings", "".join(parts))


def _back(page: str, error: ApiError | None = None) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(page + "?" + urlencode({"error": str(error)} if error else {"saved": "1"}))


async def greeting_submit(request: web.Request) -> web.StreamResponse:
    try:
        box, kind = _box(request), _kind(request)
        console = console_of(request)
        if request.path.endswith("/delete"):
            await console.blocking(console.voicemail_store.remove_greeting, box, kind)
        else:
            await console.blocking(store_greeting, console, box, kind, await uploaded_wav(request))
    except ApiError as exc:
        if exc.status in (401, 403, 404):
            raise
        raise _back("/greetings", exc) from None
    raise _back("/greetings")


async def prompts_page(request: web.Request) -> web.Response:
    t = _lang(request)
    console = console_of(request)
    try:
        prompts = await console.blocking(prompts_of, console)
    except ApiError as exc:
        return render(request, "prompts", f'<p class=error>{h(str(exc))}</p>')
    rows = [[h(p["language"]), f'<code class=prompt-id>{h(p["id"])}</code>', h(p["sentence"] or ""),
             f'<audio controls preload=none src="{PROMPTS}/{h(p["language"])}/{h(p["id"])}/audio"></audio>',
             _delete_form(request, f'/console/prompts/{p["language"]}/{p["id"]}/delete', t,
                          f'-{p["language"]}-{p["id"]}')] for p in prompts]
    english = all_catalogues()["en"]
    ids = "".join(f'<option value="{h(m)}">' for m in english.ids() if english.constant(m))
    languages = "".join(f'<option value="{h(lang)}">{h(lang)}</option>' for lang in sorted(all_catalogues()))
    form = (f'<form method=post enctype="multipart/form-data" action="/console/prompts">{csrf_field(request)}'
            f'<label>{h(t["language_name"])} <select name=lang id=prompt-lang>{languages}</select></label> '
            f'<label>{h(t["prompt_id"])} <input name=id id=prompt-id list=sentence-ids size=40></label>'
            f'<datalist id=sentence-ids>{ids}</datalist> '
            f'<input type=file name=file accept=".wav,audio/wav" id=prompt-file> '
            f'<button id=prompt-upload>{h(t["upload"])}</button></form>')
    body = (f'<p>{h(t["prompts_help"])}</p>{_notice(request, t)}{form}'
            + _table([t["language_name"], t["prompt_id"], t["sentence"], t["recording"], ""], rows, t["none"]))
    return render(request, "prompts", body)


async def prompt_submit(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    try:
        if "lang" in request.match_info:
            path = prompt_file(console, request.match_info["lang"], request.match_info["id"])
            if path.is_file():
                path.unlink()
        else:
            form = await request.post()
            language, prompt_id = str(form.get("lang", "")), str(form.get("id", "")).strip()
            await console.blocking(store_prompt, console, language, prompt_id, await uploaded_wav(request))
    except ApiError as exc:
        raise _back("/prompts", exc) from None
    raise _back("/prompts")


PAGES: tuple[Route, ...] = (
    Route("GET", "/greetings", greetings_page, "a user's greetings", "user", "pages"),
    Route("POST", "/console/greetings/{box}/{kind}", greeting_submit, "upload a greeting", "user", "pages"),
    Route("POST", "/console/greetings/{box}/{kind}/delete", greeting_submit, "remove a greeting", "user", "pages"),
    Route("GET", "/prompts", prompts_page, "prompt recordings", "admin", "pages"),
    Route("POST", "/console/prompts", prompt_submit, "upload a prompt", "admin", "pages"),
    Route("POST", "/console/prompts/{lang}/{id}/delete", prompt_submit, "delete a prompt", "admin", "pages"),
)
