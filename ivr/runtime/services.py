"""What every call of one ``ivr serve`` process shares.

The deployment config, the compiled flow, the user agent and its endpoint,
the media clock, and the process-wide engines that are expensive to build
(TTS, prompt cache, hold-music players, the voicemail store, directories,
speech recognisers).  Heavy engines are built on first use, so a flow without
voicemail or speech never loads SQLite or a speech model, and they are built
once per process, never per call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ivr.config import Config
from ivr.language import base_language
from ivr.media.prompts import PromptStore
from ivr.media.tts import TtsEngine
from ivr.runtime.atomic import StatCached
from ivr.runtime.calllog import CallLog
from ivr.runtime.forwarding import Choices, ForwardingError, forwarding_path, read_choices
from ivr.runtime.phones import Lines, literal_numbers
from ivr.runtime.switches import SwitchError, SwitchReader
from ivr.storage import Storage, open_storage

if TYPE_CHECKING:
    from ivr.directory.source import DirectoryBook
    from ivr.dsl.compiler import Program
    from ivr.media.clock import MediaClock
    from ivr.media.holdmusic import HoldMusic
    from ivr.media.recognizer import Recognizer
    from ivr.runtime.journal import Journal
    from ivr.runtime.ports import CallMedia, CallSignalling
    from ivr.runtime.presentation import Shown
    from ivr.runtime.rooms import Rooms
    from ivr.runtime.transfer import Destination, TransferSession
    from ivr.sip.registrar import Registrar
    from ivr.sip.transport import SipEndpoint
    from ivr.sip.trunk import Trunks
    from ivr.storage.switches import SwitchWatcher
    from ivr.voicemail.service import VoicemailService
    from ivr.voicemail.store import VoicemailStore

log = logging.getLogger("ivr.runtime")
T = TypeVar("T")

# Engines every generation of Services shares (see Services.reloaded): the storage (one
# pool of the shared database), one writer of the call journal, one voicemail store and
# mail thread, one switch watcher and the conference rooms of the process.
PROCESS_WIDE = frozenset({"storage", "journal", "voicemail", "switch_watcher", "conferences"})


def kept_engines(old: Config, new: Config) -> set[str]:
    """The engines a reload from ``old`` to ``new`` settings can keep: built from unchanged settings.

    Directories are never kept: a reload reads their files again.
    """
    keep: set[str] = set()
    if old.tts == new.tts:
        keep.add("tts")
    if old.prompt_folders == new.prompt_folders:
        keep |= {"prompts", "hold_music"}
    if old.speech == new.speech:
        keep |= {"recognizer", *(f"recognizer:{lang}" for lang, _ in new.speech.models)}
    if old.trunks == new.trunks:
        keep |= {"trunks", "trunk_registrations"}
    if old.registrar == new.registrar and old.extensions == new.extensions:
        keep.add("registrar")
    return keep


#: Threads of the pool that renders, decodes and recognises off the event loop.
WORKERS = 8


@dataclass
class Services:
    """Shared state and engines for the calls of one server process.

    A reload (SIGHUP) makes a new generation with :meth:`reloaded`: new calls get it, running
    calls keep the one they started with, so a call never sees half of the old flow and half
    of the new one.  Generations share the user agent, clock, executors, transfer legs and the
    :data:`PROCESS_WIDE` engines.
    """

    config: Config
    program: Program
    ua: CallSignalling  # the user agent (ivr.sip.ua.UserAgent) in ivr serve
    clock: MediaClock | None  # paces RTP in ivr serve; the simulator has no packets to pace
    calllog: CallLog
    contact_host: str
    media_host: str
    endpoint: SipEndpoint | None = None
    executor: Executor = field(default_factory=lambda: ThreadPoolExecutor(WORKERS, "ivr-worker"))
    # Blocking storage calls of the calls (a voicemail dialogue's index queries, a transfer's
    # registrations): threads of their own, so a database that stops answering holds those
    # callers only, never the event loop nor the TTS and speech workers.
    storage_executor: Executor = field(default_factory=lambda: ThreadPoolExecutor(4, "ivr-storage"))
    # The outside world's edges that are not the user agent: the wall clock (flows, schedules,
    # the voicemail store) and where a call's audio goes.  ``ivr serve`` keeps the defaults (the
    # system clock, RTP sockets); the simulator (ivr.runtime.simulate) fills both with its own.
    wall: Callable[[], float] = time.time
    media_factory: Callable[[], Awaitable[CallMedia]] | None = None
    _lazy: dict[str, Any] = field(default_factory=dict)
    _switches: SwitchReader = field(default_factory=SwitchReader)  # switches.json, re-read when it changes
    # Outgoing legs of transfers: Call-ID -> handler of the agent's events for it (ivr.runtime.transfer)
    legs: dict[str, Callable[[object], bool | None]] = field(default_factory=dict)
    # The calls running now by Call-ID (ivr.runtime.call.CallRunner), for a Replaces naming one
    # (ivr.runtime.attended)
    calls: dict[str, Any] = field(default_factory=dict)
    # Transfers ringing now, for call pickup (ivr.runtime.transfer.pick_up)
    ringing: list[TransferSession] = field(default_factory=list)
    # Which extensions are on a call, ringing or talking (busy, lamps: ivr.runtime.phones)
    lines: Lines = field(default_factory=Lines)
    _lock: threading.RLock = field(default_factory=threading.RLock)  # engines build on each other
    _shared: dict[str, Any] = field(default_factory=dict)  # PROCESS_WIDE engines, one dict for all generations

    # ------------------------------------------------------------------ reload

    def reloaded(self, config: Config, program: Program) -> Services:
        """The next generation: ``config`` and ``program``, engines kept where their settings are unchanged.

        Safe to call from a worker thread.  Trunk registrations of changed trunks are not
        touched here: the server stops this generation's and starts the new one's when it
        switches (:meth:`stop_trunks`, :meth:`start_trunks`).
        """
        kept = kept_engines(self.config, config)
        with self._lock:
            lazy = {k: v for k, v in self._lazy.items() if k in kept}
            old_registrar = self._lazy.get("registrar")
        if old_registrar is not None and "registrar" not in kept:
            lazy["registrar"] = self._next_registrar(old_registrar, config)
        new = dataclasses.replace(self, config=config, program=program, _lazy=lazy)
        registrations = lazy.get("trunk_registrations")
        if registrations is not None:  # kept: it must not hold the old flow alive
            registrations.services = new
        voicemail = self._shared.get("voicemail")
        if voicemail is not None:
            _update_mailer(voicemail, config, new.timezone)
        return new

    def _next_registrar(self, old: Registrar, config: Config) -> Registrar:
        """The registrar of the new extensions on the same bindings; a blocked scanner stays blocked."""
        from ivr.runtime import sipconfig

        registrar = sipconfig.registrar(config, store=old.store)
        if config.registrar == self.config.registrar:
            registrar.throttle = old.throttle
        return registrar

    # ------------------------------------------------------------------ SIP

    def sip_now(self) -> float:
        """The user agent's clock: the loop's monotonic time (its timers go to call_at as they are)."""
        return asyncio.get_running_loop().time()

    async def open_media(self) -> CallMedia:
        """A media session for one call or transfer leg (an RTP port pair from ``[server] rtp_ports``)."""
        if self.media_factory is not None:
            return await self.media_factory()
        from ivr.media.session import MediaSession

        cfg = self.config.server
        assert self.clock is not None, "RTP sessions need the media clock"
        return await MediaSession.open(
            host=self.media_host, port_range=cfg.rtp_ports, clock=self.clock, media_timeout=cfg.media_timeout
        )

    def flush(self) -> None:
        """Send what the user agent queued after a command given outside a receive or timer turn."""
        if self.endpoint is not None:
            self.endpoint.service()

    # ------------------------------------------------------------------ engines

    @property
    def data(self) -> Path:
        return self.config.data

    @property
    def tts(self) -> TtsEngine:
        return self._get("tts", lambda: TtsEngine.in_data_folder(self.config.data, self.config.tts))

    @property
    def prompts(self) -> PromptStore:
        def build() -> PromptStore:
            shared = self.storage.shared_folder
            extra = (shared,) if shared != self.data else ()
            return PromptStore(self.config.prompt_folders, self.data, shared_data=extra)

        return self._get("prompts", build)

    @property
    def hold_music(self) -> HoldMusic:
        def build() -> HoldMusic:
            from ivr.media.holdmusic import HoldMusic

            return HoldMusic(self.prompts, self.clock)

        return self._get("hold_music", build)

    @property
    def voicemail(self) -> VoicemailService:
        """The voicemail service: message store, crash recovery and Voice2Mail (ivr.voicemail.service)."""

        def build() -> VoicemailService:
            from ivr.voicemail.service import VoicemailService
            from ivr.voicemail.store import VoicemailStore

            return VoicemailService(self.config, VoicemailStore.on(self.storage), timezone=self.timezone)

        return self._get("voicemail", build)

    @property
    def conferences(self) -> Rooms:
        """The conference rooms of the process (they outlive a reload, like the calls in them)."""

        def build() -> Rooms:
            from ivr.runtime.rooms import Rooms

            return Rooms(self.clock)

        return self._get("conferences", build)

    @property
    def voicemail_store(self) -> VoicemailStore:
        return self.voicemail.store

    @property
    def timezone(self) -> str:
        return str(getattr(self.program.settings, "timezone", "") or "UTC")

    def recognizer(self, language: str = "") -> Recognizer:
        """The recogniser of ``language`` ("": the ``[speech]`` engine's own); LookupError when the
        deployment has none for it (ivr.runtime.languages.has_recognizer says so beforehand)."""
        speech = self.config.speech
        if not language or base_language(language) == base_language(speech.language):
            return self._get("recognizer", lambda: _recognizer(speech.engine, speech.model, speech.tuning))
        model = dict(speech.models).get(base_language(language))
        if model is None:
            raise LookupError(f"no speech recognizer for language {language!r}")
        return self._get(f"recognizer:{base_language(language)}", lambda: _recognizer("vosk", model))

    def directory(self, name: str) -> DirectoryBook:
        """The directory book the flow declared as ``directory NAME from "file"`` (loaded once)."""

        def build() -> DirectoryBook:
            from ivr.directory.source import load_directory

            paths: Mapping[str, str] = self.program.settings.directories
            if name not in paths:
                raise LookupError(f"the flow declares no directory named {name!r}")
            return load_directory(Path(paths[name]), name=name)

        return self._get(f"directory:{name}", build)

    def directory_phrases(self, name: str) -> tuple[str, ...]:
        """The names a caller may say for directory ``name`` (its speech grammar), built once."""

        def build() -> tuple[str, ...]:
            from ivr.directory.matching import PhraseIndex

            return PhraseIndex.build(self.directory(name)).phrases

        return self._get(f"directory-phrases:{name}", build)

    def registrar(self) -> Registrar:
        """The registrar of ivr.toml's extensions (bindings in the storage), built once."""

        def build() -> Registrar:
            from ivr.runtime import sipconfig

            return sipconfig.registrar(self.config, store=self.storage.bindings())

        return self._get("registrar", build)

    def contacts_for(self, target: str) -> list[str]:
        """Where an extension can be reached: registered contacts first, then static ones from ivr.toml."""
        if self.config.extension(target) is None:
            return []  # not one of ours (an external number goes through a trunk)
        return [b.uri for b in self.registrar().contacts(target, self.wall())]

    def leg_event(self, event: object) -> bool:
        """Route a user agent event about an outgoing transfer leg; False if it is not one.

        A handler that returns False declines the event (a REFER watching the caller's own
        dialog takes only ``ReferProgress``; the rest goes to the call's runner)."""
        handler = self.legs.get(getattr(event, "call_id", ""))
        if handler is None:
            return False
        return handler(event) is not False

    def destinations_for(
        self, target: str, caller: str, shown: Shown | None = None, call: Any = None
    ) -> list[Destination]:
        """Where to send the INVITEs that ring ``target`` for ``call`` (ivr.runtime.transfer.destinations)."""
        from ivr.runtime.transfer import destinations

        return destinations(self, target, caller, shown, call)

    @property
    def literal_numbers(self) -> frozenset[str]:
        """The external numbers the flow and ivr.toml name (ivr.runtime.phones.literal_numbers):
        built once per generation, since program and config are fixed until the next reload."""

        def build() -> frozenset[str]:
            return literal_numbers(self.program, self.config)

        return self._get("literal_numbers", build)

    @property
    def trunks(self) -> Trunks:
        def build() -> Trunks:
            from ivr.runtime import sipconfig

            return sipconfig.trunks(self.config)

        return self._get("trunks", build)

    def start_trunks(self) -> None:
        """Register with the trunks whose ``register = true`` (ivr.runtime.trunks); nothing otherwise."""
        if any(t.register for t in self.config.trunks):
            from ivr.runtime.trunks import TrunkRegistrations

            registrations = self._get("trunk_registrations", lambda: TrunkRegistrations(self))
            registrations.start()

    def stop_trunks(self) -> None:
        """Un-REGISTER from the trunks we registered with (the server is stopping)."""
        registrations = self._lazy.get("trunk_registrations")
        if registrations is not None:
            registrations.stop()

    @property
    def storage(self) -> Storage:
        """Where the state lives (``[storage]``: the data folder's files or a shared database)."""
        return self._get("storage", lambda: open_storage(self.config))

    @property
    def journal(self) -> Journal:
        """The call journal (in the storage), opened on first use."""

        def build() -> Journal:
            from ivr.runtime.journal import Journal

            return Journal.open(self.storage)

        return self._get("journal", build)

    def switches(self) -> dict[str, bool]:
        """The manual switches' current positions (``ivr switch NAME on|off``), read per call.

        Embedded: the data folder's file.  Shared database: the watcher's copy, kept current by
        LISTEN/NOTIFY in its own thread (:meth:`watch_switches`), so no call waits on the database.
        """
        watcher = self._shared.get("switch_watcher")
        if watcher is not None:
            return watcher.positions()
        try:
            return self._switches.read(self.data)
        except SwitchError:  # a damaged state file must not stop calls: log it, every switch off
            log.exception("cannot read switch state in %s", self.data)
            return {}

    def watch_switches(self) -> SwitchWatcher | None:
        """With a shared database: start following the switches (at start-up); None when embedded."""
        db = self.storage.db
        if db is None:
            return None

        def build() -> SwitchWatcher:
            from ivr.storage.switches import SwitchWatcher, TableSwitches

            watcher = SwitchWatcher(TableSwitches(db), on_change=self._switches_changed)
            watcher.start()
            return watcher

        return self._get("switch_watcher", build)

    def _switches_changed(self, positions: dict[str, bool]) -> None:
        text = ", ".join(f"{k} {'on' if v else 'off'}" for k, v in sorted(positions.items())) or "all off"
        self.calllog.server("switches", f"switches: {text}", switches=positions)

    def choices(self) -> Choices:
        """What the extensions' owners chose in the console (follow-me, on-call and the numbers
        both name), read per transfer: one ``stat`` each time, and the file is parsed again only
        when it changed (ivr.runtime.forwarding)."""
        data = self.data
        reader: StatCached[Choices] = self._get("forwarding", lambda: StatCached(
            lambda: read_choices(data), lambda: forwarding_path(data), Choices))
        try:
            return reader.get()
        except ForwardingError:  # a damaged file must not stop a transfer: the deployment's numbers apply
            log.exception("cannot read forwarding in %s", self.data)
            return Choices()

    def close_journal(self) -> None:
        """Write the journal rows still queued, close it and the storage (the server is stopping)."""
        journal = self._shared.pop("journal", None)
        if journal is not None:
            journal.close()
        watcher = self._shared.pop("switch_watcher", None)
        if watcher is not None:
            watcher.stop()
        storage = self._shared.pop("storage", None)
        if storage is not None:
            storage.close()

    def _get(self, key: str, build: Callable[[], T]) -> T:
        engines = self._shared if key in PROCESS_WIDE else self._lazy
        value = engines.get(key)
        if value is not None:  # built already (every log record asks for the journal): no lock
            return value
        with self._lock:
            value = engines.get(key)
            if value is None:
                value = engines[key] = build()
            return value


def _recognizer(engine: str, model: Path | None, tuning: Path | None = None) -> Recognizer:
    from ivr.media.asr import get_recognizer

    return get_recognizer(engine, model, tuning)


def _update_mailer(voicemail: VoicemailService, config: Config, timezone: str) -> None:
    """Voice2Mail names the new owners and dates mails in the new flow's zone ([smtp] needs a restart)."""
    try:
        voicemail.mailer.describe(config.mailboxes, timezone)
    except (ValueError, LookupError):  # ivr check refuses an unknown zone; keep the old one
        log.warning("voicemail: unknown time zone %r, mails keep the old one", timezone)
