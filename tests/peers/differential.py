"""The differential test's harness: a flow test's call in virtual time, the same call on a live server.

``ivr test`` promises that a flow passing its tests behaves the same on a real call.  This module
checks that promise for every test case of ``flows/*.ivrtest``:

* **Virtual half.**  The case runs through the flow-test module's public API (imported in one
  ivr.runtime.flowtest and ivr.runtime.simulate).  From its trace come the caller's actions with their times
  (``caller`` lines: keys, speech, hang-up) and the far-end outcomes the case scripts (answer,
  busy, no answer... per target, with the times the virtual far ends answered and hung up).
* **Live half.**  ``ivr serve`` (started by tests/peers/conftest.py's :func:`start_ivr`) runs the
  example deployment (flows/ivr.toml, its ``[server]`` and ``[prompts]`` left to the harness and
  its trunk pointed at our far end) under libfaketime (:func:`faketime_env`), its clock starting
  at the case's ``at`` in the flow's time zone.  A scripted caller phone calls the case's number
  from its caller number and sends the keys as RFC 4733 events at the virtual offsets from the
  answer (plus :data:`KEY_MARGIN`; keys the virtual run takes at one instant go
  :data:`KEY_SPACING` apart), and hangs up when the virtual caller did.  One far-end phone is registered (digest auth) as
  every extension of the deployment and is the trunk's carrier too; for each leg it finds the
  caller's call in the server's log (``leg_invite``) and answers (when its virtual twin did),
  rings until cancelled, or refuses (486 busy, 404 unavailable, 500 failed) as that case says.
  Cases of one ``(at, switches)`` share a server, one call each; a few servers run at once
  (:data:`GROUPS_AT_ONCE`), beside the rest of the test session (:class:`LiveRun`).
  The phones are ivr.sip's sans-IO user agent on asyncio rather than sipp: one far end must
  behave differently per call, which one sipp scenario cannot, and a sipp per extension and
  case would be dozens of processes.
* **Comparison.**  Both sides are the call runtime's own log records: the virtual run keeps its
  runner's records (``SimulationResult.records``), the live server writes the same records as
  JSON lines.  One function, :func:`live_actions`, turns either into the same tuples (steps, say
  texts, play paths, transfers with plan and group, directory, voicemail mailbox and greeting,
  hang-ups, the caller hanging up, the outcome); :func:`side_by_side` prints both with the first
  difference marked.  Only the flow's own actions count: what a
  voicemail or directory dialogue says while it runs is the dialogue's business.

Speech cannot be driven through a live recogniser reliably: a case with speech input is
compared up to its first ``say``; the live caller hangs up :data:`CUT_SETTLE` after it and the
outcome is not compared.

Every wait is bounded: a live call that has not ended :data:`GRACE` seconds after the virtual
one did is hung up by the caller (and shows as such in the comparison).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from itertools import zip_longest
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from ivr.runtime import flowtest as ft
from ivr.runtime import simulate as sim
from ivr.sip.auth import DigestClient
from ivr.sip.events import (
    CallCancelled,
    CallEnded,
    IncomingCall,
    OutgoingCallAnswered,
    OutgoingCallFailed,
    RequestResult,
    UAEvent,
)
from ivr.sip.transport import SipEndpoint
from ivr.sip.ua import UserAgent
from tests.transfer.harness import peers  # tests/peers/conftest.py: start_ivr, free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "flows"
# Debian's libfaketime (package faketime), wherever the architecture puts it.
LIBFAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), None)

KEY_MARGIN = 0.3  # keys and hang-ups go this long after their virtual time: clear of a prompt's end
KEY_SPACING = 0.5  # seconds between the keys of one caller line that carries several
CUT_SETTLE = 1.0  # a case cut at its first speech hangs up this long after it
GRACE = 30.0  # a live call gets this long past the virtual call's end to end by itself
ANSWER_TIMEOUT = 20.0
LEG_LOOKUP_TIMEOUT = 10.0
DEFAULT_RING = 5.0  # a far end that answers though the virtual run never rang it: after this long
DEFAULT_TALK = 60.0

Action = tuple[str, ...]


# --------------------------------------------------------------------------- the virtual half


@dataclass(frozen=True)
class Case:
    """One test case of a ``.ivrtest`` file and its virtual run."""

    file: Path
    name: str
    scenario: Any  # the simulator's Scenario
    result: Any  # its SimulationResult (None: the case did not run)
    timezone: str
    called: str
    error: str = ""

    @property
    def id(self) -> str:
        return self.id_of(self.file, self.name)

    @staticmethod
    def id_of(file: Path, name: str) -> str:
        return f"{file.stem}: {name}"

    @property
    def group(self) -> tuple[float, tuple[tuple[str, bool], ...]]:
        """Cases with the same start time and switches can share one server."""
        return self.scenario.start, tuple(sorted(self.scenario.switches.items()))


def deployment_and_program(test_file: Any, config_path: Path) -> tuple[Any, Any]:
    from ivr.config import load_config
    from ivr.runtime.deployment import load_flow

    cfg = load_config(config_path)
    return cfg, load_flow(test_file.flows, prompt_folders=cfg.prompt_folders, config=cfg)


def case_ids(folder: Path = EXAMPLES) -> list[str]:
    """The ids of :func:`load_cases`' cases, from the files alone (nothing runs)."""
    return [
        Case.id_of(path, test.name)
        for path in ft.find_test_files([folder])
        for test in ft.parse_test_file(path).tests
    ]


def load_cases(folder: Path = EXAMPLES) -> list[Case]:
    """Every case of every ``*.ivrtest`` in ``folder``, run in virtual time."""
    cases = []
    for path in ft.find_test_files([folder]):
        test_file = ft.parse_test_file(path)
        cfg, program = deployment_and_program(test_file, folder / "ivr.toml")
        tz = program.settings.timezone
        for test in test_file.tests:
            outcome = ft.run_test(path, program, test, config=cfg)
            scenario = ft.scenario_for(test, tz)
            called = scenario.called or sim.first_number(program)
            cases.append(Case(path, test.name, scenario, outcome.trace, tz, called, outcome.error))
    return cases


def virtual_case(program: Any, cfg: Any, scenario: Any, name: str) -> Case:
    """A case made up by a test (the property test's random keys) and its virtual run."""
    result = sim.simulate(program, scenario, config=cfg)
    called = scenario.called or sim.first_number(program)
    return Case(
        EXAMPLES / "acme.ivrtest", name, scenario, result, program.settings.timezone, called
    )


@dataclass(frozen=True)
class CallerScript:
    """What the live caller does, in seconds from the answer."""

    keys: tuple[tuple[float, str], ...]
    # When the virtual caller hung up (a speech cut: CUT_SETTLE after the speech).
    hangup_at: float | None
    cut_at: float | None  # the first speech input: the comparison stops here
    ends_at: float  # when the virtual call ended


def caller_script(result: Any) -> CallerScript:
    """The virtual caller's keys and hang-up with their times; speech cuts the script short."""
    keys: list[tuple[float, str]] = []
    hangup_at = None
    for line in result.lines:
        if line.kind != "caller":
            continue
        event = line.data.get("event")
        if event == "speech":
            # Hang up a little after the speech: the keys before it must be handled first.
            cut = line.at + CUT_SETTLE
            return CallerScript(tuple(keys), cut, line.at, cut)
        if event == "key":
            # One caller line may carry several keys (a directory spelling `932#`), and two
            # lines may share an instant; a phone sends one key after the other.
            for digit in str(line.data["digit"]):
                at = line.at if not keys else max(line.at, keys[-1][0] + KEY_SPACING)
                keys.append((at, digit))
        elif event == "hangup":
            hangup_at = line.at
    return CallerScript(tuple(keys), hangup_at, None, result.duration)


@dataclass(frozen=True)
class FarEndScript:
    """How the far ends of one case behave: per target, and when the virtual ones answered and left."""

    outcome: Callable[[str], str]
    answered_at: dict[str, float] = field(default_factory=dict)
    ended_at: float | None = None

    def answer_delay(self, target: str, since_answer: float) -> float:
        """Seconds from now until ``target`` picks up (now = ``since_answer`` s after the caller's answer)."""
        at = self.answered_at.get(target)
        return DEFAULT_RING if at is None else max(0.0, at - since_answer)

    def talk(self, since_answer: float) -> float:
        return DEFAULT_TALK if self.ended_at is None else max(0.0, self.ended_at - since_answer)


def far_end_script(case: Case) -> FarEndScript:
    answered: dict[str, float] = {}
    ended = None
    for line in case.result.lines:
        if line.kind != "result":
            continue
        if line.data.get("event") == "transfer_result" and line.data.get("outcome") == "answered":
            answered.setdefault(str(line.data.get("target")), line.at)
        elif line.data.get("event") == "bridge_ended" and ended is None:
            ended = line.at
    return FarEndScript(
        lambda target: str(sim.transfer_outcome(case.scenario, target)), answered, ended
    )


# --------------------------------------------------------------------------- the comparison

# The fields of each flow action that must agree (the rest, e.g. prompt ids, may differ).
FIELDS: dict[str, tuple[str, ...]] = {
    "step": ("step",),
    "say": ("text",),
    "play": ("path",),
    "transfer": ("plan", "group"),
    "directory": ("name",),
    "voicemail": ("mailbox", "greeting"),
    "voicemail_access": ("mailbox",),
    "hangup": ("reason",),
}
DIALOGUES = frozenset({"directory", "voicemail", "voicemail_access"})
CALLER_HANGS_UP: Action = ("caller hangs up",)


def _action(kind: str, data: dict[str, Any]) -> Action:
    values = [_plan(data.get(f)) if f == "plan" else str(data.get(f, "")) for f in FIELDS[kind]]
    return (kind, *values)


def _plan(value: Any) -> str:
    """A ring plan (lists in the call log, both sides) as ``201,202/25s; 204/15s``."""
    return "; ".join(f"{','.join(targets)}/{float(timeout):g}s" for targets, timeout in value or ())


def _outcome(result: Any, detail: Any) -> Action:
    return ("outcome", str(result or "unfinished"), str(detail or ""))


def virtual_actions(result: Any, *, cut: bool = False) -> list[Action]:
    """The virtual call's actions: its runtime's own log records, read as the live server's are.

    With ``cut``, only what came before the caller's first speech was recognised.
    """
    records = list(result.records)
    if cut:
        first = next((i for i, r in enumerate(records) if r.get("event") == "speech" and "to" in r), len(records))
        records = records[:first]
    return live_actions(records, cut=cut)


def live_actions(records: Iterable[dict[str, Any]], *, cut: bool = False) -> list[Action]:
    """The server's log records of one call as action tuples; with ``cut``, up to the caller's hang-up."""
    out: list[Action] = []
    in_dialogue = False  # between sub_started and sub_finished
    for record in records:
        # An event's own fields may include one named "action" (action_done): not an action.
        event = record.get("event")
        kind = None if event is not None else record.get("action")
        if event == "sub_started":
            in_dialogue = True
        elif event == "sub_finished":
            in_dialogue = False
        elif event in ("bye", "cancel"):
            if cut:
                return out
            out.append(CALLER_HANGS_UP)
        elif event == "ended" and not cut:
            out.append(_outcome(record.get("outcome"), record.get("detail")))
        elif kind in FIELDS and not in_dialogue:
            out.append(_action(kind, record))
    return out


def side_by_side(virtual: Sequence[Action], live: Sequence[Action]) -> str:
    """Both sequences in two columns, ``>>`` on the first row where they differ."""
    rows = list(zip_longest(virtual, live))
    first = next((i for i, (a, b) in enumerate(rows) if a != b), None)
    width = max([len("virtual")] + [len(_show(a)) for a in virtual]) + 2
    lines = [f"   {'virtual':<{width}}live"]
    for i, (a, b) in enumerate(rows):
        mark = ">> " if i == first else "   "
        lines.append(f"{mark}{_show(a):<{width}}{_show(b)}")
    return "\n".join(lines)


def _show(action: Action | None) -> str:
    return "-" if action is None else " | ".join(action)


# --------------------------------------------------------------------------- the deployment


def deployment_sections(far_end_port: int, config: Path = EXAMPLES / "ivr.toml") -> str:
    """flows/ivr.toml without [server] and [prompts] (the peer harness writes those), trunks to us.

    [http] is left out too: its fixed port would collide between tests running at once.  So is
    [overload]: the cases' calls are compared with their flow tests, not shed while a busy test
    machine lags (``max_lag = 0``; shedding is tested in tests/peers/test_overload.py).
    """
    kept: list[str] = []
    skipping = False
    for line in config.read_text(encoding="utf-8").splitlines():
        header = re.match(r"\s*\[\[?([a-z_]+)\]?\]", line)
        if header:
            skipping = header.group(1) in ("server", "prompts", "http", "overload")
        if skipping:
            continue
        line = re.sub(r'^(\s*host\s*=\s*)"[^"]*"', r'\1"127.0.0.1"', line)
        line = re.sub(r"^(\s*port\s*=\s*)\d+", rf"\g<1>{far_end_port}", line)
        kept.append(line)
        if line.strip() == "[[extensions]]":
            # Cases share a server: one case's call must not make an extension busy for another's.
            kept.append("call_waiting = true")
    return "\n".join(kept) + "\n[overload]\nmax_lag = 0\n"


def faketime_env(start: float, timezone: str) -> dict[str, str]:
    """The environment that starts a process with its clock at ``start`` (Debian's libfaketime).

    This is what ``faketime -f '@...'`` sets up; the wrapper program itself is not used because
    it forks and dies on SIGTERM, leaving the server running without its parent.  The time is
    local time in the flow's zone, and the process runs in that zone.  libfaketime (0.9.10)
    fakes the monotonic clock too, starting it at the same instant and running it at the real
    rate: asyncio's timers and ``time.sleep`` work so.  Leaving the monotonic clock alone
    (``FAKETIME_DONT_FAKE_MONOTONIC=1``) is not an option: every ``time.sleep``
    (``subprocess.run(timeout=...)`` of the TTS pre-render) then fails with EINVAL.  Either way a
    timed wait on a condition variable never returns under libfaketime; the server's threads do
    not make one while it serves calls.
    """
    assert LIBFAKETIME is not None
    local = datetime.fromtimestamp(start, ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M:%S")
    return {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": f"@{local}", "TZ": timezone}


def server_clock(server: Any) -> float:
    """The server's idea of now when it said it was ready (the ``ts`` of its first record)."""
    with server.cond:
        stamped = [r["ts"] for r in server.records if "ts" in r]
    assert stamped, "the server wrote no time-stamped record:\n" + server.tail()
    return (
        datetime.strptime(stamped[0], "%Y-%m-%dT%H:%M:%S.%fZ")
        .replace(tzinfo=ZoneInfo("UTC"))
        .timestamp()
    )


# --------------------------------------------------------------------------- the phones


class Phone:
    """One sans-IO :class:`UserAgent` on a loopback UDP port, its events handed out by Call-ID."""

    def __init__(self) -> None:
        self.ua = UserAgent(local_host="127.0.0.1", local_port=0, user_agent="ivr-differential")
        self.handlers: dict[str, Callable[[UAEvent], None]] = {}
        self.on_incoming: Callable[[IncomingCall], None] | None = None
        self.endpoint: SipEndpoint | None = None

    async def start(self, port: int = 0) -> int:
        self.endpoint = SipEndpoint(self.ua, on_events=self._events)
        address = await self.endpoint.start("127.0.0.1", port)
        self.ua.local_port = address.port
        return address.port

    @property
    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def service(self) -> None:
        assert self.endpoint is not None
        self.endpoint.service()

    def _events(self) -> None:
        while (event := self.ua.next_event()) is not None:
            if isinstance(event, IncomingCall) and self.on_incoming is not None:
                self.on_incoming(event)
                continue
            handler = self.handlers.get(getattr(event, "call_id", ""))
            if handler is not None:
                handler(event)

    def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.close()


def _sdp(port: int) -> bytes:
    return (
        "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=phone\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
    ).encode()


def _remote_media(sdp: bytes) -> tuple[str, int]:
    text = sdp.decode(errors="replace")
    host = re.search(r"^c=IN IP4 (\S+)", text, re.M)
    port = re.search(r"^m=audio (\d+)", text, re.M)
    assert host and port, f"no audio address in SDP:\n{text}"
    return host.group(1), int(port.group(1))


_EVENT_CODES = {
    **{str(d): d for d in range(10)},
    "*": 10,
    "#": 11,
    "A": 12,
    "B": 13,
    "C": 14,
    "D": 15,
}


class RtpStream(asyncio.DatagramProtocol):
    """A phone's audio: PCMU silence every 20 ms, RFC 4733 key events (100 ms) in between."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.remote: tuple[str, int] | None = None
        self.ssrc = secrets.randbits(32)
        self.seq = secrets.randbits(16)
        self.ts = secrets.randbits(32)
        self.keys: list[str] = []  # keys waiting their turn: one event at a time
        self._event: tuple[int, int, int] | None = None  # (code, its timestamp, packets sent)
        self._tick: asyncio.TimerHandle | None = None
        self.rtcp: socket.socket | None = None

    @classmethod
    async def open(cls) -> RtpStream:
        """On a port whose next one, where the server sends its RTCP reports, it holds too: those
        reports never reach a socket of another test running meanwhile."""
        loop = asyncio.get_running_loop()
        for _ in range(50):
            _, stream = await loop.create_datagram_endpoint(cls, local_addr=("127.0.0.1", 0))
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rtcp.bind(("127.0.0.1", stream.port + 1))
            except OSError:
                rtcp.close()
                stream.close()
                continue
            stream.rtcp = rtcp  # never read: what the kernel cannot buffer is dropped
            return stream
        raise RuntimeError("no free RTP/RTCP port pair on 127.0.0.1")

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        pass  # what the server plays is not compared here

    def start(self, remote: tuple[str, int]) -> None:
        self.remote = remote
        loop = asyncio.get_running_loop()
        self._send_tick(loop.time(), 0)

    def _send_tick(self, origin: float, n: int) -> None:
        if self.transport is None or self.remote is None:
            return
        self.transport.sendto(self._next_packet(), self.remote)
        self.ts = (self.ts + 160) % 2**32
        loop = asyncio.get_running_loop()
        self._tick = loop.call_at(origin + (n + 1) * 0.02, self._send_tick, origin, n + 1)

    def _packet(self, pt: int, payload: bytes, *, marker: bool, ts: int | None = None) -> bytes:
        self.seq = (self.seq + 1) % 2**16
        first = struct.pack(
            "!BBHII",
            0x80,
            (0x80 if marker else 0) | pt,
            self.seq,
            self.ts if ts is None else ts,
            self.ssrc,
        )
        return first + payload

    def key(self, digit: str) -> None:
        self.keys.append(digit)

    def _next_packet(self) -> bytes:
        """Silence, or the next packet of a key: five updates 20 ms apart, then the end packet
        three times (RFC 4733 2.5); each event has the timestamp of its first packet."""
        if self._event is None and self.keys:
            self._event = (_EVENT_CODES[self.keys.pop(0)], self.ts, 0)
        if self._event is None:
            return self._packet(0, b"\xff" * 160, marker=False)
        code, start, sent = self._event
        self._event = (code, start, sent + 1) if sent < 7 else None
        if sent < 5:
            payload = struct.pack("!BBH", code, 10, 160 * (sent + 1))
        else:
            payload = struct.pack("!BBH", code, 0x80 | 10, 800)
        return self._packet(101, payload, marker=sent == 0, ts=start)

    def close(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        if self.rtcp is not None:
            self.rtcp.close()
            self.rtcp = None


@dataclass
class LiveCall:
    """What happened on the live side of one case."""

    call_id: str = ""
    answered_at: float | None = None  # loop time of the caller's 200 OK
    records: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


async def place_call(
    phone: Phone, server: Any, case: Case, script: CallerScript, live: LiveCall, far: FarEnd
) -> None:
    """The caller: dial, send the keys at their times, hang up when the virtual caller did."""
    loop = asyncio.get_running_loop()
    rtp = await RtpStream.open()
    answered: asyncio.Future[bytes] = loop.create_future()
    ended: asyncio.Future[str] = loop.create_future()

    def on_event(event: UAEvent) -> None:
        if isinstance(event, OutgoingCallAnswered) and not answered.done():
            answered.set_result(event.answer)
        elif isinstance(event, OutgoingCallFailed) and not answered.done():
            answered.set_exception(
                AssertionError(f"the call failed: {event.status} {event.reason}")
            )
        elif isinstance(event, CallEnded) and not ended.done():
            ended.set_result(event.reason)

    uri = f"sip:{case.called}@{server.address}"
    live.call_id = phone.ua.invite(
        uri,
        _sdp(rtp.port),
        phone.now,
        from_uri=f"sip:{case.scenario.caller}@127.0.0.1",
        destination=(server.host, server.port),
        auth=phone_credentials(case),  # `caller phone 201`: the phone answers the 407 as a real one does
    )
    phone.handlers[live.call_id] = on_event
    far.calls[live.call_id] = (far_end_script(case), live)  # before any leg of this call can ring
    phone.service()
    handles: list[asyncio.TimerHandle] = []
    try:
        answer = await asyncio.wait_for(answered, ANSWER_TIMEOUT)
        t0 = live.answered_at = loop.time()
        rtp.start(_remote_media(answer))
        for at, digit in script.keys:
            handles.append(loop.call_at(t0 + at + KEY_MARGIN, rtp.key, digit))
        if script.hangup_at is not None:
            handles.append(
                loop.call_at(t0 + script.hangup_at + KEY_MARGIN, _hang_up, phone, live.call_id)
            )
        deadline = t0 + script.ends_at + GRACE
        try:
            await asyncio.wait_for(asyncio.shield(ended), max(1.0, deadline - loop.time()))
        except TimeoutError:
            live.notes.append(
                f"the live call had not ended {GRACE:g}s after the virtual one: the caller hung up"
            )
            _hang_up(phone, live.call_id)
    finally:
        for handle in handles:
            handle.cancel()
        rtp.close()
    await collect(server, case, live)


def phone_credentials(case: Case) -> DigestClient | None:
    """The digest client of a ``caller phone N`` case's extension (None for callers from outside)."""
    if not case.scenario.phone:
        return None
    cfg, _ = deployment_and_program(ft.parse_test_file(case.file), EXAMPLES / "ivr.toml")
    ext = cfg.extension(case.scenario.caller)
    return DigestClient(ext.username or ext.number, ext.password)


async def collect(server: Any, case: Case, live: LiveCall) -> None:
    """The call's records once it ended.  A phone's call ends twice: its first INVITE is
    challenged (407, not part of the virtual run, which answers the challenge beforehand)."""
    rounds = 2 if case.scenario.phone else 1

    def ended() -> list[int]:
        records = server.call_records(live.call_id)
        return [i for i, r in enumerate(records) if r.get("event") == "ended"]

    await asyncio.to_thread(
        server.wait_for,
        lambda r: r.get("call_id") == live.call_id and len(ended()) >= rounds,
        15.0,
        f"ended for {live.call_id}",
    )
    records = server.call_records(live.call_id)
    live.records = records[ended()[0] + 1 :] if rounds == 2 else records


def _hang_up(phone: Phone, call_id: str) -> None:
    phone.ua.hangup(call_id, phone.now)
    phone.service()


class FarEnd:
    """Every extension of the deployment (registered with its password) and the trunk's carrier.

    A leg's INVITE is matched to the caller's call through the server's ``leg_invite`` record;
    the case of that call says whether the target answers (when its virtual twin did), is busy
    (486), unavailable (404), failed (500) or rings until cancelled.
    """

    def __init__(self, phone: Phone, server: Any) -> None:
        self.phone = phone
        self.server = server
        self.calls: dict[str, tuple[FarEndScript, LiveCall]] = {}  # caller's Call-ID -> its case
        self.tasks: set[asyncio.Task[None]] = set()
        self.streams: list[RtpStream] = []
        phone.on_incoming = self._incoming

    async def register(self, extensions: Sequence[Any]) -> None:
        await asyncio.gather(*(self._register(ext) for ext in extensions))

    async def _register(self, ext: Any) -> None:
        loop = asyncio.get_running_loop()
        uri = f"sip:{self.server.address}"
        call_id = f"reg-{secrets.token_hex(6)}@127.0.0.1"
        auth = DigestClient(ext.username, ext.password)
        extra: list[tuple[str, str]] = []
        for cseq in (1, 2):
            done: asyncio.Future[RequestResult] = loop.create_future()
            self.phone.handlers[call_id] = lambda e, f=done: (
                None if f.done() else f.set_result(cast(RequestResult, e))
            )
            headers = [
                ("From", f"<sip:{ext.username}@{self.server.address}>;tag={secrets.token_hex(4)}"),
                ("To", f"<sip:{ext.username}@{self.server.address}>"),
                ("Call-ID", call_id),
                ("CSeq", f"{cseq} REGISTER"),
                ("Contact", self.phone.ua.contact(user=ext.number)),
                ("Expires", "3600"),
                *extra,
            ]
            self.phone.ua.send_request(
                "REGISTER",
                uri,
                headers,
                self.phone.now,
                destination=(self.server.host, self.server.port),
            )
            self.phone.service()
            result = await asyncio.wait_for(done, 10.0)
            if result.status == 200:
                return
            assert result.status == 401 and result.response is not None and cseq == 1, (
                f"extension {ext.number} could not register: {result.status}"
            )
            challenges = [
                ("WWW-Authenticate", v) for v in result.response.headers.get_all("WWW-Authenticate")
            ]
            extra = auth.credentials(401, challenges, "REGISTER", uri)

    def _incoming(self, event: IncomingCall) -> None:
        task = asyncio.get_running_loop().create_task(self._leg(event))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _leg(self, event: IncomingCall) -> None:
        loop = asyncio.get_running_loop()
        ua, call_id = self.phone.ua, event.call_id
        over: asyncio.Future[None] = loop.create_future()
        self.phone.handlers[call_id] = lambda e: (
            None
            if over.done() or not isinstance(e, CallCancelled | CallEnded)
            else over.set_result(None)
        )
        record = await asyncio.to_thread(
            self.server.wait_for,
            lambda r: r.get("event") == "leg_invite" and r.get("leg") == call_id,
            LEG_LOOKUP_TIMEOUT,
            f"leg_invite for {call_id}",
        )
        script, live = self.calls[record["call_id"]]
        target = str(record["target"])  # a follow-me mobile is a target of its own
        outcome = script.outcome(target)
        refusal = {"busy": 486, "unavailable": 404, "failed": 500}.get(outcome)
        if refusal is not None:
            ua.reject(call_id, refusal, self.phone.now)
            self.phone.service()
            return
        ua.ringing(call_id, self.phone.now)
        self.phone.service()
        if outcome != "answered":
            await asyncio.wait_for(over, 600)  # rings until the server cancels it
            return
        # A phone's call (`caller phone N`) is answered only when this leg is: its virtual twin
        # answered the leg at the caller's answer, so the time counts from now.
        base = live.answered_at if live.answered_at is not None else loop.time()
        delay = script.answer_delay(target, loop.time() - base)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(over), delay)
        if over.done():
            return  # cancelled while it rang
        rtp = await RtpStream.open()
        self.streams.append(rtp)
        ua.answer(call_id, _sdp(rtp.port), self.phone.now)
        self.phone.service()
        if event.offer:
            rtp.start(_remote_media(event.offer))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(over), script.talk(loop.time() - (live.answered_at or base))
            )
        rtp.close()
        if not over.done():
            _hang_up(self.phone, call_id)

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for rtp in self.streams:
            rtp.close()


# --------------------------------------------------------------------------- running a group


@dataclass
class Group:
    """Cases that share one server: the same start time and switches."""

    start: float
    switches: dict[str, bool]
    timezone: str
    cases: list[Case]


def groups_of(cases: Iterable[Case]) -> list[Group]:
    by_key: dict[Any, Group] = {}
    for case in cases:
        if case.result is None:
            continue
        group = by_key.setdefault(
            case.group, Group(case.scenario.start, dict(case.scenario.switches), case.timezone, [])
        )
        group.cases.append(case)
    return list(by_key.values())


async def call_cases(
    server: Any, far_phone: Phone, cases: Sequence[Case], extensions: Sequence[Any]
) -> dict[str, LiveCall]:
    """Register the far end (``far_phone``, where the trunk points) and place every case's call at once."""
    caller_phone = Phone()
    await caller_phone.start()
    far = FarEnd(far_phone, server)
    lives = {case.id: LiveCall() for case in cases}
    try:
        await far.register(extensions)
        await asyncio.gather(
            *(_one_call(caller_phone, far, server, case, lives[case.id]) for case in cases)
        )
    finally:
        legs = list(far.tasks)
        far.close()
        await asyncio.gather(*legs, return_exceptions=True)  # legs still ringing end here, cancelled
        caller_phone.close()
    return lives


def start_server(
    folder: Path,
    start: float,
    timezone: str,
    far_port: int,
    *,
    switches: dict[str, bool],
    tts_cache: Path | None,
) -> Any:
    """``ivr serve`` on the example flows and deployment, its clock at ``start`` (checked)."""
    import json

    env = faketime_env(start, timezone)
    folder.mkdir(parents=True, exist_ok=True)
    server = peers.start_ivr(
        folder,
        sorted(EXAMPLES.glob("*.ivr")),
        sections=deployment_sections(far_port),
        data_files={"switches.json": json.dumps(switches)} if switches else None,
        env=env,
        tts_cache=tts_cache,
    )
    clock = server_clock(server)
    if not 0 <= clock - start < 300:
        server.stop()
        raise AssertionError(f"the server's clock is not the case's time: {clock} vs {start}")
    return server


async def run_group(
    group: Group,
    folder: Path,
    extensions: Sequence[Any],
    tts_cache: Path | None,
    *,
    wait: asyncio.Event | None = None,
    started: asyncio.Event | None = None,
    servers: list[Any] | None = None,
) -> dict[str, LiveCall]:
    """The group's server under faketime and its calls.

    ``wait``: start the server only once this is set; ``started``: set once it has started (or
    failed); ``servers``: where the server goes once it has started (for :meth:`LiveRun.close`).
    """
    if wait is not None:
        await wait.wait()
    far_phone = Phone()  # bound before the server starts: its trunk points at this port
    far_port = await far_phone.start()

    def start() -> Any:
        server = start_server(
            folder, group.start, group.timezone, far_port, switches=group.switches, tts_cache=tts_cache
        )
        if servers is not None:  # even when this coroutine was cancelled while the server started
            servers.append(server)
        return server

    try:
        server = await asyncio.to_thread(start)
    except Exception as exc:  # noqa: BLE001 -- the group's cases fail with the reason, the others go on
        far_phone.close()
        return {
            case.id: LiveCall(notes=[f"the server did not start: {exc}"]) for case in group.cases
        }
    finally:
        if started is not None:
            started.set()
    try:
        return await call_cases(server, far_phone, group.cases, extensions)
    finally:
        far_phone.close()
        await asyncio.to_thread(server.stop)


async def _one_call(phone: Phone, far: FarEnd, server: Any, case: Case, live: LiveCall) -> None:
    try:
        await place_call(phone, server, case, caller_script(case.result), live, far)
    except (AssertionError, TimeoutError) as exc:
        live.notes.append(f"live call failed: {exc}")
        live.records = server.call_records(live.call_id) if live.call_id else []
        if live.call_id:  # a phone's call that ended unanswered (busy, not allowed out)
            with contextlib.suppress(AssertionError):
                await collect(server, case, live)


GROUPS_AT_ONCE = 6  # servers with their calls up at once: the live calls keep their timing on 2 busy cores


def _length(group: Group) -> float:
    return max(case.result.duration for case in group.cases)


def run_live(
    cases: Sequence[Case],
    tmp: Path,
    extensions: Sequence[Any],
    tts_cache: Path | None,
    *,
    at_once: int = GROUPS_AT_ONCE,
) -> dict[str, LiveCall]:
    """Every group on its own server, the longest calls first, at most ``at_once`` servers at a time;
    the first server starts alone (it fills the TTS cache)."""
    return asyncio.run(_run_groups(cases, tmp, extensions, tts_cache, at_once))


async def _run_groups(
    cases: Sequence[Case],
    tmp: Path,
    extensions: Sequence[Any],
    tts_cache: Path | None,
    at_once: int,
    servers: list[Any] | None = None,
) -> dict[str, LiveCall]:
    groups = sorted(groups_of(cases), key=_length, reverse=True)
    first_up = asyncio.Event()
    slots = asyncio.Semaphore(at_once)

    async def one(i: int, group: Group) -> dict[str, LiveCall]:
        async with slots:  # taken in list order: the longest groups start first
            return await run_group(
                group,
                tmp / f"server{i}",
                extensions,
                tts_cache,
                wait=None if i == 0 else first_up,
                started=first_up if i == 0 else None,
                servers=servers,
            )

    out: dict[str, LiveCall] = {}
    for lives in await asyncio.gather(*(one(i, g) for i, g in enumerate(groups))):
        out.update(lives)
    return out


class LiveRun:
    """The cases (``load()``: the virtual runs) and their live calls (:func:`run_live`'s groups) on a
    thread of their own, started at once, so that minutes of real-time calls pass while other
    tests run.  :meth:`result` waits for them; :meth:`close` cuts a run still going short (every
    server it started is stopped)."""

    def __init__(
        self,
        load: Callable[[], tuple[list[Case], Sequence[Any]]],
        tmp: Path,
        tts_cache: Path | None,
    ) -> None:
        self._load, self._tmp, self._tts_cache = load, tmp, tts_cache
        self._lock = threading.Lock()
        self._closing = False
        self._task: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None
        self._servers: list[Any] = []  # every server started, stopped again by close() if need be
        self._done: Future[tuple[list[Case], dict[str, LiveCall]]] = Future()
        self._thread = threading.Thread(target=self._run, name="differential-live", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            cases, extensions = self._load()
            with asyncio.Runner() as runner:  # as asyncio.run: what is left is cancelled at the end
                lives = runner.run(self._main(cases, extensions))
            self._done.set_result((cases, lives))
        except BaseException as exc:  # noqa: BLE001 -- handed to whoever waits for the result
            self._done.set_exception(exc)

    async def _main(self, cases: list[Case], extensions: Sequence[Any]) -> dict[str, LiveCall]:
        with self._lock:
            if self._closing:
                raise RuntimeError("the live run was cut short before it began")
            task = asyncio.current_task()
            assert task is not None
            self._task = (asyncio.get_running_loop(), task)
        return await _run_groups(
            cases, self._tmp, extensions, self._tts_cache, GROUPS_AT_ONCE, self._servers
        )

    def result(self, timeout: float) -> tuple[list[Case], dict[str, LiveCall]]:
        """Every case and, by case id, its live call."""
        return self._done.result(timeout)

    def close(self) -> None:
        with self._lock:
            self._closing = True
            if self._task is not None and not self._task[1].done():
                loop, task = self._task
                with contextlib.suppress(RuntimeError):  # it closed in the meantime
                    loop.call_soon_threadsafe(task.cancel)
        self._thread.join(120)
        for server in self._servers:  # cut short: some calls (and their servers) never finished
            server.stop()
