"""The server's side of the control socket: what the console process asks of ``ivr serve``.

The console (:mod:`ivr.web`, a process of its own started by :mod:`ivr.runtime.companion`)
reads and writes what lives in files and databases itself (journal, voicemail, switches,
follow-me numbers, users, flow files).  What lives only in this process is asked here, one
operation per :class:`~ivr.runtime.controlwire.Request`, dispatched through :data:`OPS`:

* read-only snapshots (calls now, one call, the flows loaded, the registrations, the
  counters behind ``/metrics``, the flows' DOT text) run in a control worker thread, never on
  the event loop: they copy the server's dicts and deques with single C-level calls under the
  GIL, as the watchdog does, and build small dicts;
* changes (hang up, transfer, click-to-call, reload, a mailbox changed) hop onto the server's
  loop with :meth:`ControlService.on_loop`, where the calls live, and the worker waits.

The JSON encoding of the answers is :mod:`ivr.runtime.companion`'s control thread's work; the
loop only ever runs the short change itself.  A failure is :class:`ControlError` with the HTTP
status the console answers with.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ivr.runtime.atomic import StatCached
from ivr.runtime.clicktocall import ClickToCall, ClickToCallError
from ivr.runtime.console_transfer import ConsoleTransferError, transfer_call

if TYPE_CHECKING:
    from ivr.runtime.server import Server

T = TypeVar("T")
LOOP_TIMEOUT = 10.0  # seconds a change may take on the loop (a reload gets RELOAD_TIMEOUT)
RELOAD_TIMEOUT = 300.0
RTP_KEYS = ("packets_sent", "packets_received", "lost")


class ControlError(Exception):
    """An operation that cannot be done; ``status`` is the HTTP status the console answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def call_state(runner: Any) -> dict[str, Any]:
    """What the console shows of a running call."""
    return {
        "call_id": runner.call_id, "caller": runner.caller, "called": runner.called,
        "step": runner.state, "answered": runner.answered,
        "transfer": runner.transfer is not None,
    }


class ControlService:
    """The operations of one server; :meth:`handle` runs in a control worker thread."""

    def __init__(self, server: Server, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop  # the server's: calls are changed there
        self.clicks: dict[str, ClickToCall] = {}  # click-to-calls under way, by the phone leg's Call-ID
        self._ticks_seen = 0  # media clock ticks already handed to /metrics
        config_path = server.settings.config.path
        # The flow files a reload would load: the deployment file read again only when it changed.
        self._files: StatCached[list[str]] | None = None if config_path is None else StatCached(
            self._reread_files, lambda: config_path, list)

    def handle(self, op: str, args: dict[str, Any]) -> Any:
        fn = OPS.get(op)
        if fn is None:
            raise ControlError(400, f"unknown control operation {op!r}")
        try:
            return fn(self, args)
        except (KeyError, TypeError) as exc:
            raise ControlError(400, f"{op}: bad arguments: {exc}") from None

    def on_loop(self, work: Callable[[], Coroutine[Any, Any, T]], timeout: float = LOOP_TIMEOUT) -> T:
        """Run ``work()`` on the server's loop and wait for its result (from a worker thread)."""
        return asyncio.run_coroutine_threadsafe(work(), self.loop).result(timeout)

    def hang_up_clicks(self) -> None:
        """Hang up the click-to-calls under way (on the server's loop: the server is stopping)."""
        for click in list(self.clicks.values()):
            click.hangup("shutdown")

    # ------------------------------------------------------------------ calls now (reads)

    def calls(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "calls": [call_state(r) for r in list(self.server.calls.values())],
            "click_to_call": [{"call_id": c.call_id, "from": c.caller, "to": c.called, "state": c.state}
                              for c in list(self.clicks.values())],
            "max_calls": self.server.settings.call_limit,
        }

    def call(self, args: dict[str, Any]) -> dict[str, Any]:
        runner = self._runner(str(args["call_id"]))
        state = call_state(runner)
        if runner.media is not None:
            stats = runner.media.stats
            state["media"] = {k: stats.get(k) for k in ("packets_sent", "packets_received", "lost", "jitter_ms")}
        return state

    def _runner(self, call_id: str) -> Any:
        runner = self.server.calls.get(call_id)
        if runner is None:
            raise ControlError(404, f"no call {call_id!r} is up")
        return runner

    # ------------------------------------------------------------------ calls now (changes)

    def hangup(self, args: dict[str, Any]) -> dict[str, Any]:
        call_id = str(args["call_id"])
        target = self.clicks.get(call_id) or self._runner(call_id)

        async def there() -> None:
            target.hangup("console")

        self.on_loop(there)
        return {"call_id": call_id, "hung_up": True}

    def transfer(self, args: dict[str, Any]) -> dict[str, Any]:
        runner = self._runner(str(args["call_id"]))
        target = str(args["to"])

        async def there() -> dict[str, Any]:
            try:
                return transfer_call(runner, target)
            except ConsoleTransferError as exc:
                raise ControlError(exc.status, str(exc)) from None

        return self.on_loop(there)

    def click_to_call(self, args: dict[str, Any]) -> dict[str, Any]:
        services = self.server.services
        assert services is not None, "the console starts after the server's services"
        click = ClickToCall(services, str(args["from"]), str(args["to"]), self._click_finished)

        async def there() -> str:
            call_id = await click.start()
            self.clicks[call_id] = click
            return call_id

        try:
            call_id = self.on_loop(there)
        except ClickToCallError as exc:
            raise ControlError(exc.status, str(exc)) from None
        return {"call_id": call_id, "from": click.caller, "to": click.called, "state": click.state}

    def _click_finished(self, click: ClickToCall) -> None:
        self.clicks.pop(click.call_id, None)

    def reload(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.on_loop(self.server.reloader.reload_now, RELOAD_TIMEOUT)

    def mailbox_changed(self, args: dict[str, Any]) -> dict[str, Any]:
        """The console changed a mailbox (a message heard or deleted): the lamps are told, here."""
        box = str(args["mailbox"])
        services = self.server.services
        assert services is not None

        async def there() -> None:
            services.voicemail_store.changed(box)

        self.on_loop(there)
        return {"mailbox": box}

    # ------------------------------------------------------------------ flows and registrations

    def flows(self, args: dict[str, Any]) -> dict[str, Any]:
        """The flow files a reload loads (from the deployment file as it is now), what runs, the last reload."""
        server = self.server
        program = server.program
        files = self._files.get() if self._files is not None else self._reread_files()
        return {"files": files, "entries": sorted(program.entries), "steps": len(program.steps),
                "reload": dict(server.reloader.last), "max_calls": server.settings.call_limit}

    def _reread_files(self) -> list[str]:
        reread = self.server.settings.reread
        if reread is None:
            return [str(Path(f)) for f in self.server.program.files]
        return [str(Path(p).resolve()) for p in reread()[1]]

    def graph(self, args: dict[str, Any]) -> str:
        """The running flows' picture as DOT text (the console renders it)."""
        from ivr.dsl.graph import to_dot

        return to_dot(self.server.program, title="flows")

    def registrations(self, args: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        services = self.server.services
        assert services is not None
        registrar, now = services.registrar(), time.time()
        return {str(number): [
            {"uri": b.uri, "expires_in": b.expires_in(now), "user_agent": b.user_agent, "static": b.static}
            for b in registrar.contacts(str(number), now)] for number in args["numbers"]}

    # ------------------------------------------------------------------ /metrics

    def metrics(self, args: dict[str, Any]) -> dict[str, Any]:
        """The counters only this process has; the console adds the call log's records and the files'."""
        server = self.server
        live: Counter[str] = Counter()
        for runner in list(server.calls.values()):
            if runner.media is not None:
                stats = runner.media.stats
                for key in RTP_KEYS:
                    live[key] += int(stats.get(key) or 0)
        ua = server.ua
        out: dict[str, Any] = {
            "calls_up": len(server.calls), "max_calls": server.settings.call_limit, "rtp_live": dict(live),
            "sip_responses": {str(k): v for k, v in list((ua.responses_sent if ua is not None else {}).items())},
            "registrations": self._bindings(),
        }
        services = server.services
        if services is not None:  # what calls hold besides themselves: nothing once they are over
            out["transfer_legs"] = len(services.legs)
            out["conference_rooms"] = len(services.conferences.rooms)
        clock = services.clock if services is not None else None
        if clock is not None:
            out["clock"] = {"ticks": clock.ticks, "late_ticks": clock.late_ticks, "lateness": self._new_lateness(clock)}
        return out

    def _new_lateness(self, clock: Any) -> list[float]:
        """The ticks' lateness since the last scrape (those still in the clock's ring), in seconds."""
        ticks = clock.ticks
        new, self._ticks_seen = ticks - self._ticks_seen, ticks
        return [round(v, 6) for v in list(clock.lateness)[-new:]] if new > 0 else []

    def _bindings(self) -> int:
        services = self.server.services
        if services is None:
            return 0
        now = time.time()
        registrar = services.registrar()
        return sum(len([b for b in registrar.contacts(e.number, now) if not b.static])
                   for e in services.config.extensions)


OPS: dict[str, Callable[[ControlService, dict[str, Any]], Any]] = {
    "calls": ControlService.calls,
    "call": ControlService.call,
    "hangup": ControlService.hangup,
    "transfer": ControlService.transfer,
    "click_to_call": ControlService.click_to_call,
    "reload": ControlService.reload,
    "mailbox_changed": ControlService.mailbox_changed,
    "flows": ControlService.flows,
    "graph": ControlService.graph,
    "registrations": ControlService.registrations,
    "metrics": ControlService.metrics,
}
"""Every operation of the control socket (``Request.op``), by name."""
