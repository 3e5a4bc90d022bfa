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
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from ivr.config import Config
from ivr.media.clock import get_clock
from ivr.runtime.call import CallRunner
from ivr.runtime.calllog import CallLog
from ivr.runtime.services import Services
from ivr.sip.transport import SipEndpoint
from ivr.sip.ua import (
    CallCancelled,
    CallConfirmed,
    CallEnded,
    DtmfInfo,
    IncomingCall,
    ReOffer,
    ReOfferAnswer,
    RequestReceived,
    UserAgent,
)

log = logging.getLogger("ivr.runtime.server")

CALL_EVENTS = (CallConfirmed, CallCancelled, CallEnded, ReOffer, ReOfferAnswer, DtmfInfo)


@dataclass(frozen=True)
class ServeSettings:
    """The effective settings: the deployment file, overridden by command-line options."""

    config: Config
    listen: tuple[str, int]
    drain_timeout: float


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

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        host, port = self.settings.listen
        contact = contact_address(self.settings.config, host)
        ua = UserAgent(local_host=host, local_port=port, contact_host=contact)
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
        registrar = services.registrar()
        endpoint.blocked = lambda ip: bool(registrar.blocked(ip, time.time()))
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
        if self.settings.config.mailboxes:
            recovered = services.voicemail.start()  # index messages a crash cut short, start Voice2Mail
            if recovered:
                self.calllog.server("recovered", f"recovered {len(recovered)} voicemail message(s)")
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
        services.stop_trunks()  # un-REGISTER before the socket closes
        watchdog.stop()
        endpoint.close()
        clock.stop()
        if self.settings.config.mailboxes:
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

    def _prepare_hold_music(self, services: Services) -> None:
        """Decode and encode the flow's hold music now: the first held caller must not stall the loop."""
        for source in sorted(music_sources(self.program)):
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
        runner = CallRunner(self.services, event, self._call_finished)
        self.calls[event.call_id] = runner
        self.idle.clear()
        task = asyncio.get_running_loop().create_task(runner.start())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _call_finished(self, runner: CallRunner) -> None:
        if self.calls.get(runner.call_id) is runner:
            del self.calls[runner.call_id]
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
