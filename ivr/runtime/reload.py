"""Reloading ``ivr serve`` on SIGHUP: new calls get the new flows, running calls keep theirs.

This module owns the whole reload, in this order:

1. :class:`Reloader` takes the signal.  While the server drains it does nothing
   (``reload_skipped``); a signal during a reload queues one more reload after it
   (``reload_queued``), since the files may have changed again since they were read.
2. :func:`prepare_reload`, in a worker thread so calls keep their audio: re-read the
   deployment file (:attr:`~ivr.runtime.settings.ServeSettings.reread`), put back the
   settings a running process cannot change (:data:`RESTART_ONLY`), load and check the
   flows, pre-render their texts, and build the next generation of
   :class:`~ivr.runtime.services.Services` with its directories read and speech model
   loaded.  Anything wrong raises :class:`ReloadError`: ``reload_failed`` with the flow's
   ``file:line:col`` diagnostics, and nothing of the running server has changed.
3. The switch, on the loop: the server's settings, program and services become the new
   generation (running calls hold on to the one they started with), trunks are registered
   again if they changed, new hold music is decoded, and the records say what changed
   (``reload_ignored`` names the restart-only settings, then ``reloaded``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
from collections.abc import Iterator, Sized
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ivr.config import Config
from ivr.runtime.calllog import CallLog
from ivr.runtime.gcwatch import FullCollections
from ivr.runtime.prepare import music_sources, prepare_hold_music, prerender, warm
from ivr.runtime.services import Services, kept_engines
from ivr.runtime.settings import ServeSettings

if TYPE_CHECKING:
    from ivr.dsl.compiler import Program
    from ivr.runtime.overload import Admission

log = logging.getLogger("ivr.runtime.server")  # the server's logger: a reload is part of serving

# Settings a running process cannot change: its sockets, its data folder, its mail thread.
RESTART_ONLY = ("listen", "public_address", "data", "rtp_ports", "smtp", "storage")

# While a reload parses and compiles in a worker thread, the loop hands the GIL over at every
# sendto of the media clock and waits the switch interval (5 ms) to get it back: with 20 calls
# up, a 2,000-line flow's reload stalled the loop ~60 ms (loop_stall); with 0.5 ms mostly none
# (bench/serve_reload.py).
RELOAD_SWITCH_INTERVAL = 0.0005


class ReloadError(Exception):
    """A reload that cannot be used; ``fields`` go into the ``reload_failed`` record."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.fields = fields


@dataclass(frozen=True)
class PreparedReload:
    """Everything a reload built off the loop, ready to switch to."""

    settings: ServeSettings
    program: Program
    flows: tuple[Path, ...]
    services: Services
    texts: int  # say texts pre-rendered
    restart: tuple[str, ...]  # changed settings that only a restart applies (kept at their old values)
    changed: tuple[str, ...]  # sections of the deployment file that changed and were applied
    # Hold-music sources to decode before the switch (the ones the old generation has not):
    # found in the worker thread, since walking a large flow's tables takes the loop tens of ms.
    music: frozenset[str]


class Generations(Protocol):
    """What a reload reads and replaces in the server (:class:`ivr.runtime.server.Server`)."""

    settings: ServeSettings
    program: Program
    services: Services | None

    @property
    def calls(self) -> Sized: ...  # the running calls, which keep their generation

    @property
    def stopping(self) -> asyncio.Event: ...  # set once the server drains

    @property
    def calllog(self) -> CallLog: ...

    def start_voicemail(self, services: Services) -> None: ...

    def update_capacity(self) -> None: ...

    @property
    def admission(self) -> Admission: ...  # takes the new [overload] settings

    @property
    def collections(self) -> FullCollections: ...  # freezes the new generation (ivr.runtime.gcwatch)


class Reloader:
    """SIGHUP for one server: prepare the next generation off the loop, then switch to it."""

    def __init__(self, server: Generations) -> None:
        self.server = server
        self._reloading: asyncio.Task[None] | None = None
        self._again = False
        # The last reload's outcome: its record (reloaded, reload_failed or reload_skipped), {} before any.
        self.last: dict[str, Any] = {}

    async def reload_now(self) -> dict[str, Any]:
        """Reload as SIGHUP does and wait until it (and any reload queued behind it) is done.

        The console's deploy uses it; the result is the last reload's record.
        """
        self.on_signal()
        while self._reloading is not None and not self._reloading.done():
            await asyncio.shield(self._reloading)
        return dict(self.last)

    def _record(self, event: str, message: str, **fields: Any) -> None:
        self.last = {"event": event, "message": message, **fields}
        self.server.calllog.server(event, message, **fields)

    def on_signal(self) -> None:
        server = self.server
        if server.stopping.is_set():
            self._record("reload_skipped", "SIGHUP while draining: not reloading", reason="draining")
            return
        if self._reloading is not None and not self._reloading.done():
            self._again = True  # the file may have changed again since that reload read it
            server.calllog.server("reload_queued", "SIGHUP during a reload: reloading again after it")
            return
        self._reloading = asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> None:
        """Prepare the new settings and flows off the loop, then switch new calls to them."""
        server = self.server
        assert server.services is not None
        self._again = False
        server.calllog.server("reloading", "SIGHUP: reading the deployment file and the flows again")
        loop = asyncio.get_running_loop()
        try:
            prepared = await loop.run_in_executor(
                server.services.executor, prepare_reload, server.settings, server.services
            )
        except ReloadError as exc:
            self._record("reload_failed", f"reload failed, still serving the old flows: {exc}", **exc.fields)
        except Exception as exc:  # a bug must not take the SIGHUP handler down with it: say so, serve on
            log.exception("reload failed")
            self._record("reload_failed", f"reload failed, still serving the old flows: {exc!r}", stage="internal")
        else:
            if server.stopping.is_set():
                self._record("reload_skipped", "draining started during the reload", reason="draining")
                return
            self._switch(prepared)
            # The first mailboxes may come with this reload: their crash recovery reads the storage.
            await loop.run_in_executor(server.services.storage_executor, server.start_voicemail, server.services)
        if self._again and not server.stopping.is_set():
            self._reloading = loop.create_task(self._reload())

    def _switch(self, new: PreparedReload) -> None:
        """From now on new calls get ``new``; running calls keep the generation they started with."""
        server = self.server
        old = server.services
        assert old is not None
        server.settings, server.program, server.services = new.settings, new.program, new.services
        if old.config.trunks != new.settings.config.trunks:
            old.stop_trunks()  # un-REGISTER the old trunks, register the new ones
            new.services.start_trunks()
        prepare_hold_music(new.services, new.music)
        server.collections.reloaded()
        server.update_capacity()
        server.admission.configure(new.settings.config.overload)
        if new.restart:
            server.calllog.server(
                "reload_ignored", f"changed setting(s) that need a restart: {', '.join(new.restart)}",
                settings=list(new.restart),
            )
        self._log_reloaded(new)

    def _log_reloaded(self, new: PreparedReload) -> None:
        server, program = self.server, new.program
        self._record(
            "reloaded",
            f"reloaded {len(new.flows)} flow file(s): new calls use them, {len(server.calls)} running call(s) "
            "finish on the old ones",
            flows=[str(f) for f in new.flows],
            files=len(getattr(program, "files", ()) or new.flows),
            steps=len(getattr(program, "steps", {}) or {}),
            states=len(getattr(program, "states", {}) or {}),
            entries=sorted(getattr(program, "entries", {}) or {}),
            texts=new.texts,
            warnings=[diagnostic_line(d) for d in getattr(program, "warnings", ())],
            changed=list(new.changed),
            calls_on_old=len(server.calls),
            max_calls=server.settings.call_limit,
        )


@contextlib.contextmanager
def _short_gil_turns() -> Iterator[None]:
    """Let the loop thread win the GIL back quickly while this (CPU-bound) thread runs."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, RELOAD_SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def prepare_reload(current: ServeSettings, services: Services) -> PreparedReload:
    """Re-read the deployment file, load, check and pre-render the flows: a worker thread's job.

    Raises :class:`ReloadError` (with the flow's ``file:line:col`` diagnostics) when the new
    files cannot be used; nothing of the running server has changed then.
    """
    with _short_gil_turns():
        return _prepare_reload(current, services)


def _prepare_reload(current: ServeSettings, services: Services) -> PreparedReload:
    from ivr.config import ConfigError
    from ivr.dsl.errors import FlowError
    from ivr.runtime.deployment import load_flow

    if current.reread is None:
        raise ReloadError("this server was started without its command line; restart it instead")
    try:
        fresh, flows = current.reread()
    except ConfigError as exc:
        raise ReloadError(f"deployment file: {exc}", stage="config") from None
    settings, restart = keep_restart_only(current, fresh)
    try:
        program = load_flow(flows, prompt_folders=settings.config.prompt_folders, config=settings.config)
    except FlowError as exc:
        errors = [diagnostic_line(d) for d in exc.errors]
        raise ReloadError(
            f"{len(errors)} error(s) in the flows: {'; '.join(errors) if errors else exc}",  # text logs show this
            stage="check", flows=[str(f) for f in flows], diagnostics=[diagnostic_line(d) for d in exc.diagnostics],
        ) from None
    except OSError as exc:
        raise ReloadError(f"cannot read the flows: {exc}", stage="check", flows=[str(f) for f in flows]) from None
    try:
        texts = prerender(program, settings.config, None)
    except Exception as exc:  # a TTS voice missing: no caller may wait for a render that fails
        raise ReloadError(f"cannot pre-render the flows' texts: {exc}", stage="prerender") from None
    new = services.reloaded(settings.config, program)
    warm(new, program)
    music = music_sources(program)
    if "hold_music" in kept_engines(services.config, settings.config):
        music -= music_sources(services.program)
    return PreparedReload(
        settings=settings, program=program, flows=tuple(flows), services=new, texts=texts,
        restart=restart, changed=changed_sections(current.config, settings.config),
        music=frozenset(music),
    )


def keep_restart_only(current: ServeSettings, fresh: ServeSettings) -> tuple[ServeSettings, tuple[str, ...]]:
    """``fresh`` with the :data:`RESTART_ONLY` settings put back to ``current``'s, and which of them differed."""
    old, new = current.config, fresh.config
    differ = {
        "listen": current.listen != fresh.listen,
        "public_address": old.server.public_address != new.server.public_address,
        "data": old.data != new.data,
        "rtp_ports": old.server.rtp_ports != new.server.rtp_ports,
        "smtp": old.smtp != new.smtp,
        "storage": old.storage != new.storage,
    }
    server = dataclasses.replace(
        new.server, listen=old.server.listen, public_address=old.server.public_address, rtp_ports=old.server.rtp_ports
    )
    config = dataclasses.replace(new, server=server, data=old.data, smtp=old.smtp, storage=old.storage)
    settings = dataclasses.replace(fresh, config=config, listen=current.listen)
    return settings, tuple(name for name in RESTART_ONLY if differ[name])


def changed_sections(old: Config, new: Config) -> tuple[str, ...]:
    """The deployment file's sections that differ (after :func:`keep_restart_only`)."""
    names = [f.name for f in fields(Config) if f.name not in ("path", "base", "data")]
    return tuple(name for name in names if getattr(old, name) != getattr(new, name))


def diagnostic_line(diagnostic: Any) -> str:
    """``file:line:col: severity: message (hint)``: one log-friendly line of a flow diagnostic."""
    line = f"{diagnostic.pos}: {diagnostic.severity}: {diagnostic.message}"
    return f"{line} (hint: {diagnostic.hint})" if getattr(diagnostic, "hint", "") else line
