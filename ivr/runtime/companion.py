"""The console beside ``ivr serve``: its process, its listening socket and its control socket.

bench/console_load.py measured that serving the console in the server's process (even on a
thread of its own) costs the media clock milliseconds of lateness under load, through the
GIL.  So ``ivr serve`` runs it as a child process, ``python -m ivr.web``
(:class:`ConsoleProcess`, a :class:`~ivr.runtime.server.Companion`):

* The server binds the ``[http] listen`` address itself (errors are its own, before
  ``listening``; port 0 picks a free one) and logs ``http_listening`` with the URL; the child
  inherits the socket and accepts on it.  A restarted child serves the same address, and
  connections that arrive meanwhile wait in the socket's backlog.
* One end of a ``socketpair`` is the child's control socket: nobody else can connect to it
  (no path in the file system, no permissions to get wrong).  The wire format is
  :mod:`ivr.runtime.controlwire`; the operations are :mod:`ivr.runtime.control`'s.
* The control socket is served by a thread of its own (``ivr-control``) with its own event
  loop: it decodes requests, runs them in two worker threads, encodes the answers and writes
  them, and pushes the call log's records, fed in batches by the call log's writer thread
  (:attr:`~ivr.runtime.calllog.CallLog.feeds`).  The server's loop only runs the changes.  A
  console that reads too slowly gets records dropped (``console_records_dropped``), never a
  blocked server.
* The child is restarted when it exits while the server runs (``console_exited``), after 1 s,
  doubling up to 30 s while it keeps failing; it is stopped (SIGTERM) after the drain.  It
  exits by itself when its control socket closes (the server is gone).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ivr.runtime.control import ControlError, ControlService
from ivr.runtime.controlwire import (
    ControlProtocolError,
    Decoder,
    Failure,
    Records,
    Reply,
    Request,
    encode,
)
from ivr.runtime.reload import RELOAD_SWITCH_INTERVAL

if TYPE_CHECKING:
    from ivr.runtime.server import Server

log = logging.getLogger("ivr.runtime.companion")

MAX_BACKLOG = 8 * 1024 * 1024  # bytes of records waiting for a slow console before records are dropped
RESTART_FIRST, RESTART_MAX, STEADY = 1.0, 30.0, 60.0  # seconds
STOP_WAIT = 10.0


class ControlChannel:
    """The control thread: its event loop, the child's connection on it, the worker threads."""

    def __init__(self, service: ControlService, calllog: Any) -> None:
        self.service = service
        self.calllog = calllog
        self.loop = asyncio.new_event_loop()
        self.workers = ThreadPoolExecutor(2, thread_name_prefix="ivr-control-op")
        self.thread = threading.Thread(target=self.loop.run_forever, name="ivr-control", daemon=True)
        self.writer: asyncio.StreamWriter | None = None
        self.dropped = 0
        self._answering: set[asyncio.Task[None]] = set()  # requests in the workers (kept referenced)

    def start(self) -> None:
        self.thread.start()

    def attach(self, sock: socket.socket) -> None:
        """Serve the child's end of a new control socket (from the supervisor thread)."""
        asyncio.run_coroutine_threadsafe(self._serve(sock), self.loop)

    def feed(self, records: list[dict[str, Any]]) -> None:
        """The call log's writer thread hands over a batch of records."""
        if self.writer is not None:
            self.loop.call_soon_threadsafe(self._push, list(records))

    def _push(self, records: list[dict[str, Any]]) -> None:
        writer = self.writer
        if writer is None or writer.is_closing():
            return
        if writer.transport.get_write_buffer_size() > MAX_BACKLOG:
            self.dropped += len(records)
            return
        if self.dropped:
            self.calllog.server("console_records_dropped", f"{self.dropped} record(s) not sent to the slow console",
                                dropped=self.dropped)
            self.dropped = 0
        writer.write(encode(Records(records)))

    async def _serve(self, sock: socket.socket) -> None:
        reader, writer = await asyncio.open_connection(sock=sock)
        self.writer = writer
        decoder = Decoder()
        try:
            while data := await reader.read(65536):
                for message in decoder.feed(data):
                    if isinstance(message, Request):
                        task = asyncio.create_task(self._answer(writer, message))
                        self._answering.add(task)
                        task.add_done_callback(self._answering.discard)
        except ControlProtocolError as exc:
            self.calllog.server("console_protocol_error", f"control socket: {exc}")
        except ConnectionError:
            pass
        finally:
            if self.writer is writer:
                self.writer = None
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, request: Request) -> None:
        try:
            result = await self.loop.run_in_executor(self.workers, self.service.handle, request.op, request.args)
            line = encode(Reply(request.id, result))
        except ControlError as exc:
            line = encode(Failure(request.id, exc.status, str(exc)))
        except Exception as exc:
            log.exception("control operation %s failed", request.op)
            line = encode(Failure(request.id, 500, f"{request.op} failed: {exc}"))
        if not writer.is_closing():
            writer.write(line)

    def close(self) -> None:
        async def closing() -> None:
            if self.writer is not None:
                self.writer.close()

        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(closing(), self.loop).result(5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        self.workers.shutdown(wait=False, cancel_futures=True)


class ConsoleProcess:
    """The console as a child process of ``ivr serve`` (see the module docstring)."""

    def __init__(self) -> None:
        self.address = ""
        self.http: socket.socket | None = None
        self.channel: ControlChannel | None = None
        self.service: ControlService | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.supervisor: threading.Thread | None = None
        self.calllog: Any = None

    async def start(self, server: Server) -> None:
        config = server.settings.config
        self.calllog = server.calllog
        # The control thread and the call log's writer share the GIL with the loop: let the loop
        # have it back within half a millisecond, as during a reload.
        sys.setswitchinterval(min(sys.getswitchinterval(), RELOAD_SWITCH_INTERVAL))
        try:
            self.http = listen(config.http)
        except OSError as exc:
            server.calllog.server("http_error", str(exc))
            raise
        self.service = ControlService(server, asyncio.get_running_loop())
        self.channel = ControlChannel(self.service, server.calllog)
        self.channel.start()
        server.calllog.feeds.append(self.channel.feed)
        self.supervisor = threading.Thread(target=self._supervise, args=(command(config),), name="ivr-console-sup",
                                           daemon=True)
        self.supervisor.start()
        host, port = self.http.getsockname()[:2]
        self.address = f"{'https' if config.http.tls else 'http'}://{_host(host)}:{port}"
        server.calllog.server("http_listening", f"console on {self.address}", url=self.address)

    def _supervise(self, argv: list[str]) -> None:
        delay = RESTART_FIRST
        while not self.stopping.is_set():
            started = time.monotonic()
            code = self._run_once(argv)
            if self.stopping.is_set() or code is None:
                return
            if time.monotonic() - started > STEADY:
                delay = RESTART_FIRST
            self.calllog.server("console_exited", f"console process exited with status {code}: restarting "
                                f"in {delay:g}s", status=code, restart_in=delay)
            self.stopping.wait(delay)
            delay = min(delay * 2, RESTART_MAX)

    def _run_once(self, argv: list[str]) -> int | None:
        """Start the child, serve its control socket, wait for it to exit; None: not started (stopping)."""
        assert self.http is not None and self.channel is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with self.lock:
            if self.stopping.is_set():
                ours.close()
                theirs.close()
                return None
            fds = ["--control-fd", str(theirs.fileno()), "--http-fd", str(self.http.fileno())]
            self.proc = subprocess.Popen(
                [*argv, *fds], pass_fds=(theirs.fileno(), self.http.fileno()), stdin=subprocess.DEVNULL,
                stdout=sys.stderr, process_group=0)  # a terminal's Ctrl-C goes to ivr serve, which stops it
        theirs.close()
        self.channel.attach(ours)
        self.calllog.server("console_started", f"console process {self.proc.pid} started", pid=self.proc.pid)
        return self.proc.wait()

    async def stop(self) -> None:
        if self.service is not None:
            self.service.hang_up_clicks()  # on the server's loop, where the calls live
        self.stopping.set()
        with self.lock:
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, STOP_WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        if self.supervisor is not None:
            await asyncio.to_thread(self.supervisor.join, STOP_WAIT)
        if self.channel is not None:
            if self.calllog is not None and self.channel.feed in self.calllog.feeds:
                self.calllog.feeds.remove(self.channel.feed)
            await asyncio.to_thread(self.channel.close)
        if self.http is not None:
            self.http.close()


def listen(http: Any) -> socket.socket:
    """The console's listening TCP socket on ``[http] listen``, inheritable by the child."""
    host, port = http.listen
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot serve HTTP on {host}:{port}: {exc}") from None
    sock.set_inheritable(True)
    return sock


def command(config: Any) -> list[str]:
    """How the child is started: the same interpreter, the same deployment file and data folder."""
    argv = [sys.executable, "-m", "ivr.web", "--data", str(config.data)]
    if config.path is not None:
        argv += ["--config", str(config.path.resolve())]
    return argv


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
