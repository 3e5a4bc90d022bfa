"""A voicemail store that stops answering holds its own caller only, never the node's event loop.

The server's own CallRunner runs a voicemail call on a real asyncio loop, with the storage
workers of ``ivr serve`` (a thread pool) and a store whose queries wait on a threading.Event:
while a query is held, the loop keeps firing its timers (every other call of the node lives on
them), and when it is released the dialogue goes on; a message left as the caller hangs up is
stored after the call is over.
"""

from __future__ import annotations

import asyncio
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from ivr.config import Config, Mailbox
from ivr.runtime.call import CallRunner
from ivr.runtime.calllog import CallLog
from ivr.runtime.deployment import load_flow
from ivr.runtime.edges import SimulatedMedia
from ivr.runtime.services import Services
from ivr.sip.events import CallEnded, IncomingCall
from ivr.sip.message import Request, parse_message
from ivr.voicemail.service import VoicemailService
from ivr.voicemail.store import Counts, Message, VoicemailStore

HOLD = 10.0  # seconds a held query waits at most (the test releases it long before)
BOX = Mailbox(number="200", owner="Alice Example")


class HeldStore(VoicemailStore):
    """The real store, except that the calls named in ``hold`` wait until ``release`` is set."""

    def __init__(self, data: Path, hold: set[str]) -> None:
        super().__init__(data)
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
    """The caller's signalling as far as this call goes: it is answered, and hangs up itself."""

    def answer(self, call_id: str, sdp: bytes, now: float) -> None:
        pass

    def ringing(self, call_id: str, now: float) -> None:
        pass

    def reject(self, call_id: str, status: int, now: float, **_: Any) -> None:
        raise AssertionError(f"call rejected with {status}")

    def hangup(self, call_id: str, now: float) -> None:
        pass


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


def _call(tmp_path: Path, store: HeldStore) -> tuple[CallRunner, list[Media], list[CallRunner]]:
    (tmp_path / "flow.ivr").write_text("number default -> start\n\nstart:\n    voicemail 200\n", encoding="utf-8")
    config = Config(data=tmp_path, mailboxes=(BOX,))
    program = load_flow([tmp_path / "flow.ivr"], config=config)
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
    services._shared["voicemail"] = VoicemailService(config, store)  # noqa: SLF001 -- the held store
    ended: list[CallRunner] = []
    return CallRunner(services, _invite(), ended.append), media, ended


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
    """Wait until the one storage worker has run everything handed to it, and the loop has taken the answers."""
    await asyncio.get_running_loop().run_in_executor(runner.services.storage_executor, lambda: None)
    await asyncio.sleep(0)


def test_the_loop_runs_while_the_mailbox_count_waits_and_the_dialogue_goes_on_after(tmp_path):
    async def scenario() -> None:
        store = HeldStore(tmp_path, {"counts"})
        runner, _, _ = _call(tmp_path, store)
        loop = asyncio.get_running_loop()
        await runner.start()
        assert await loop.run_in_executor(None, store.asked.wait, HOLD)
        for _ in range(3):
            await _timer_fires(0.05)
        assert runner.sub is not None and runner.sub.state == "opening"  # type: ignore[attr-defined]
        assert not store.release.is_set()
        store.release.set()
        await _storage_idle(runner)
        assert runner.sub is not None and runner.sub.state == "greeting"  # type: ignore[attr-defined]
        assert store.threads == ["ivr-storage_0"]
        runner.hangup("test over")
        runner.services.storage_executor.shutdown()

    asyncio.run(scenario())


def test_a_message_left_as_the_caller_hangs_up_is_stored_after_the_call_is_over(tmp_path):
    async def scenario() -> None:
        store = HeldStore(tmp_path, {"add"})
        greeting = store.greeting_path("200", "unavailable")
        greeting.parent.mkdir(parents=True)
        soundfile.write(greeting, np.zeros(80, np.int16), 8000)  # 10 ms: the test does not wait for a TTS greeting
        runner, media, ended = _call(tmp_path, store)
        loop = asyncio.get_running_loop()
        await runner.start()
        await asyncio.wait_for(media[0].recording.wait(), HOLD)
        for _ in range(100):  # 2 s of the caller speaking, 20 ms at a time
            media[0].hear((np.sin(np.arange(160) * 0.3) * 8000).astype(np.int16))
        runner.on_sip_event(CallEnded("offloop", "bye"))
        assert ended == [runner] and runner.ended  # the call is over at once ...
        assert await loop.run_in_executor(None, store.asked.wait, HOLD)
        await _timer_fires(0.05)
        assert store.list("200") == []  # ... while its message is still being stored
        store.release.set()
        await _storage_idle(runner)
        (message,) = store.list("200")
        assert (message.caller, message.duration) == ("+41791112233", 2.0)
        runner.services.storage_executor.shutdown()

    asyncio.run(scenario())
