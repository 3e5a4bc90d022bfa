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
agent hands over are answered 405.  A watchdog (:mod:`ivr.runtime.watchdog`)
logs ``loop_stall`` whenever the event loop stops turning for more than
``stall_threshold`` (20 ms), and every garbage collection that long is logged as
``gc_pause``; full collections run when the last call has ended, not while calls are
up (:mod:`ivr.runtime.gcwatch`).  Admission control (:mod:`ivr.runtime.overload`) is the user
agent's gate: per-address request rates, and new INVITEs shed with 503 while the loop lags.

SIGTERM (or SIGINT) drains: the user agent answers new INVITEs and OPTIONS
with 503 (a dispatcher stops sending calls), running calls go on; the process
exits when the last call ends or after the drain timeout, hanging up what is
left.  A second signal stops at once.

Capacity: with ``max_calls`` calls up (``--max-calls``, ``server.max_calls``, by default
half the RTP port pairs), or no RTP port pair left, a new INVITE gets 503 with
Retry-After and a ``call_rejected`` record, and OPTIONS answers 503 as well
(:class:`ServerAgent`).  A transfer's outgoing leg is not a call.

SIGHUP reloads (:mod:`ivr.runtime.reload`): the deployment file and the flows
are read, checked and pre-rendered in a worker thread; then new calls get the
next generation of :class:`~ivr.runtime.services.Services` while running calls
keep theirs.  A flow that fails its check is logged (``reload_failed``, with
``file:line:col`` diagnostics) and changes nothing; settings a running process
cannot change are kept and named (``reload_ignored``).

What is made ready before the first caller (texts rendered, hold music decoded,
directories read, the speech model loaded) is :mod:`ivr.runtime.prepare`'s.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ivr.config import Config
from ivr.media.clock import get_clock, single_threaded_numerics
from ivr.media.ports import pool_for
from ivr.runtime.call import BUSY_RETRY_AFTER, CallRunner
from ivr.runtime.calllog import CallLog
from ivr.runtime.gcwatch import FullCollections, GcWatch, settle
from ivr.runtime.lamps import Lamps
from ivr.runtime.overload import Admission
from ivr.runtime.prepare import prepare_hold_music, start_workers, warm
from ivr.runtime.reload import Reloader
from ivr.runtime.services import WORKERS, Services
from ivr.runtime.settings import ServeSettings
from ivr.runtime.shared import open_state
from ivr.runtime.watchdog import LoopWatchdog
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
from ivr.sip.uacore import DEFAULT_ALLOW

if TYPE_CHECKING:
    from ivr.dsl.compiler import Program
    from ivr.sip.registrar import RegisterReply

CALL_EVENTS = (CallConfirmed, CallCancelled, CallEnded, ReOffer, ReOfferAnswer, DtmfInfo)
# Seconds a caller (or a dispatcher) is asked to wait when every call slot is taken
# (a drain asks for ua.retry_after).
CAPACITY_RETRY_AFTER = BUSY_RETRY_AFTER


class Companion(Protocol):
    """A service run beside the calls (the console process, :mod:`ivr.runtime.companion`).

    Started once the SIP side is bound and before ``listening`` is logged; stopped after the
    drain, so the console shows the calls that are finishing.
    """

    async def start(self, server: Server) -> None: ...

    async def stop(self) -> None: ...


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


class Server:
    """One ``ivr serve`` process: endpoint, user agent, calls, drain."""

    def __init__(
        self, settings: ServeSettings, program: Program, calllog: CallLog, companions: Sequence[Companion] = ()
    ) -> None:
        self.settings = settings
        self.companions = tuple(companions)
        self.program = program
        self.calllog = calllog
        self.calls: dict[str, CallRunner] = {}
        self.stopping = asyncio.Event()
        self.idle = asyncio.Event()
        self.services: Services | None = None
        self.endpoint: SipEndpoint | None = None
        self._signals = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.reloader = Reloader(self)
        self.ua: ServerAgent | None = None  # the user agent, once run() has built it
        self.watchdog: LoopWatchdog | None = None
        self._full = False  # every call slot taken (logged on each change)
        self._voicemail_started = False
        self._register_executor = ThreadPoolExecutor(1, "ivr-register")  # REGISTERs in order, off the loop
        self.admission = Admission(settings.config.overload)
        self.gcwatch = GcWatch(calllog, threshold=settings.config.server.stall_threshold)
        self.collections = FullCollections(settings.config.server.gc_full_interval)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        host, port = self.settings.listen
        contact = contact_address(self.settings.config, host)
        ua = self.ua = ServerAgent(local_host=host, local_port=port, contact_host=contact,
                                   allow_methods=(*DEFAULT_ALLOW, "SUBSCRIBE"))  # phones' lamps
        ua.refusal = self._options_refusal
        ua.gate = self.admission
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
        problem = open_state(services)  # a shared database unreachable or behind: fail before binding
        if problem:
            self.calllog.server("error", problem)
            return 1
        try:
            bound = await endpoint.start(host, port)
        except OSError as exc:
            self.calllog.server("error", f"cannot listen on {host}:{port}: {exc}")
            return 1
        ua.local_port = bound.port  # port 0 asked: the agent must write the real one in Via/Contact
        services.registrar()  # open the bindings now, not at the first REGISTER
        services.journal  # noqa: B018  (opened, its SQLite schema made, now: not in the first call's turn)
        endpoint.blocked = self._blocked
        services.start_trunks()  # REGISTER with trunks that want it (ivr.runtime.trunks)
        prepare_hold_music(services)
        single_threaded_numerics()  # the media loop's matrix products stay on its thread
        warm(services, self.program)  # directories read, speech model loaded: not in a caller's turn
        start_workers(services.executor, WORKERS)
        self.start_voicemail(services)
        self.lamps = Lamps(lambda: self._services(), ua)  # subscriptions a restart left get their NOTIFY
        self.lamps.start()
        # Start-up objects (flow tables, codec tables, decoded prompts) live as long as the
        # process: freezing them keeps garbage collections short during calls (ivr.runtime.gcwatch).
        settle()
        self.gcwatch.install()
        self.gcwatch.settled()
        self.collections.start(loop)
        clock.start()
        watchdog = self.watchdog = LoopWatchdog(self.calllog, threshold=self.settings.config.server.stall_threshold,
                                on_beat=lambda lag, now: self._on_beat(max(lag, clock.last_lateness), now))
        watchdog.gc = self.gcwatch
        watchdog.start(loop)
        self._install_signals(loop)
        for companion in self.companions:
            await companion.start(self)
        self.calllog.server("listening", f"listening on {bound.describe()}", pid=_pid())
        await self.stopping.wait()
        await self._drain()
        for companion in self.companions:
            await companion.stop()
        services = self.services  # a reload may have made a new generation
        assert services is not None
        services.stop_trunks()  # un-REGISTER before the socket closes
        self.lamps.stop()
        watchdog.stop()
        self.collections.stop()
        endpoint.close()
        clock.stop()
        if self._voicemail_started:
            services.voicemail.stop()
        # A message left as its caller hung up may still be being stored: let it finish (each
        # statement is bounded by the storage's timeouts) before the storage closes.
        services.storage_executor.shutdown(wait=True)
        services.close_journal()  # its writer thread finishes the rows still queued; the storage closes
        services.executor.shutdown(wait=False, cancel_futures=True)
        self._register_executor.shutdown(wait=False, cancel_futures=True)
        self.calllog.server(
            "stopped",
            "stopped",
            clock_ticks=clock.ticks,
            clock_late_ticks=clock.late_ticks,
            clock_max_lateness_ms=round(clock.max_lateness * 1000, 2),
            clock_lateness_p99_ms=round(_p99(clock.lateness) * 1000, 3),
            **self.gcwatch.summary(),
        )
        return 0

    def start_voicemail(self, services: Services) -> None:
        """Once the deployment has mailboxes (at start-up or after a reload): recover, start Voice2Mail."""
        if self._voicemail_started or not services.config.mailboxes:
            return
        self._voicemail_started = True
        recovered = services.voicemail.start()  # index messages a crash cut short, start Voice2Mail
        if recovered:
            self.calllog.server("recovered", f"recovered {len(recovered)} voicemail message(s)")

    def _on_beat(self, lag: float, now: float) -> None:
        for event, message, fields in self.admission.beat(lag, now):
            self.calllog.server(event, message, **fields)

    def _services(self) -> Services:
        assert self.services is not None
        return self.services

    def _blocked(self, ip: str) -> bool:
        """The registrar's throttle (the current generation's: a reload may change the extensions)."""
        assert self.services is not None
        return bool(self.services.registrar().blocked(ip, time.time()))

    # ------------------------------------------------------------------ signals and drain

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self.reloader.on_signal)

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals > 1:
            self.calllog.server("stopping", "second signal: stopping now")
            self.idle.set()
            return
        assert self.ua is not None
        self.ua.draining = True
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
        ua = self.ua
        assert ua is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while loop.time() < deadline and any(getattr(c, "state", "") != "ended" for c in ua.calls.values()):
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ user agent events

    def _on_ua_events(self) -> None:
        assert self.services is not None and self.ua is not None
        ua = self.ua
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
        self.update_capacity()
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

    def _options_refusal(self) -> str:
        """Why OPTIONS answers 503: a new call would be refused, or new calls are being shed."""
        return self._refusal() or ("overload" if self.admission.shedding else "")

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

    def update_capacity(self) -> None:
        """Log when the call slots fill up and when one is free again (OPTIONS asks _refusal itself)."""
        self.admission.calls = len(self.calls)
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
        self.update_capacity()
        if not self.calls:
            self.idle.set()
            self.collections.idle()  # the full garbage collection nobody hears (ivr.runtime.gcwatch)

    def _request(self, event: RequestReceived) -> None:
        """Out-of-dialog requests the agent does not handle itself: REGISTER goes to the registrar."""
        assert self.services is not None and self.ua is not None
        ua, now = self.ua, self.services.sip_now()
        method = event.request.method
        if method == "SUBSCRIBE":
            self.lamps.subscribe(event)  # message waiting and busy lamps (ivr.runtime.lamps)
            return
        if method != "REGISTER":
            ua.respond(event.handle, 405, now, headers=[("Allow", ", ".join(ua.allow_methods))])
            return
        # The registrar keeps bindings on wall-clock time (they survive a restart); the agent's
        # transaction timers run on the loop's clock: each gets its own "now".
        registrar = self.services.registrar()
        args = (event.request, event.source, time.time(), event.transport)
        if self.services.storage.db is None:
            self._registered(event, registrar.handle_request(*args))
            return
        # A database across the network: the registrar runs in its own thread, in order.
        future = asyncio.get_running_loop().run_in_executor(self._register_executor, registrar.handle_request, *args)
        future.add_done_callback(lambda f: self._registered(event, f.result()))

    def _registered(self, event: RequestReceived, reply: RegisterReply) -> None:
        assert self.services is not None and self.ua is not None
        status = 403 if reply.drop else reply.status
        self.ua.respond(event.handle, status, self.services.sip_now(), headers=reply.headers)
        self.services.flush()
        aor = event.request.to.user if hasattr(event.request.to, "user") else ""
        self.calllog.server(
            "register", f"REGISTER from {event.source[0]}:{event.source[1]}: {status}", status=status, aor=aor,
        )
        self.lamps.registered(aor or "", reply)  # presence: reachable or not


def _p99(samples: Sequence[float] | Any) -> float:
    """The 99th percentile of the clock's recent tick lateness (0 without samples)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


def _pid() -> int:
    import os

    return os.getpid()


def run_server(
    settings: ServeSettings, program: Program, calllog: CallLog, companions: Sequence[Companion] = ()
) -> int:
    """Run until drained; the process's exit status."""
    return asyncio.run(Server(settings, program, calllog, companions).run())


def prepare_data(data: Path, calllog: CallLog) -> None:
    """Create the data folder and repair recordings a crash left half-written."""
    from ivr.media.recording import repair_all

    data.mkdir(parents=True, exist_ok=True)
    repaired = repair_all(data)
    if repaired:
        calllog.server("repaired", f"repaired {len(repaired)} recording(s)", files=[str(p) for p in repaired])
