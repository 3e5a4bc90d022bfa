"""The console process: the aiohttp application, started by ``ivr serve`` as ``python -m ivr.web``.

``ivr serve`` (:class:`ivr.runtime.companion.ConsoleProcess`) binds ``[http] listen``, starts
this process with the listening socket and one end of a control socket, restarts it if it
exits and stops it with SIGTERM after its drain.  :func:`serve` serves HTTP (TLS when
``tls_cert`` is set) on the inherited socket until then, or until the control socket closes.
bench/console_load.py measures what the console costs the media clock.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import signal
import socket
import ssl
import sys
from typing import Any

from aiohttp import web

from ivr import __version__
from ivr.config import Config, ConfigError, HttpConfig, load_config
from ivr.web import api, auth, directory, events, pages, uploads
from ivr.web.link import ServerLink
from ivr.web.metrics import Metrics
from ivr.web.routes import ApiError, Route, add_routes, openapi
from ivr.web.sessions import Session
from ivr.web.state import CONSOLE, Console
from ivr.web.users import WebUser

API_ROUTES: tuple[Route, ...] = (*auth.ROUTES, *api.ROUTES, *uploads.ROUTES, *directory.ROUTES, *events.ROUTES)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi(API_ROUTES, __version__))


async def api_docs(request: web.Request) -> web.Response:
    """A readable page of the same document: one section per endpoint."""
    doc = openapi(API_ROUTES, __version__)
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            content: dict[str, Any] = op.get("requestBody", {}).get("content", {})
            schema = next(iter(content.values())).get("schema") if content else None
            rows.append(
                f"<section><h2><code>{method.upper()} {html.escape(path)}</code></h2>"
                f"<p>{html.escape(op['summary'])} <em>({op['x-role']})</em></p>"
                + "".join(f"<p><code>?{html.escape(p['name'])}</code> {html.escape(p.get('description', ''))}</p>"
                          for p in op["parameters"] if p["in"] == "query")
                + (f"<pre>{html.escape(json.dumps(schema, indent=2))}</pre>" if schema else "")
                + "</section>"
            )
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>ivr API</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}pre{background:#f4f4f4;padding:.5em}"
        "</style></head><body><h1>ivr console API v1</h1><p>The machine-readable document: "
        "<a href=/api/v1/openapi.json>/api/v1/openapi.json</a>. Log in with <code>POST /api/v1/login</code> "
        "(then send <code>X-CSRF-Token</code> on every change) or send <code>Authorization: Bearer TOKEN</code> "
        "(<code>ivr web token USER</code>).</p>" + "".join(rows) + "</body></html>"
    )
    return web.Response(text=page, content_type="text/html")


def metrics_access(http: HttpConfig, user: WebUser | None, session: Session | None) -> None:
    """Open on loopback; on any other address an admin's API token (``Authorization: Bearer``) is needed.

    A session cookie does not count: a scraper is not a browser, and a token can be revoked alone.
    """
    if http.loopback:
        return
    if user is None or session is not None:
        raise ApiError(401, "/metrics on an address other than loopback needs an API token "
                            "(Authorization: Bearer TOKEN, from ivr web token)")
    if not user.admin:
        raise ApiError(403, "/metrics needs an admin's API token")


async def metrics(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    metrics_access(console.config.http, request.get("user"), request.get("session"))
    snapshot = await console.ask("metrics")
    # In the console's worker thread: the voicemail index's SQLite read stays off the loop.
    body = await console.blocking(request.app[METRICS].render, snapshot)
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def build_app(console: Console, metrics_: Metrics, hub: events.EventHub) -> web.Application:
    app = web.Application(middlewares=[auth.guard], client_max_size=console.config.http.upload_limit)
    app[CONSOLE] = console
    app[METRICS] = metrics_
    app[events.HUB] = hub
    public = (
        Route("GET", "/api/v1/openapi.json", openapi_json, "this document", "public", "docs"),
        Route("GET", "/api/docs", api_docs, "the API's documentation", "public", "docs"),
        Route("GET", "/metrics", metrics, "Prometheus metrics (open on loopback; on another address an admin's "
              "API token)", "public", "metrics"),
    )
    routes = (*API_ROUTES, *public, *pages.ROUTES, *uploads.PAGES, *directory.PAGES)
    add_routes(app, routes)
    app[auth.ROUTE_TABLE] = {(r.method, r.path): r for r in routes}
    pages.add_static(app)
    return app


async def serve(config: Config, control: socket.socket, listening: socket.socket) -> int:
    """The console process: serve HTTP on ``listening`` until SIGTERM or until ``ivr serve`` goes away."""
    link = await ServerLink.open(control)
    console = Console(config, link)
    hub = events.EventHub()
    metrics_ = Metrics(console)
    link.listeners += [metrics_.counts.on_record, hub.on_record, console.on_record]
    runner = web.AppRunner(build_app(console, metrics_, hub), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, listening, ssl_context=_tls(config.http.tls_cert, config.http.tls_key))
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waits = [asyncio.create_task(stop.wait()), asyncio.create_task(link.closed.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in waits:
        task.cancel()
    hub.close()
    await runner.cleanup()
    link.close()
    await asyncio.to_thread(console.close)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m ivr.web``: started by ``ivr serve`` (ivr.runtime.companion), not by hand."""
    parser = argparse.ArgumentParser(prog="python -m ivr.web", description=main.__doc__)
    parser.add_argument("--config")
    parser.add_argument("--data")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--http-fd", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, data=args.data)
    except ConfigError as exc:
        print(f"ivr console: {exc}", file=sys.stderr)
        return 2
    control = socket.socket(fileno=args.control_fd)
    listening = socket.socket(fileno=args.http_fd)
    return asyncio.run(serve(config, control, listening))


def _tls(cert: object, key: object) -> ssl.SSLContext | None:
    if cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context
