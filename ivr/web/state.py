"""The console's view of one running ``ivr serve``: its server, sessions and users.

:class:`Console` is what every handler reaches through ``request.app[CONSOLE]``: the
:class:`~ivr.runtime.server.Server` (its current generation of services, its calls, its
reloader), the sessions, a way to run work on the server's loop (:meth:`Console.on_server`:
the console has its own loop and thread; what changes a call runs where the call lives), and
one worker thread for the slow, blocking work (argon2, SQLite reads, Graphviz).  Reading the
server from the console's thread is safe under the GIL: its dicts are copied with ``list()``
(one C-level step) before they are walked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
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

    def __init__(self, server: Server, server_loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.server_loop = server_loop  # the calls' loop; the console runs on its own
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

    async def on_server(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the server's loop (anything that changes a call or the flows) and wait for it."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self.server_loop))

    def hang_up_clicks(self) -> None:
        """Hang up the click-to-calls under way (on the server's loop: the server is stopping)."""
        for click in list(self.clicks.values()):
            click.hangup("shutdown")

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the console's worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)
