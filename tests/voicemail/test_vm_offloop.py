"""Storage on a node's event loop: never.  A store that stops answering holds its own caller only.

The server's own CallRunner runs calls on a real asyncio loop, with the storage workers of
``ivr serve`` (a thread pool), on both back ends, with every database query made on a thread
that runs an event loop refused (``loop_guard``): the voicemail dialogues (leaving a message,
the owner's menu) and a transfer's registration lookup work, and none of them queries on the
loop.  A store that fails ends the dialogue ``failed``, except a message being stored: that one
stays on disk for recovery and the caller hears goodbye.  A store whose queries wait on a threading.Event shows the loop firing its timers (every
other call of the node lives on them) while a query is held, the dialogue going on after it,
and a message left as the caller hangs up stored after the call is over.
"""

from __future__ import annotations

import asyncio
import io
import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from ivr.config import Config, Extension, Mailbox
from ivr.dsl.events import ActionDone, RecordingDone, StartRecording
from ivr.runtime.call import CallRunner
from ivr.runtime.calllog import CallLog
from ivr.runtime.deployment import load_flow
from ivr.runtime.edges import SimulatedMedia
from ivr.runtime.services import Services
from ivr.sip.events import CallEnded, IncomingCall
from ivr.sip.message import Request, parse_message
from ivr.sip.registrar import Binding
from ivr.storage import Storage
from ivr.storage.database import PostgresDatabase, SqliteDatabase, StorageError
from ivr.storage.migrations import upgrade
from ivr.voicemail.leave import LeaveMessage
from ivr.voicemail.pins import hash_pin
from ivr.voicemail.service import VoicemailService
from ivr.voicemail.store import Counts, Message, VoicemailStore

from .helpers import Driver, record, texts

HOLD = 10.0  # seconds a held query waits at most (the test releases it long before)
PIN = "2580"
BOX = Mailbox(number="200", owner="Alice Example", pin_hash=hash_pin(PIN, "200"))
WAITING = {"opening", "storing", "checking_pin", "counting", "listing", "finding", "changing"}


# --------------------------------------------------------------------------- the world around one call


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "sqlite":
        s = Storage(tmp_path / "data", tmp_path / "data")
    else:
        db = PostgresDatabase(request.getfixturevalue("postgres").new_database("offloop"))
        upgrade(db)
        s = Storage(tmp_path / "node", tmp_path / "shared", db)
    yield s
    s.close()


@pytest.fixture
def loop_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every query made on a thread that runs an event loop fails, and so does the test, even where
    the runtime would have taken the failure in its stride (a journal that cannot open)."""
    refused: list[str] = []
    for cls in (SqliteDatabase, PostgresDatabase):
        monkeypatch.setattr(cls, "transaction", _guarded(cls.transaction, refused))
    yield
    assert refused == []


def _guarded(transaction: Callable[[Any], Any], refused: list[str]) -> Callable[[Any], Any]:
    def guarded(self: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return transaction(self)
        refused.append(self.name)
        raise StorageError(f"{self.name}: queried on the event loop's thread")

    return guarded


class HeldStore(VoicemailStore):
    """The real store, except that the calls named in ``hold`` wait until ``release`` is set."""

    def __init__(self, storage: Storage, hold: set[str]) -> None:
        super().__init__(storage.data, storage.voicemail_db(), shared=storage.shared_folder)
        self.hold = hold
        self.asked = threading.Event()
        self.release = threading.Event()
        self.threads: list[str] = []

    def _held(self, name: str) -> None:
        self.threads.append(threading.current_thread().name)
        if name in self.hold:
            self.asked.set()
            assert self.release.wait(HOLD), f"{name} was never released"

    def counts(self, mailbox: str) -> Counts:
        self._held("counts")
        return super().counts(mailbox)

    def add(self, mailbox: str, **kw: Any) -> Message:
        self._held("add")
        return super().add(mailbox, **kw)


class Phone:
    """The signalling as far as these calls go: the caller is answered and hangs up; a transfer's
    INVITE is noted (no phone answers it)."""

    def __init__(self) -> None:
        self.invited: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def answer(self, call_id: str, sdp: bytes, now: float) -> None:
        pass

    def ringing(self, call_id: str, now: float) -> None:
        pass

    def reject(self, call_id: str, status: int, now: float, **_: Any) -> None:
        raise AssertionError(f"call rejected with {status}")

    def hangup(self, call_id: str, now: float) -> None:
        pass

    def invite(self, uri: str, sdp: bytes, now: float, **_: Any) -> str:
        if not self.invited.done():
            self.invited.set_result(uri)
        return "leg-1"


class Media(SimulatedMedia):
    """SimulatedMedia that says when the call starts taking the caller's audio (a recording began)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.recording = asyncio.Event()
        super().__init__(loop, 40000)

    @property  # type: ignore[override]
    def on_audio(self) -> Any:
        return self._on_audio

    @on_audio.setter
    def on_audio(self, value: Any) -> None:
        self._on_audio = value
        if value is not None:
            self.recording.set()


async def _call(storage: Storage, store: VoicemailStore, flow: str) -> tuple[CallRunner, list[Media], list[CallRunner]]:
    """A call to ``flow`` on the server's runner, with the storage workers of ``ivr serve`` (the journal
    opened beforehand, as ``ivr serve`` does at start-up)."""
    path = storage.data / "flow.ivr"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"number default -> start\n\nstart:\n    {flow}\n", encoding="utf-8")
    config = Config(data=storage.data, mailboxes=(BOX,), extensions=(Extension(number="201"),))
    program = load_flow([path], config=config)
    loop = asyncio.get_running_loop()
    media: list[Media] = []

    async def open_media() -> Media:
        media.append(Media(loop))
        return media[-1]

    services = Services(
        config=config, program=program, ua=Phone(), clock=None, calllog=CallLog(io.StringIO()),  # type: ignore[arg-type]
        contact_host="127.0.0.1", media_host="127.0.0.1", media_factory=open_media,
        storage_executor=ThreadPoolExecutor(1, "ivr-storage"),
    )
    services._shared["storage"] = storage  # noqa: SLF001 -- the back end under test
    services._shared["voicemail"] = VoicemailService(config, store)  # noqa: SLF001 -- the (held) store
    assert not (await _off_loop(lambda: services.journal)).failed
    ended: list[CallRunner] = []
    return CallRunner(services, _invite(), ended.append), media, ended


async def _owner_logged_in(storage: Storage, store: VoicemailStore) -> tuple[CallRunner, Media]:
    """The mailbox owner's call to ``voicemail access 200``, past the PIN, in the main menu."""
    runner, media, _ = await _call(storage, store, "voicemail access 200")
    await runner.start()
    phone = media[0]
    for key in PIN + "#":
        phone.press(key)
    assert await _settled(runner) == "main"
    return runner, phone


def _invite() -> IncomingCall:
    head = (
        "INVITE sip:200@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-offloop\r\n"
        "From: <sip:+41791112233@127.0.0.1>;tag=a\r\nTo: <sip:200@127.0.0.1>\r\nCall-ID: offloop\r\n"
        "CSeq: 1 INVITE\r\nContact: <sip:+41791112233@127.0.0.1:5062>\r\nContent-Length: 0\r\n\r\n"
    )
    request = parse_message(head.encode())
    assert isinstance(request, Request)
    return IncomingCall("offloop", request, None, "+41791112233", "200", ("127.0.0.1", 5062))


async def _timer_fires(seconds: float) -> None:
    """A timer of another call: it fires on time only if nothing holds the loop."""
    loop = asyncio.get_running_loop()
    fired: asyncio.Future[float] = loop.create_future()
    start = loop.time()
    loop.call_later(seconds, lambda: fired.set_result(loop.time()))
    assert await asyncio.wait_for(fired, 2.0) - start < seconds + 0.5


async def _storage_idle(runner: CallRunner) -> None:
    """Until the one storage worker has run what it was handed, and the loop has taken the answers."""
    await asyncio.get_running_loop().run_in_executor(runner.services.storage_executor, lambda: None)
    await asyncio.sleep(0)


async def _settled(runner: CallRunner) -> str:
    """The dialogue's state once it waits for the caller again (its store calls, one after the other, done)."""
    for _ in range(20):
        await _storage_idle(runner)
        state = str(getattr(runner.sub, "state", ""))
        if state not in WAITING:
            return state
    raise AssertionError(f"the dialogue still waits for the store in state {state!r}")


async def _off_loop(work: Callable[[], Any]) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, work)


def _recording(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.zeros(int(8000 * seconds), np.int16), 8000)
    return path


# --------------------------------------------------------------------------- the tests


@pytest.mark.usefixtures("loop_guard")
def test_the_loop_runs_while_the_mailbox_count_waits_and_the_dialogue_goes_on_after(storage):
    async def scenario() -> None:
        runner, _, _ = await _call(storage, store, "voicemail 200")
        loop = asyncio.get_running_loop()
        await runner.start()
        assert await loop.run_in_executor(None, store.asked.wait, HOLD)
        for _ in range(3):
            await _timer_fires(0.05)
        assert runner.sub is not None and runner.sub.state == "opening"  # type: ignore[attr-defined]
        assert not store.release.is_set()
        store.release.set()
        assert await _settled(runner) == "greeting"
        assert store.threads == ["ivr-storage_0"]
        runner.hangup("test over")
        runner.services.storage_executor.shutdown()

    store = HeldStore(storage, {"counts"})
    asyncio.run(scenario())


@pytest.mark.usefixtures("loop_guard")
def test_a_message_left_as_the_caller_hangs_up_is_stored_after_the_call_is_over(storage):
    async def scenario() -> None:
        runner, media, ended = await _call(storage, store, "voicemail 200")
        loop = asyncio.get_running_loop()
        await runner.start()
        await asyncio.wait_for(media[0].recording.wait(), HOLD)
        for _ in range(100):  # 2 s of the caller speaking, 20 ms at a time
            media[0].hear((np.sin(np.arange(160) * 0.3) * 8000).astype(np.int16))
        runner.on_sip_event(CallEnded("offloop", "bye"))
        assert ended == [runner] and runner.ended  # the call is over at once ...
        assert await loop.run_in_executor(None, store.asked.wait, HOLD)
        await _timer_fires(0.05)
        assert await _off_loop(lambda: store.list("200")) == []  # ... while its message is still being stored
        store.release.set()
        await _storage_idle(runner)
        (message,) = await _off_loop(lambda: store.list("200"))
        assert (message.caller, message.duration) == ("+41791112233", 2.0)
        runner.services.storage_executor.shutdown()

    store = HeldStore(storage, {"add"})
    # a 10 ms greeting recorded by phone: the test does not wait for a TTS one
    _recording(store.greeting_path("200", "unavailable"), 0.01)
    asyncio.run(scenario())


@pytest.mark.usefixtures("loop_guard")
def test_the_owner_logs_in_listens_saves_and_deletes_with_every_query_off_the_loop(storage):
    async def scenario() -> None:
        runner, phone = await _owner_logged_in(storage, store)
        phone.press("1")
        assert await _settled(runner) == "message"
        phone.press("2")  # save the first, hear the second
        assert await _settled(runner) == "message"
        phone.press("3")  # delete the second: no more messages
        assert await _settled(runner) == "main"
        runner.hangup("test over")
        runner.services.storage_executor.shutdown()
        assert [(m.caller, m.status) for m in await _off_loop(lambda: store.list("200"))] == [("201", "saved")]

    store = HeldStore(storage, set())
    for i, caller in enumerate(("201", "202")):
        source = _recording(storage.data / f"m{i}.wav", 1.0)
        store.add("200", caller=caller, duration=1.0, source=source, received_at=1_700_000_000.0 + i)
    asyncio.run(scenario())


@pytest.mark.usefixtures("loop_guard")
def test_a_transfer_finds_the_registered_phone_off_the_loop(storage):
    async def scenario() -> None:
        runner, _, _ = await _call(storage, store, "transfer to 201 for 5s\n        else -> start")
        await runner.start()
        phone = runner.services.ua
        assert await asyncio.wait_for(phone.invited, HOLD) == "sip:201@192.0.2.20:5100"  # type: ignore[attr-defined]
        runner.hangup("test over")
        runner.services.storage_executor.shutdown()

    store = HeldStore(storage, set())
    binding = Binding("201", "sip:201@192.0.2.20:5100", ("192.0.2.20", 5100), "udp", math.inf)
    bindings = storage.bindings()
    bindings.apply("201", [binding], [])
    asyncio.run(scenario())


@pytest.mark.usefixtures("loop_guard")
def test_the_owner_records_a_greeting_into_the_data_folder_and_keeps_it_in_the_shared_one(storage):
    """A call records only into its node's data folder; keeping the greeting moves it where every node finds it."""

    async def scenario() -> None:
        runner, phone = await _owner_logged_in(storage, store)
        phone.press("0")
        phone.press("1")  # the unavailable greeting
        phone.press("5")  # skips the instructions; the beep cannot be skipped
        await asyncio.wait_for(phone.recording.wait(), HOLD)
        for _ in range(50):  # 1 s of the owner speaking
            phone.hear((np.sin(np.arange(160) * 0.3) * 8000).astype(np.int16))
        phone.press("#")
        assert await _settled(runner) == "greeting_review"
        phone.press("1")
        assert await _settled(runner) == "options"
        runner.hangup("test over")
        runner.services.storage_executor.shutdown()

    store = HeldStore(storage, set())
    asyncio.run(scenario())
    final = store.greeting_path("200", "unavailable")
    assert final.is_relative_to(storage.shared_folder)
    assert soundfile.info(str(final)).duration == 1.0
    assert not store.greeting_draft("200", "unavailable").exists()


# --------------------------------------------------------------------------- a store that fails


class FailingStore(VoicemailStore):
    """The real store, except that the calls named in ``fail`` raise as a database that is gone does."""

    def __init__(self, data: Path, fail: set[str]) -> None:
        super().__init__(data)
        self.fail = fail

    def counts(self, mailbox: str) -> Counts:
        if "counts" in self.fail:
            raise StorageError("index.sqlite3: database is locked")
        return super().counts(mailbox)

    def _index(self, *args: Any) -> Message:
        if "index" in self.fail:
            raise StorageError("index.sqlite3: database is locked")
        return super()._index(*args)


def test_a_mailbox_that_cannot_be_counted_ends_the_dialogue_failed_and_the_flow_goes_on(tmp_path):
    d = Driver(LeaveMessage(mailbox=BOX, store=FailingStore(tmp_path, {"counts"}), caller="1", data_dir=tmp_path))
    assert d.start() == []
    assert d.m.finished and d.m.result == ActionDone("voicemail", "failed")


def test_a_message_the_index_refuses_is_kept_on_disk_and_the_caller_hears_goodbye(tmp_path):
    store = FailingStore(tmp_path, {"index"})
    d = Driver(LeaveMessage(mailbox=BOX, store=store, caller="1", data_dir=tmp_path))
    (start,) = d.play_out(d.play_out(d.start()))
    assert isinstance(start, StartRecording)
    actions = d.send(RecordingDone(start.path, record(start, 1.5), "key"))
    assert texts(actions) == ["Your message has been saved. Goodbye."]
    store.fail.clear()
    (kept,) = store.recover()  # what the node's next start-up does
    assert (kept.mailbox, kept.duration) == ("200", 1.5)
