"""The console's view of one running ``ivr serve``: its server, sessions and users, on the server's loop.

:class:`Console` is what every handler reaches through ``request.app[CONSOLE]``: the
:class:`~ivr.runtime.server.Server` (its current generation of services, its calls, its
reloader), the sessions, and one worker thread for the slow, blocking work (argon2, SQLite reads,
Graphviz) so that the loop that paces every call's media never waits for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from ivr.config import Config
from ivr.runtime.clicktocall import ClickToCall
from ivr.runtime.services import Services
from ivr.web.sessions import Sessions

if TYPE_CHECKING:
    from ivr.runtime.server import Server

T = TypeVar("T")


class Console:
    """Shared state of the HTTP side of one server process."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.sessions = Sessions(server.settings.config.http.session_lifetime)
        # One thread: at most one argon2 hash (64 MiB) and one SQLite read at a time.
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="ivr-web")
        self.started = time.time()
        self.clicks: dict[str, ClickToCall] = {}  # click-to-calls under way, by the phone leg's Call-ID

    @property
    def config(self) -> Config:
        return self.server.settings.config

    @property
    def services(self) -> Services:
        services = self.server.services
        assert services is not None, "the console starts after the server's services"
        return services

    @property
    def data(self) -> Path:
        return self.config.data

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the console's worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def close(self) -> None:
        for click in list(self.clicks.values()):
            click.hangup("shutdown")
        self.executor.shutdown(wait=False, cancel_futures=True)


CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)
