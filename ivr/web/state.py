"""The console process's state: its deployment, its link to ``ivr serve``, storage, sessions.

:class:`Console` is what every handler reaches through ``request.app[CONSOLE]``.  What lives
in files and databases the console reads and writes itself, through the storage code the
server uses (:attr:`Console.storage`: the journal, the voicemail store, the switches; the
follow-me file; the users file; the flow files); what lives only in the server (its calls,
registrations, the flows it runs, reloads, counters) it asks over the control socket
(:meth:`Console.ask`, :mod:`ivr.web.link`).  One worker thread does the slow, blocking work
(argon2, SQLite reads, Graphviz).  The deployment file is read again when the server logs a
reload, so the console knows the same extensions and mailboxes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from ivr.config import Config, ConfigError, load_config
from ivr.runtime.forwarding import ForwardingError, read_forwarding
from ivr.runtime.journal import Journal
from ivr.storage import Storage, open_storage
from ivr.voicemail.store import VoicemailStore
from ivr.web.link import ServerLink
from ivr.web.sessions import Sessions

T = TypeVar("T")


class Console:
    """Shared state of the console process."""

    def __init__(self, config: Config, link: ServerLink) -> None:
        self.config = config
        self.link = link
        self.sessions = Sessions(config.http.session_lifetime)
        # One thread: at most one argon2 hash (64 MiB) and one SQLite read at a time.
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="ivr-web")
        self.storage: Storage = open_storage(config)
        self.voicemail_store = VoicemailStore.on(self.storage)
        self._journal: Journal | None = None

    @property
    def data(self) -> Path:
        return self.config.data

    async def ask(self, op: str, **args: Any) -> Any:
        """The server's answer to control operation ``op`` (ApiError when it refuses)."""
        return await self.link.ask(op, **args)

    @property
    def journal(self) -> Journal:
        """The call journal, read-only (opened on first use, in the worker thread)."""
        if self._journal is None:
            self._journal = Journal.reader(self.storage)
        return self._journal

    def forwarding(self) -> dict[str, tuple[str, ...]]:
        """The follow-me numbers set in the console (as the server reads them for a transfer)."""
        try:
            return read_forwarding(self.data)
        except ForwardingError:
            return {}

    async def flow_files(self) -> list[Path]:
        """The flow files the server runs (what a reload loads again)."""
        return [Path(p) for p in (await self.ask("flows"))["files"]]

    def on_record(self, record: dict[str, Any]) -> None:
        """A call log record: after a reload, read the deployment file again."""
        if record.get("event") == "reloaded" and self.config.path is not None:
            asyncio.get_running_loop().run_in_executor(self.executor, self._reread)

    def _reread(self) -> None:
        try:
            self.config = load_config(self.config.path, data=self.config.data)
        except ConfigError:
            pass  # the server reloaded this very file; a change since then waits for the next reload

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the console's worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        if self._journal is not None:
            self._journal.close()
        self.storage.close()


CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)
