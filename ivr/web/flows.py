"""The flows in the console: list, source, picture, check an edited text, deploy it.

Only the flow files the server was started with (``server.flows`` or the command line) can be
edited, named by their file name: a name from a request is looked up in that list, never joined
to a path, so no request reaches a file outside them.  A check writes the edited text to a
hidden temporary file beside the original (so its ``include`` lines resolve as they will when
deployed), runs the deployment's own check on the flows with that file in the original's place,
and reports each problem as ``file:line:col`` under the original's name.  A deploy checks the
same way, and only a text without errors replaces the file (atomically) and is reloaded with the
reloader SIGHUP uses; the answer carries the reload's record.  A text with errors is answered
422 with its diagnostics and the deployed flow is not touched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from ivr.dsl.errors import Diagnostic
from ivr.dsl.graph import GraphError, render
from ivr.runtime.atomic import write_text_atomically
from ivr.runtime.deployment import check_flow
from ivr.web.routes import ApiError, Route, text_body
from ivr.web.state import CONSOLE, Console

API = "/api/v1"


async def flow_path(console: Console, name: str) -> tuple[Path, list[Path]]:
    """The flow file named ``name`` among those the server runs, and all of them."""
    files = await console.flow_files()
    for path in files:
        if path.name == name:
            return path, files
    raise ApiError(404, f"no deployed flow named {name!r} (flows: {', '.join(p.name for p in files)})")


def diagnostic_dict(d: Diagnostic, shown: dict[str, str]) -> dict[str, Any]:
    file = shown.get(d.pos.file, Path(d.pos.file).name)
    return {"file": file, "line": d.pos.line, "column": d.pos.column, "severity": d.severity,
            "message": d.message, "hint": d.hint, "text": f"{file}:{d.pos.line}:{d.pos.column}: {d.severity}: "
            f"{d.message}" + (f" (hint: {d.hint})" if d.hint else "")}


def check_text(console: Console, path: Path, files: list[Path], text: str) -> list[dict[str, Any]]:
    """The diagnostics of the flows with ``text`` in place of ``path`` (a worker thread's job)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".check", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        paths = [Path(tmp) if p == path else p for p in files]
        config = console.config
        diagnostics = check_flow(paths, prompt_folders=config.prompt_folders, config=config)
    finally:
        Path(tmp).unlink(missing_ok=True)
    shown = {tmp: path.name, str(Path(tmp).resolve()): path.name}
    return [diagnostic_dict(d, shown) for d in diagnostics]


async def list_flows(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    loaded = await console.ask("flows")
    files = [Path(p) for p in loaded["files"]]
    return web.json_response({
        "flows": [{"name": p.name, "size": p.stat().st_size if p.exists() else None} for p in files],
        "entries": loaded["entries"], "steps": loaded["steps"], "reload": loaded["reload"],
    })


async def flow_source(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    path, _ = await flow_path(console, request.match_info["name"])
    return web.Response(text=await console.blocking(path.read_text, "utf-8"), content_type="text/plain")


def _svg(dot: str) -> str:
    with tempfile.TemporaryDirectory(prefix="ivr-graph-") as folder:
        out = Path(folder) / "flow.svg"
        render(dot, out)
        return out.read_text(encoding="utf-8")


async def flow_graph(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    dot = await console.ask("graph")  # the flows the server runs, as `ivr graph` draws them
    try:
        svg = await console.blocking(_svg, dot)
    except (GraphError, OSError) as exc:
        raise ApiError(503, f"cannot draw the flows: {exc}") from None
    return web.Response(text=svg, content_type="image/svg+xml")


async def check_flow_text(console: Console, name: str, text: str) -> list[dict[str, Any]]:
    """The diagnostics of ``text`` as flow file ``name`` (nothing is written)."""
    path, files = await flow_path(console, name)
    return await console.blocking(check_text, console, path, files, text)


async def deploy_flow_text(console: Console, name: str, text: str) -> dict[str, Any]:
    """Check, write and reload; ApiError 422 with the diagnostics when the text has errors."""
    path, files = await flow_path(console, name)
    diagnostics = await console.blocking(check_text, console, path, files, text)
    if any(d["severity"] == "error" for d in diagnostics):
        raise ApiError(422, f"{path.name} has errors: not deployed", diagnostics=diagnostics)
    await console.blocking(write_text_atomically, path, text)
    return {"deployed": path.name, "diagnostics": diagnostics, "reload": await reload(console)}


async def reload(console: Console) -> dict[str, Any]:
    """Reload the server as SIGHUP does (after a deploy, a directory change); the reload's record."""
    return await console.ask("reload")  # the reloader SIGHUP uses, in ivr serve


async def check(request: web.Request) -> web.Response:
    diagnostics = await check_flow_text(request.app[CONSOLE], request.match_info["name"], await text_body(request))
    ok = not any(d["severity"] == "error" for d in diagnostics)
    return web.json_response({"ok": ok, "diagnostics": diagnostics})


async def deploy(request: web.Request) -> web.Response:
    result = await deploy_flow_text(request.app[CONSOLE], request.match_info["name"], await text_body(request))
    status = 200 if result["reload"].get("event") == "reloaded" else 500
    return web.json_response(result, status=status)


DIAGNOSTICS = {"type": "object", "properties": {
    "ok": {"type": "boolean"},
    "diagnostics": {"type": "array", "items": {"type": "object", "properties": {
        "file": {"type": "string"}, "line": {"type": "integer"}, "column": {"type": "integer"},
        "severity": {"type": "string"}, "message": {"type": "string"}, "hint": {"type": "string"},
        "text": {"type": "string"}}}}}}

ROUTES = (
    Route("GET", f"{API}/flows", list_flows, "the deployed flow files and the last reload", "admin", "flows"),
    Route("GET", f"{API}/flows/graph.svg", flow_graph, "the running flows' states and transitions as SVG",
          "admin", "flows", produces="image/svg+xml"),
    Route("GET", f"{API}/flows/{{name}}", flow_source, "a flow file's source", "admin", "flows",
          produces="text/plain"),
    Route("POST", f"{API}/flows/{{name}}/check", check, "check an edited text of a flow file (nothing is written)",
          "admin", "flows", body_type="text/plain", response=DIAGNOSTICS),
    Route("PUT", f"{API}/flows/{{name}}", deploy, "deploy a flow file: check, write, reload (422 with the "
          "diagnostics when it has errors, nothing written)", "admin", "flows", body_type="text/plain"),
)
