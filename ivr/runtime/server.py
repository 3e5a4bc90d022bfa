"""``ivr serve``: the server process around the user agent, the media clock and the calls.

Start-up, in this order, so a broken installation fails before it binds a
port: read the deployment file, load and check the flows (a broken flow
prints its diagnostics and exits 1), pre-render the flow's constant ``say``
texts, repair recordings a crash left behind, then bind UDP and TCP and log
``listening on udp:HOST:PORT tcp:HOST:PORT``.

While running, the :class:`Server` drains the user agent's events after every
input (see :class:`~ivr.sip.transport.SipEndpoint`): new calls get a
:class:`~ivr.runtime.call.CallRunner`, call events go to theirs, REGISTER goes
to the registrar (:mod:`ivr.sip.registrar`), other out-of-dialog requests the
agent hands over are answered 405.  A watchdog logs ``loop_stall`` whenever
the event loop stops turning for more than 50 ms.

SIGTERM (or SIGINT) drains: the user agent answers new INVITEs and OPTIONS
with 503 (a dispatcher stops sending calls), running calls go on; the process
exits when the last call ends or after the drain timeout, hanging up what is
left.  A second signal stops at once.

Capacity: with ``max_calls`` calls up (``--max-calls``, ``server.max_calls``, by default
half the RTP port pairs), or no RTP port pair left, a new INVITE gets 503 with
Retry-After and a ``call_rejected`` record, and OPTIONS answers 503 as well
(:class:`ServerAgent`).  A transfer's outgoing leg is not a call.

SIGHUP reloads: :func:`prepare_reload` re-reads the deployment file, loads,
checks and pre-renders the flows in a worker thread; then new calls get the
next generation of :class:`~ivr.runtime.services.Services` while running calls
keep theirs.  A flow that fails its check is logged (``reload_failed``, with
``file:line:col`` diagnostics) and changes nothing; settings a running process
cannot change are kept and named (``reload_ignored``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from ivr.config import Config
from ivr.media.clock import get_clock
from ivr.media.ports import pool_for
from ivr.runtime.call import BUSY_RETRY_AFTER, CallRunner
from ivr.runtime.calllog import CallLog
from ivr.runtime.services import Services, kept_engines
from ivr.sip.events import (
    CallCancelled,
    CallConfirmed,
    CallEnded,
    DtmfInfo,
    IncomingCall,
    ReOffer,
    ReOfferAnswer,
    RequestReceived,
)
from ivr.sip.transport import SipEndpoint
from ivr.sip.ua import UserAgent

log = logging.getLogger("ivr.runtime.server")

CALL_EVENTS = (CallConfirmed, CallCancelled, CallEnded, ReOffer, ReOfferAnswer, DtmfInfo)
# Seconds a caller (or a dispatcher) is asked to wait when every call slot is taken
# (a drain asks for ua.retry_after).
CAPACITY_RETRY_AFTER = BUSY_RETRY_AFTER


@dataclass(frozen=True)
class ServeSettings:
    """The effective settings: the deployment file, overridden by command-line options."""

    config: Config
    listen: tuple[str, int]
    drain_timeout: float
    max_calls: int = 0  # --max-calls; 0: the deployment file's server.call_limit
    # Re-reads the deployment file with the same command-line options (SIGHUP): new
    # settings and the flow files to load.  None: this server cannot reload.
    reread: Callable[[], tuple[ServeSettings, list[Path]]] | None = None

    @property
    def call_limit(self) -> int:
        return self.max_calls or self.config.server.call_limit


class ServerAgent(UserAgent):
    """The user agent of ``ivr serve``: OPTIONS answers 503 while a new call would be refused.

    RFC 3261 section 11.2: the response to OPTIONS is the one an INVITE would get, so a
    dispatcher that probes with OPTIONS (Kamailio's dispatcher module) stops routing calls
    here while we are full and resumes when a call ends.  Draining answers 503 already.
    ``refusal`` says why a new call would be refused now ("" if it would be taken).
    """

    refusal: Callable[[], str] = staticmethod(lambda: "")

    def _on_options(self, tx: Any, now: float) -> None:
        if not self.draining and self.refusal():
            self._reply(tx, 503, now, headers=[("Retry-After", str(CAPACITY_RETRY_AFTER))])
            return
        super()._on_options(tx, now)


def contact_address(config: Config, listen_host: str) -> str:
    """The address written in Contact and SDP: public_address, the listen host, or this host's."""
    if config.server.public_address:
        return config.server.public_address
    if listen_host not in ("0.0.0.0", "::", ""):
        return listen_host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


class LoopWatchdog:
    """Reports event-loop stalls: a heartbeat on the loop, checked by a thread.

    When the loop has not run the heartbeat for ``threshold`` seconds, the thread logs a
    ``loop_stall`` record with where the loop's thread is stuck (the innermost frames), once
    per stall.  Every caller hears a stall as a gap in their audio, so operators must see it.
    """

    def __init__(self, calllog: CallLog, *, threshold: float = 0.05, period: float = 0.01) -> None:
        self.calllog = calllog
        self.threshold = threshold
        self.period = period
        self.beat = time.monotonic()
        self.loop_thread = threading.get_ident()
        self._stop = threading.Event()
        self._handle: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._tick(loop)
        threading.Thread(target=self._watch, name="ivr-watchdog", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self.beat = time.monotonic()
        self._handle = loop.call_later(self.period, self._tick, loop)

    def _watch(self) -> None:
        reported = 0.0
        while not self._stop.wait(self.period):
            late = time.monotonic() - self.beat
            if late < self.threshold or self.beat == reported:
                continue
            reported = self.beat
            frame = sys._current_frames().get(self.loop_thread)
            where = traceback.format_stack(frame, limit=6) if frame is not None else []
            self.calllog.server(
                "loop_stall", f"event loop stalled for {late * 1000:.0f} ms",
                stalled_ms=round(late * 1000), where=[w.strip().replace("\n", " | ") for w in where],
            )


class Server:
    """One ``ivr serve`` process: endpoint, user agent, calls, drain."""

    def __init__(self, settings: ServeSettings, program: Any, calllog: CallLog) -> None:
        self.settings = settings
        self.program = program
        self.calllog = calllog
        self.calls: dict[str, CallRunner] = {}
        self.stopping = asyncio.Event()
        self.idle = asyncio.Event()
        self.services: Services | None = None
        self.endpoint: SipEndpoint | None = None
        self._signals = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._reloading: asyncio.Task[None] | None = None
        self._reload_again = False
        self._full = False  # every call slot taken (logged on each change)
        self._voicemail_started = False

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        host, port = self.settings.listen
        contact = contact_address(self.settings.config, host)
        ua = ServerAgent(local_host=host, local_port=port, contact_host=contact)
        ua.refusal = self._refusal
        clock = get_clock()
        services = self.services = Services(
            config=self.settings.config,
            program=self.program,
            ua=ua,
            clock=clock,
            calllog=self.calllog,
            contact_host=contact,
            media_host=host,
        )
        endpoint = self.endpoint = SipEndpoint(ua, on_events=self._on_ua_events)
        services.endpoint = endpoint
        try:
            bound = await endpoint.start(host, port)
        except OSError as exc:
            self.calllog.server("error", f"cannot listen on {host}:{port}: {exc}")
            return 1
        ua.local_port = bound.port  # port 0 asked: the agent must write the real one in Via/Contact
        services.registrar()  # open the bindings now, not at the first REGISTER
        endpoint.blocked = self._blocked
        services.start_trunks()  # REGISTER with trunks that want it (ivr.runtime.trunks)
        self._prepare_hold_music(services)
        for name in getattr(self.program.settings, "directories", {}) or {}:
            try:
                services.directory(name)  # read the directory file now, not during a call
            except Exception as exc:  # ivr check reports it; a call reaching it hears "not found"
                self.calllog.server("directory_error", f"directory {name!r}: {exc}")
        if uses_speech(self.program):
            try:
                services.recognizer()  # load the speech model now, not in the first caller's turn
            except Exception as exc:  # keys still work; each utterance will be a no-match
                self.calllog.server("speech_unavailable", f"speech recognition unavailable: {exc}")
        self._start_voicemail(services)
        # Start-up objects (flow tables, codec tables, decoded prompts) live as long as the
        # process: freezing them keeps full garbage collections short during calls.
        gc.collect()
        gc.freeze()
        clock.start()
        watchdog = LoopWatchdog(self.calllog)
        watchdog.start(loop)
        self._install_signals(loop)
        self.calllog.server("listening", f"listening on {bound.describe()}", pid=_pid())
        await self.stopping.wait()
        await self._drain()
        services = self.services  # a reload may have made a new generation
        assert services is not None
        services.stop_trunks()  # un-REGISTER before the socket closes
        watchdog.stop()
        endpoint.close()
        clock.stop()
        if self._voicemail_started:
            services.voicemail.stop()
        services.close_journal()  # its writer thread finishes the rows still queued
        services.executor.shutdown(wait=False, cancel_futures=True)
        self.calllog.server(
            "stopped",
            "stopped",
            clock_ticks=clock.ticks,
            clock_late_ticks=clock.late_ticks,
            clock_max_lateness_ms=round(clock.max_lateness * 1000, 2),
        )
        return 0

    def _start_voicemail(self, services: Services) -> None:
        """Once the deployment has mailboxes (at start-up or after a reload): recover, start Voice2Mail."""
        if self._voicemail_started or not services.config.mailboxes:
            return
        self._voicemail_started = True
        recovered = services.voicemail.start()  # index messages a crash cut short, start Voice2Mail
        if recovered:
            self.calllog.server("recovered", f"recovered {len(recovered)} voicemail message(s)")

    def _blocked(self, ip: str) -> bool:
        """The registrar's throttle (the current generation's: a reload may change the extensions)."""
        assert self.services is not None
        return bool(self.services.registrar().blocked(ip, time.time()))

    def _prepare_hold_music(self, services: Services, sources: Iterable[str] | None = None) -> None:
        """Decode and encode the flow's hold music now: the first held caller must not stall the loop."""
        for source in sorted(music_sources(services.program) if sources is None else sources):
            try:
                player = services.hold_music.player(source)
            except Exception as exc:  # reported by ivr check; a call will just hear silence
                self.calllog.server("hold_music_error", f"hold music {source!r}: {exc}")
                continue
            for clip in getattr(player, "_clips", ()):
                clip.encoded(0), clip.encoded(8)
            services.hold_music.release(player)

    # ------------------------------------------------------------------ signals and drain

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals > 1:
            self.calllog.server("stopping", "second signal: stopping now")
            self.idle.set()
            return
        assert self.services is not None
        self.services.ua.draining = True
        self.calllog.server(
            "draining",
            f"draining: {len(self.calls)} call(s) running, new calls get 503",
            signal=signal.Signals(sig).name,
            calls=len(self.calls),
        )
        self.stopping.set()

    async def _drain(self) -> None:
        if self.calls:
            try:
                await asyncio.wait_for(self.idle.wait(), self.settings.drain_timeout)
            except TimeoutError:
                self.calllog.server(
                    "drain_timeout", f"drain timeout: hanging up {len(self.calls)} call(s)", calls=len(self.calls)
                )
        for runner in list(self.calls.values()):
            runner.hangup("shutdown")
        if self.endpoint is not None:
            await self._let_byes_go()

    async def _let_byes_go(self) -> None:
        """Give the BYEs of a drain timeout a moment on the wire (retransmitted by the agent's timer)."""
        assert self.services is not None
        ua = self.services.ua
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while loop.time() < deadline and any(getattr(c, "state", "") != "ended" for c in ua.calls.values()):
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ reload (SIGHUP)

    def _on_reload_signal(self) -> None:
        if self.stopping.is_set():
            self.calllog.server("reload_skipped", "SIGHUP while draining: not reloading", reason="draining")
            return
        if self._reloading is not None and not self._reloading.done():
            self._reload_again = True  # the file may have changed again since that reload read it
            self.calllog.server("reload_queued", "SIGHUP during a reload: reloading again after it")
            return
        self._reloading = asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> None:
        """Prepare the new settings and flows off the loop, then switch new calls to them."""
        assert self.services is not None
        self._reload_again = False
        self.calllog.server("reloading", "SIGHUP: reading the deployment file and the flows again")
        loop = asyncio.get_running_loop()
        try:
            prepared = await loop.run_in_executor(self.services.executor, prepare_reload, self.settings, self.services)
        except ReloadError as exc:
            self.calllog.server("reload_failed", f"reload failed, still serving the old flows: {exc}", **exc.fields)
        except Exception as exc:  # a bug must not take the SIGHUP handler down with it: say so, serve on
            log.exception("reload failed")
            self.calllog.server(
                "reload_failed", f"reload failed, still serving the old flows: {exc!r}", stage="internal"
            )
        else:
            if self.stopping.is_set():
                self.calllog.server("reload_skipped", "draining started during the reload", reason="draining")
                return
            self._switch(prepared)
        if self._reload_again and not self.stopping.is_set():
            self._reloading = loop.create_task(self._reload())

    def _switch(self, new: PreparedReload) -> None:
        """From now on new calls get ``new``; running calls keep the generation they started with."""
        old = self.services
        assert old is not None
        self.settings, self.program, self.services = new.settings, new.program, new.services
        if old.config.trunks != new.settings.config.trunks:
            old.stop_trunks()  # un-REGISTER the old trunks, register the new ones
            new.services.start_trunks()
        self._prepare_hold_music(new.services, new.music)
        self._start_voicemail(new.services)  # the first mailboxes may come with this reload
        self._update_capacity()
        if new.restart:
            self.calllog.server(
                "reload_ignored", f"changed setting(s) that need a restart: {', '.join(new.restart)}",
                settings=list(new.restart),
            )
        program = new.program
        self.calllog.server(
            "reloaded",
            f"reloaded {len(new.flows)} flow file(s): new calls use them, {len(self.calls)} running call(s) "
            "finish on the old ones",
            flows=[str(f) for f in new.flows],
            files=len(getattr(program, "files", ()) or new.flows),
            steps=len(getattr(program, "steps", {}) or {}),
            states=len(getattr(program, "states", {}) or {}),
            entries=sorted(getattr(program, "entries", {}) or {}),
            texts=new.texts,
            warnings=[_diagnostic_line(d) for d in getattr(program, "warnings", ())],
            changed=list(new.changed),
            calls_on_old=len(self.calls),
            max_calls=self.settings.call_limit,
        )

    # ------------------------------------------------------------------ user agent events

    def _on_ua_events(self) -> None:
        assert self.services is not None
        ua = self.services.ua
        while (event := ua.next_event()) is not None:
            if isinstance(event, IncomingCall):
                self._incoming(event)
            elif self.services.leg_event(event):
                pass  # an outgoing leg of a transfer (ivr.runtime.transfer)
            elif isinstance(event, CALL_EVENTS):
                runner = self.calls.get(event.call_id)
                if runner is not None:
                    runner.on_sip_event(event)
            elif isinstance(event, RequestReceived):
                self._request(event)

    def _incoming(self, event: IncomingCall) -> None:
        assert self.services is not None
        if event.call_id in self.calls:
            return  # the agent absorbs retransmissions; never start a call twice
        reason = self._refusal()
        if reason:
            self._refuse(event, reason)
            return
        runner = CallRunner(self.services, event, self._call_finished)
        self.calls[event.call_id] = runner
        self.idle.clear()
        self._update_capacity()
        task = asyncio.get_running_loop().create_task(runner.start())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refusal(self) -> str:
        """Why a new call cannot be taken now ("" if it can): every slot or every RTP port busy."""
        if len(self.calls) >= self.settings.call_limit:
            return "capacity"
        pool = pool_for(self.settings.config.server.rtp_ports)
        if len(pool.in_use) >= pool.pairs:  # transfer legs hold pairs too
            return "rtp_ports"
        return ""

    def _refuse(self, event: IncomingCall, reason: str) -> None:
        """503 with Retry-After (RFC 3261 section 21.5.4): the caller or its proxy tries again later."""
        assert self.services is not None
        services = self.services
        services.ua.reject(
            event.call_id, 503, services.sip_now(), headers=[("Retry-After", str(CAPACITY_RETRY_AFTER))]
        )
        self.calllog.call(
            event.call_id,
            caller=event.caller,
            called=event.called,
            state="rejected",
            event="call_rejected",
            reason=reason,
            status=503,
            calls=len(self.calls),
            max_calls=self.settings.call_limit,
            source=f"{event.source[0]}:{event.source[1]}",
        )

    def _update_capacity(self) -> None:
        """Log when the call slots fill up and when one is free again (OPTIONS asks _refusal itself)."""
        full = len(self.calls) >= self.settings.call_limit
        if full != self._full:
            self._full = full
            self.calllog.server(
                "capacity_full" if full else "capacity_available",
                f"{len(self.calls)} of {self.settings.call_limit} call(s) up: "
                + ("new calls get 503" if full else "taking calls again"),
                calls=len(self.calls),
                max_calls=self.settings.call_limit,
            )

    def _call_finished(self, runner: CallRunner) -> None:
        if self.calls.get(runner.call_id) is runner:
            del self.calls[runner.call_id]
        self._update_capacity()
        if not self.calls:
            self.idle.set()

    def _request(self, event: RequestReceived) -> None:
        """Out-of-dialog requests the agent does not handle itself: REGISTER goes to the registrar."""
        assert self.services is not None
        ua, now = self.services.ua, self.services.sip_now()
        method = event.request.method
        if method != "REGISTER":
            ua.respond(event.handle, 405, now, headers=[("Allow", ", ".join(ua.allow_methods))])
            return
        # The registrar keeps bindings on wall-clock time (they survive a restart); the agent's
        # transaction timers run on the loop's clock: each gets its own "now".
        reply = self.services.registrar().handle_request(event.request, event.source, time.time(), event.transport)
        status = 403 if reply.drop else reply.status
        ua.respond(event.handle, status, now, headers=reply.headers)
        self.calllog.server(
            "register", f"REGISTER from {event.source[0]}:{event.source[1]}: {status}", status=status,
            aor=event.request.to.user if hasattr(event.request.to, "user") else "",
        )


class ReloadError(Exception):
    """A reload that cannot be used; ``fields`` go into the ``reload_failed`` record."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.fields = fields


@dataclass(frozen=True)
class PreparedReload:
    """Everything a reload built off the loop, ready to switch to."""

    settings: ServeSettings
    program: Any
    flows: tuple[Path, ...]
    services: Services
    texts: int  # say texts pre-rendered
    restart: tuple[str, ...]  # changed settings that only a restart applies (kept at their old values)
    changed: tuple[str, ...]  # sections of the deployment file that changed and were applied
    # Hold-music sources to decode before the switch (the ones the old generation has not):
    # found in the worker thread, since walking a large flow's tables takes the loop tens of ms.
    music: frozenset[str]


# Settings a running process cannot change: its sockets, its data folder, its mail thread.
RESTART_ONLY = ("listen", "public_address", "data", "rtp_ports", "smtp")


# While a reload parses and compiles in a worker thread, the loop hands the GIL over at every
# sendto of the media clock and waits the switch interval (5 ms) to get it back: with 20 calls
# up, a 2,000-line flow's reload stalled the loop ~60 ms (loop_stall); with 0.5 ms mostly none
# (bench/serve_reload.py).
RELOAD_SWITCH_INTERVAL = 0.0005


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
    from ivr.dsl.loader import load_flow

    if current.reread is None:
        raise ReloadError("this server was started without its command line; restart it instead")
    try:
        fresh, flows = current.reread()
    except ConfigError as exc:
        raise ReloadError(f"deployment file: {exc}", stage="config") from None
    settings, restart = keep_restart_only(current, fresh)
    try:
        program = load_flow(flows, prompt_folders=settings.config.prompt_folders)
    except FlowError as exc:
        errors = [_diagnostic_line(d) for d in exc.errors]
        raise ReloadError(
            f"{len(errors)} error(s) in the flows: {'; '.join(errors) if errors else exc}",  # text logs show this
            stage="check", flows=[str(f) for f in flows], diagnostics=[_diagnostic_line(d) for d in exc.diagnostics],
        ) from None
    except OSError as exc:
        raise ReloadError(f"cannot read the flows: {exc}", stage="check", flows=[str(f) for f in flows]) from None
    try:
        texts = prerender(program, settings.config, None)
    except Exception as exc:  # a TTS voice missing: no caller may wait for a render that fails
        raise ReloadError(f"cannot pre-render the flows' texts: {exc}", stage="prerender") from None
    new = services.reloaded(settings.config, program)
    _warm(new, program, services)
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
    }
    server = dataclasses.replace(
        new.server, listen=old.server.listen, public_address=old.server.public_address, rtp_ports=old.server.rtp_ports
    )
    config = dataclasses.replace(new, server=server, data=old.data, smtp=old.smtp)
    settings = dataclasses.replace(fresh, config=config, listen=current.listen)
    return settings, tuple(name for name in RESTART_ONLY if differ[name])


def changed_sections(old: Config, new: Config) -> tuple[str, ...]:
    """The deployment file's sections that differ (after :func:`keep_restart_only`)."""
    names = [f.name for f in fields(Config) if f.name not in ("path", "base", "data")]
    return tuple(name for name in names if getattr(old, name) != getattr(new, name))


def _warm(new: Services, program: Any, old: Services) -> None:
    """Read the new flow's directories and load its speech model now, not during a caller's turn."""
    for name in getattr(program.settings, "directories", {}) or {}:
        try:
            new.directory(name)
        except Exception as exc:  # as at start-up: a call reaching it hears "not found"
            new.calllog.server("directory_error", f"directory {name!r}: {exc}")
    if uses_speech(program):
        try:
            new.recognizer()
        except Exception as exc:
            new.calllog.server("speech_unavailable", f"speech recognition unavailable: {exc}")


def _diagnostic_line(diagnostic: Any) -> str:
    """``file:line:col: severity: message (hint)``: one log-friendly line of a flow diagnostic."""
    line = f"{diagnostic.pos}: {diagnostic.severity}: {diagnostic.message}"
    return f"{line} (hint: {diagnostic.hint})" if getattr(diagnostic, "hint", "") else line


def prerender(program: Any, config: Config, calllog: CallLog | None) -> int:
    """Render every constant ``say`` of the flow and the voicemail dialogues' texts now, so no caller
    waits for synthesis; the number of texts."""
    from ivr.commands.prompts import voicemail_texts
    from ivr.media.tts import TtsEngine, texts_of

    texts = texts_of(program) + voicemail_texts(program, config)
    if not texts:
        return 0
    engine = TtsEngine.for_config(config)
    engine.prerender(texts)
    if calllog is not None:
        calllog.server("prerendered", f"pre-rendered {len(texts)} prompt text(s)", texts=len(texts))
    return len(texts)


def _nodes(program: Any) -> Iterator[Any]:
    """Every dataclass reachable from the program's state tables (ops, actions, options)."""
    seen: set[int] = set()
    stack: list[Any] = [getattr(program, "states", {})]
    while stack:
        node = stack.pop()
        if id(node) in seen or isinstance(node, str | bytes | int | float | bool) or node is None:
            continue
        seen.add(id(node))
        if hasattr(node, "values") and hasattr(node, "keys"):
            stack.extend(node.values())
        elif isinstance(node, list | tuple | set | frozenset):
            stack.extend(node)
        elif is_dataclass(node):
            yield node
            stack.extend(getattr(node, f.name) for f in fields(node))


def music_sources(program: Any) -> set[str]:
    """Every hold-music source a flow can ask for: its default and each ``music`` of its states."""
    found = {str(getattr(program.settings, "hold_music", "") or "")}
    found.update(m for node in _nodes(program) if isinstance(m := getattr(node, "music", None), str))
    found.discard("")
    return found


def uses_speech(program: Any) -> bool:
    """Whether any state of the flow listens for speech (a non-empty ``phrases``)."""
    return any(getattr(node, "phrases", None) for node in _nodes(program))


def _pid() -> int:
    import os

    return os.getpid()


def run_server(settings: ServeSettings, program: Any, calllog: CallLog) -> int:
    """Run until drained; the process's exit status."""
    return asyncio.run(Server(settings, program, calllog).run())


def prepare_data(data: Path, calllog: CallLog) -> None:
    """Create the data folder and repair recordings a crash left half-written."""
    from ivr.media.recording import repair_all

    data.mkdir(parents=True, exist_ok=True)
    repaired = repair_all(data)
    if repaired:
        calllog.server("repaired", f"repaired {len(repaired)} recording(s)", files=[str(p) for p in repaired])
