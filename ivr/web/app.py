"""The HTTP side of ``ivr serve``: the aiohttp application and its start and stop.

:class:`WebConsole` is a :class:`~ivr.runtime.server.Companion` of the server: ``ivr serve``
hands it over when ``[http] listen`` is set, and the server starts it on its own event loop once
SIP is bound (``http_listening`` names the address; port 0 picks a free one) and stops it after
the drain.  It runs in the server's process, on its own thread and event loop: the API reads
the calls, the journal and the switches as they are, and what changes a call runs on the
server's loop.  bench/console_load.py measures what the console costs the media clock.
"""

from __future__ import annotations

import asyncio
import html
import json
import ssl
import sys
import threading
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ivr import __version__
from ivr.config import HttpConfig
from ivr.runtime.reload import RELOAD_SWITCH_INTERVAL
from ivr.web import api, auth, directory, events, pages, uploads
from ivr.web.metrics import Metrics
from ivr.web.routes import ApiError, Route, add_routes, openapi
from ivr.web.sessions import Session
from ivr.web.state import CONSOLE, Console
from ivr.web.users import WebUser

if TYPE_CHECKING:
    from ivr.runtime.server import Server

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
    metrics_access(request.app[CONSOLE].config.http, request.get("user"), request.get("session"))
    # In the console's worker thread: the registrar's and the voicemail index's SQLite reads
    # stay off the loop; what it reads of the calls is copied in one step under the GIL.
    body = await request.app[CONSOLE].blocking(request.app[METRICS].render)
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


class WebConsole:
    """The console's HTTP server, started and stopped by :class:`ivr.runtime.server.Server`.

    It runs on its own event loop in its own thread (``ivr-web``), so rendering a page or
    streaming events never holds up the server's loop, which paces every call's media; the
    GIL switch interval is lowered (as during a reload) so that the server's loop gets the GIL
    back within half a millisecond.  What changes a call (hang up, click-to-call, a reload)
    hops to the server's loop (:meth:`Console.on_server`).
    """

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.console: Console | None = None
        self.hub: events.EventHub | None = None
        self.address = ""
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None

    async def start(self, server: Server) -> None:
        sys.setswitchinterval(min(sys.getswitchinterval(), RELOAD_SWITCH_INTERVAL))
        loop = self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=loop.run_forever, name="ivr-web", daemon=True)
        self.thread.start()
        metrics_, hub = await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(self._start(server, asyncio.get_running_loop()), loop))
        server.calllog.listeners += [metrics_.counts.on_record, hub.on_record]
        server.calllog.server("http_listening", f"console on {self.address}", url=self.address)

    async def _start(self, server: Server, server_loop: asyncio.AbstractEventLoop) -> tuple[Metrics, events.EventHub]:
        """On the console's loop: the application and its listening socket."""
        settings = server.settings.config.http
        assert settings.listen is not None, "ivr serve starts the console only when [http] listen is set"
        console = self.console = Console(server, server_loop)
        hub = self.hub = events.EventHub(asyncio.get_running_loop())
        metrics_ = Metrics(server)
        self.runner = web.AppRunner(build_app(console, metrics_, hub), access_log=None, handle_signals=False)
        await self.runner.setup()
        host, port = settings.listen
        site = web.TCPSite(self.runner, host, port, ssl_context=_tls(settings.tls_cert, settings.tls_key))
        try:
            await site.start()
        except OSError as exc:
            server.calllog.server("http_error", f"cannot serve HTTP on {host}:{port}: {exc}")
            raise
        sockets = getattr(site._server, "sockets", None) or ()
        bound = sockets[0].getsockname() if sockets else (host, port)
        scheme = "https" if settings.tls else "http"
        self.address = f"{scheme}://{_host(bound[0])}:{bound[1]}"
        return metrics_, hub

    async def stop(self) -> None:
        if self.console is not None:
            self.console.hang_up_clicks()  # on the server's loop, where the calls live
        if self.loop is None or self.thread is None:
            return
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._stop(), self.loop))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _stop(self) -> None:
        if self.hub is not None:
            self.hub.close()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.console is not None:
            self.console.close()


def _tls(cert: object, key: object) -> ssl.SSLContext | None:
    if cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
