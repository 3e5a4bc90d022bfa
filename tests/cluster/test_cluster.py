"""Two ``ivr serve`` nodes behind Kamailio, sharing one PostgreSQL database: the real parts, end to end.

The module starts a database of the session's PostgreSQL cluster (tests/postgres.py), gives it
the schema with ``ivr db upgrade``, starts two nodes (each its own SIP port, RTP range and data
folder; the same ``[storage]``) and Kamailio 5.6 with ``deploy/kamailio/kamailio.cfg`` as
shipped, told its ports with ``-A`` and probing every second.  sipp calls through Kamailio
(or straight to one node where a test names the node); a baresip phone registers through
Kamailio and is rung by the node that did not store its registration.  The tests run in file
order on the one cluster; a test that finds a node stopped by an earlier one starts it again
in a fresh data folder (the state is the database's).  Every wait is on a log line of a node or
of Kamailio, or a phone's event, never a sleep.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from ivr.runtime.journal import Journal
from ivr.storage import Storage
from ivr.storage.database import PostgresDatabase
from ivr.voicemail.pins import hash_pin
from ivr.voicemail.store import VoicemailStore
from tests.loopguard import LOOP_GUARD, refused
from tests.postgres import Postgres
from tests.transfer.harness import peers
from tests.voicemail.test_vm_call import SCENARIO as LEAVE_MESSAGE
from tests.voicemail.test_vm_call import _info_scenario

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CFG = REPO / "deploy" / "kamailio" / "kamailio.cfg"
CALL = str(HERE / "scenarios" / "call.xml")
KAMAILIO = shutil.which("kamailio")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.peer,
    pytest.mark.skipif(KAMAILIO is None or peers.SIPP is None, reason="kamailio or sipp is not installed"),
]

FLOW = """\
switch night
number +41000000200 -> leave
number +41000000201 -> listen
number +41000000202 -> desk
number default -> start

start:
    when night is on -> closed
    otherwise -> open

menu open:
    say "Open."
    ask "Press 1."
    wait 10s, retry 1 times
    1 -> bye
    exhausted -> bye

menu closed:
    say "Closed."
    ask "Press 1."
    wait 10s, retry 1 times
    1 -> bye
    exhausted -> bye

bye:
    hangup

leave:
    voicemail 200

listen:
    voicemail access 200

desk:
    transfer to 201 for 15s
        else -> bye
"""


@dataclass
class Kamailio:
    """Kamailio in the foreground; its stderr read by a thread, waited on like a node's log."""

    proc: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def address(self) -> str:  # what the sipp fixture dials
        return f"127.0.0.1:{self.port}"

    def read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def wait_line(self, pattern: str, *, after: int = 0, timeout: float = 20.0) -> int:
        """Index of the first line from ``after`` on matching ``pattern``."""
        regex, deadline = re.compile(pattern), time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(after, len(self.lines)):
                    if regex.search(self.lines[i]):
                        return i
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"kamailio never logged {pattern!r}:\n" + "\n".join(self.lines[-40:]))
                self.cond.wait(left)

    def mark(self) -> int:
        with self.cond:
            return len(self.lines)

    def tail(self, n: int = 40) -> str:
        with self.cond:
            return "\n".join(self.lines[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class Cluster:
    tmp: Path
    url: str
    toml: Path  # the deployment file the CLI is given (same [storage] as the nodes)
    ports: dict[str, int]
    start: Callable[[str], Any]
    nodes: dict[str, Any] = field(default_factory=dict)
    proxy: Kamailio | None = None
    restarts: int = 0

    def storage(self) -> Storage:
        """A third view of the shared state, as any node has it."""
        return Storage(self.tmp / "viewer", self.tmp / "shared", PostgresDatabase(self.url, max_size=2))

    def ivr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ivr", *args, "--config", str(self.toml)], capture_output=True,
                              text=True, timeout=60, cwd=self.tmp)

    def ensure(self, name: str) -> Any:
        """Node ``name``, started again (in a fresh data folder) if a test stopped it; Kamailio sees it up."""
        node = self.nodes[name]
        if node.proc.poll() is None:
            return node
        assert self.proxy is not None
        mark = self.proxy.mark()
        self.restarts += 1
        self.nodes[name] = self.start(f"{name}{self.restarts}")
        self.proxy.wait_line(rf"node up: .*sip:127\.0\.0\.1:{self.ports[name]}\b", after=mark)
        return self.nodes[name]


def incoming(node: Any, after: int = 0) -> list[str]:
    """Call-IDs of the calls a node took (its ``incoming`` records from index ``after`` on)."""
    with node.cond:
        return [r["call_id"] for r in node.records[after:] if r.get("event") == "incoming"]


def mark(node: Any) -> int:
    with node.cond:
        return len(node.records)


def calls(sipp: Callable[..., Any], cluster: Cluster, n: int, *, hold_ms: int = 500, rate: int = 10) -> Any:
    assert cluster.proxy is not None
    return sipp(CALL, cluster.proxy, calls=n, timeout=40, extra=("-d", str(hold_ms), "-r", str(rate), "-l", str(n)))


@pytest.fixture(scope="module")
def cluster(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory, tts_cache: Path) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    url = postgres.new_database("cluster")
    prompts = tmp / "prompts"
    prompts.mkdir()
    t = np.arange(8000) / 8000
    soundfile.write(prompts / "greeting.wav", (np.sin(2 * np.pi * 440 * t) * 0.2).astype(np.float32), 8000)
    flow = tmp / "cluster.ivr"
    flow.write_text(FLOW)
    sections = (
        f'[storage]\nurl = "{url}"\nshared = "{tmp / "shared"}"\npool_size = 4\n\n'
        '[registrar]\nnonce_secret = "shared by the nodes"\n\n'
        '[[extensions]]\nnumber = "201"\npassword = "secret201"\n\n'
        f'[[mailboxes]]\nnumber = "200"\ngreetings = {{ unavailable = "greeting.wav" }}\n'
        f'pin_hash = "{hash_pin("2580", "200")}"\n'
    )
    toml = tmp / "ivr.toml"
    toml.write_text(f'[server]\nflows = ["{flow}"]\n\n' + sections)
    ports = {"a": peers.free_port()}
    while (port := peers.free_port()) == ports["a"]:
        pass  # free_port holds nothing: the same port may come twice
    ports["b"] = port

    every_node: list[Any] = []  # started, restarted or killed: each is checked at the end

    def start(name: str) -> Any:
        folder = tmp / name
        folder.mkdir()
        port = ports[name[0]]
        node = peers.start_ivr(folder, [flow], sections=sections, tts_cache=tts_cache, prompt_folders=(prompts,),
                               extra=("--listen", f"127.0.0.1:{port}"), env=LOOP_GUARD)
        every_node.append(node)
        return node

    c = Cluster(tmp, url, toml, ports, start)
    upgraded = c.ivr("db", "upgrade")
    assert upgraded.returncode == 0 and "applied 0001_initial" in upgraded.stdout, upgraded.stderr
    try:
        with ThreadPoolExecutor(2) as pool:  # the two nodes start side by side
            started = {name: pool.submit(start, name) for name in ("a", "b")}
        failed = [f.exception() for f in started.values() if f.exception() is not None]
        c.nodes = {name: f.result() for name, f in started.items() if f.exception() is None}
        if failed:
            raise failed[0]  # type: ignore[misc]  # the node that did start is stopped below
        c.proxy = start_kamailio(tmp, ports)
        yield c
    finally:
        if c.proxy is not None:
            c.proxy.stop()
        for node in c.nodes.values():
            node.stop()
    # every node refused (and reported) any database query on its event loop once it served calls
    assert [line for node in every_node for line in refused(node.lines)] == [], "a node queried on its loop"


def start_kamailio(tmp: Path, ports: dict[str, int]) -> Kamailio:
    assert KAMAILIO is not None
    nodes = tmp / "dispatcher.list"
    nodes.write_text("".join(f"1 sip:127.0.0.1:{p} 0 0\n" for p in ports.values()))
    (tmp / "kamailio").mkdir()
    port = peers.free_port()
    cmd = [KAMAILIO, "-f", str(CFG), "-DD", "-E", "-A", f"LISTEN=udp:127.0.0.1:{port}",
           "-A", f'DISPATCHER_LIST="{nodes}"', "-A", "PROBE_INTERVAL=1", "-A", "NODE_TIMEOUT=3000",
           "-A", "INVITE_TIMEOUT=5000", "-Y", str(tmp / "kamailio"),
           "-P", str(tmp / "kamailio" / "kamailio.pid")]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, cwd=tmp)
    kamailio = Kamailio(proc, port)
    threading.Thread(target=kamailio.read, daemon=True).start()
    try:  # the UDP socket is bound: what is sent from now on waits in its buffer
        kamailio.wait_line(r"SO_RCVBUF is finally")
    except AssertionError:
        kamailio.stop()
        raise
    return kamailio


# --------------------------------------------------------------------------- tests


def test_calls_spread_and_a_switch_flipped_by_the_cli_is_seen_by_every_node(
    cluster: Cluster, sipp: Callable[..., Any]
) -> None:
    a, b = cluster.nodes["a"], cluster.nodes["b"]
    marks = {"a": mark(a), "b": mark(b)}
    calls(sipp, cluster, 6).check()
    taken = {name: incoming(node, marks[name]) for name, node in cluster.nodes.items()}
    assert len(taken["a"]) == len(taken["b"]) == 3  # round robin
    assert all("open" in node.steps(cid) for name, node in cluster.nodes.items() for cid in taken[name])

    flipped = cluster.ivr("switch", "night", "on")
    assert flipped.returncode == 0 and flipped.stdout == "night: on\n", flipped.stderr
    for node in (a, b):  # each node's watcher got the NOTIFY
        node.wait_for(lambda r: r.get("event") == "switches" and r.get("switches") == {"night": True},
                      what="switches night on")
    marks = {"a": mark(a), "b": mark(b)}
    calls(sipp, cluster, 4).check()
    taken = {name: incoming(node, marks[name]) for name, node in cluster.nodes.items()}
    assert len(taken["a"]) == len(taken["b"]) == 2
    assert all("closed" in node.steps(cid) for name, node in cluster.nodes.items() for cid in taken[name])
    assert cluster.ivr("switch", "night", "off").returncode == 0
    for node in (a, b):
        node.wait_for(lambda r: r.get("event") == "switches" and r.get("switches") == {"night": False},
                      what="switches night off")


def test_a_message_left_on_one_node_is_heard_on_the_other(cluster: Cluster, sipp: Callable[..., Any]) -> None:
    a, b = cluster.ensure("a"), cluster.ensure("b")
    sipp(str(LEAVE_MESSAGE), a, service="+41000000200", timeout=40).check()
    a.wait_line(r"sub_finished.*result='saved'", timeout=30)
    storage = cluster.storage()
    try:
        store = VoicemailStore.on(storage)
        # The caller hung up after speaking: the dialogue ends at once and the message is stored
        # by a storage worker right after (ivr.voicemail.leave); the shared index shows it then.
        deadline = time.monotonic() + 15
        while not store.list("200") and time.monotonic() < deadline:
            time.sleep(0.1)
        [message] = store.list("200")
        assert message.path.is_relative_to(cluster.tmp / "shared") and message.path.is_file()
        scenario = cluster.tmp / "listen.xml"
        scenario.write_text(_info_scenario([("2580#", 1200), ("1", 1500), ("2", 1200), ("*", 300)]))  # listen, save
        sipp(str(scenario), b, service="+41000000201", timeout=40).check()
        play = b.wait_for(lambda r: r.get("action") == "play" and "voicemail/200/" in str(r.get("path")),
                          timeout=10, what="the message played")
        assert play["path"] == store.data_ref(message.path)
        b.wait_line(r"sub_finished.*voicemail_access.*result='done'", timeout=10)
        assert [(m.id, m.status) for m in store.list("200")] == [(message.id, "saved")]  # b wrote a's message
    finally:
        storage.close()
    assert not any("prompt_error" in line for line in b.lines)


def test_a_registration_through_the_proxy_is_seen_by_the_other_node(cluster: Cluster, sipp: Callable[..., Any]) -> None:
    nodes = {name: cluster.ensure(name) for name in ("a", "b")}
    marks = {name: mark(node) for name, node in nodes.items()}
    assert cluster.proxy is not None
    sipp(str(peers.SCENARIOS / "register_auth.xml"), cluster.proxy, service="201",
         extra=("-au", "201", "-ap", "secret201")).check()

    def registered(name: str) -> bool:
        node = nodes[name]
        with node.cond:
            return any(r.get("event") == "register" and r.get("status") == 200 for r in node.records[marks[name]:])

    # The node's record is written by its call log's own thread: it may follow sipp's 200 by a moment.
    deadline = time.monotonic() + 10
    while not (taken := [name for name in nodes if registered(name)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    [took] = taken
    other = nodes["b" if took == "a" else "a"]
    fetch = cluster.tmp / "register_fetch.xml"
    regexp = r"sip:201@127\.0\.0\.1:[0-9]+;transport=UDP"
    fetch.write_text((HERE / "scenarios" / "register_fetch.xml").read_text().replace("@CONTACT@", regexp))
    sipp(str(fetch), other, service="201", extra=("-au", "201", "-ap", "secret201")).check()


def test_a_phone_registered_through_the_proxy_is_rung_by_the_other_node_through_it(
    cluster: Cluster, sipp: Callable[..., Any], baresip: Callable[[Path], Any]
) -> None:
    nodes = {name: cluster.ensure(name) for name in ("a", "b")}
    assert cluster.proxy is not None
    mic = cluster.tmp / "mic.wav"
    t = np.arange(8000 * 10) / 8000
    soundfile.write(mic, (np.sin(2 * np.pi * 600 * t) * 0.2).astype(np.float32), 8000)
    phone = baresip(mic)
    proxy_mark = cluster.proxy.mark()
    phone.command("uanew", f"<sip:201@{cluster.proxy.address}>;auth_pass=secret201;answermode=auto;regint=600")
    phone.wait_event("REGISTER_OK")
    # The node that stored the binding took the last REGISTER Kamailio dispatched (the first got the 401).
    last = cluster.proxy.wait_line(r"dispatch REGISTER .* to sip:127\.0\.0\.1:(\d+)", after=proxy_mark)
    while (i := _next_register(cluster.proxy, last + 1)) is not None:
        last = i
    port = int(re.search(r"to sip:127\.0\.0\.1:(\d+)", cluster.proxy.lines[last]).group(1))  # type: ignore[union-attr]
    other = nodes["b" if cluster.ports["a"] == port else "a"]
    start = mark(other)
    result = sipp(CALL, other, service="+41000000202", timeout=40, extra=("-d", "4000"))
    phone.wait_event("CALL_ESTABLISHED")
    result.check()
    phone.wait_event("CALL_CLOSED")
    with other.cond:
        records = other.records[start:]
    legs = [r for r in records if r.get("event") == "leg_invite"]  # also the earlier test's sipp contact
    assert legs and all(leg["to"] == cluster.proxy.address for leg in legs)  # where the REGISTERs came from
    assert any(r.get("event") == "transfer_result" and r.get("outcome") == "answered" for r in records)


def _next_register(proxy: Kamailio, after: int) -> int | None:
    with proxy.cond:
        return next((i for i in range(after, len(proxy.lines)) if "dispatch REGISTER" in proxy.lines[i]), None)


def test_sigterm_drains_a_node_and_the_proxy_sends_it_no_more_calls(cluster: Cluster, sipp: Callable[..., Any]) -> None:
    a, b = cluster.ensure("a"), cluster.ensure("b")
    assert cluster.proxy is not None
    start_a, start_b = mark(a), mark(b)
    long: dict[str, Any] = {}
    caller = threading.Thread(target=lambda: long.update(result=calls(sipp, cluster, 2, hold_ms=6000)))
    caller.start()
    try:
        a.wait_for(lambda r: len(incoming(a, start_a)) == 1, what="a call on node a")
        b.wait_for(lambda r: len(incoming(b, start_b)) == 1, what="a call on node b")
        proxy_mark = cluster.proxy.mark()
        a.terminate()  # SIGTERM: drain
        cluster.proxy.wait_line(rf"node down: .*sip:127\.0\.0\.1:{cluster.ports['a']}\b", after=proxy_mark)
        drained = mark(a)
        before_b = len(incoming(b, start_b))
        calls(sipp, cluster, 4).check()
        assert incoming(a, drained) == [] and len(incoming(b, start_b)) == before_b + 4, cluster.proxy.tail()
    finally:
        caller.join(60)
    long["result"].check()  # the call on a finished while it drained
    assert len(incoming(a, start_a)) == 1
    assert a.wait_exit(30) == 0


def test_kill_9_of_a_node_loses_no_completed_call_and_the_next_calls_go_to_the_other(
    cluster: Cluster, sipp: Callable[..., Any]
) -> None:
    a, b = cluster.ensure("a"), cluster.ensure("b")
    assert cluster.proxy is not None
    before = {"a": mark(a), "b": mark(b)}
    calls(sipp, cluster, 6).check()
    completed_on_a = incoming(a, before["a"])
    assert len(completed_on_a) == 3

    during = mark(a)
    batch: dict[str, Any] = {}
    caller = threading.Thread(target=lambda: batch.update(result=calls(sipp, cluster, 20, hold_ms=2000)))
    caller.start()
    try:
        a.wait_for(lambda r: len(incoming(a, during)) >= 3, what="three calls of the batch on a")
        proxy_mark = cluster.proxy.mark()
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        cluster.proxy.wait_line(rf"node down: .*sip:127\.0\.0\.1:{cluster.ports['a']}\b", after=proxy_mark)
    finally:
        caller.join(90)
    cut = incoming(a, during)
    assert 3 <= len(cut) < 20  # some of the 20 were on a when it died: those calls ended

    after_b = mark(b)
    calls(sipp, cluster, 6).check()  # every next call succeeds, on b
    assert len(incoming(b, after_b)) == 6

    storage = cluster.storage()
    try:
        journal = Journal.reader(storage)
        rows = {r.call_id: r for r in journal.query(limit=1000)}
        for cid in completed_on_a:  # journalled by the node that died: all there, complete
            assert rows[cid].ended is not None and rows[cid].outcome is not None, rows[cid]
        # The cut calls: journalled when they started, unless the node died within a moment of that.
        assert sum(cid in rows for cid in cut) >= len(cut) - 1
        [message] = VoicemailStore.on(storage).list("200")  # left on a in an earlier test: still there
        assert message.path.is_file()
    finally:
        storage.close()
