"""The deployment file: everything that belongs to the installation.

One TOML file (``ivr.toml`` by default) holds the listen address, data folder,
prompt folders, TTS defaults, extensions and their SIP passwords, mailboxes,
trunks, SMTP, speech models and the country whose national numbers a flow's
``number`` lines also match.  Flows (``.ivr``) hold call logic only.  Every
part of ivr reads its settings from the :class:`Config` built here; a missing
file means the embedded defaults (loopback, ``./data``, SQLite, espeak-ng).

Relative paths in the file are resolved against the file's own folder.  Every
section and key is described in ``docs/deployment.md`` (tests/test_config.py
keeps the two in step).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.sip.trunk import Trunk  # [[trunks]] entries are the SIP layer's own trunk records

DEFAULT_CONFIG_NAME = "ivr.toml"


class ConfigError(Exception):
    """A deployment file that cannot be used; the message names file and key."""


def parse_duration(value: Any, *, where: str) -> float:
    """Seconds from ``30``, ``"30s"``, ``"500ms"``, ``"2m"`` or ``"1h"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", value)
        if m:
            scale = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0}[m.group(2)]
            return float(m.group(1)) * scale
    raise ConfigError(f"{where}: expected a duration like 30s, 500ms or 2m, got {value!r}")


def _features(values: dict[str, Any], where: str) -> FeaturesConfig:
    """[features]: the codes as written, the recording limit a duration (``"4h"``)."""
    converted = {}
    if "record_max_length" in values:
        seconds = parse_duration(values["record_max_length"], where=f"{where}.record_max_length")
        if seconds <= 0:
            raise ConfigError(f"{where}.record_max_length: must be more than 0 s")
        converted["record_max_length"] = seconds
    return _build(FeaturesConfig, values, where, **converted)  # type: ignore[no-any-return]


def parse_hostport(value: str, *, where: str, default_port: int = 5060) -> tuple[str, int]:
    """``"127.0.0.1:5060"``, ``"[::1]:5060"`` or ``"host"`` -> (host, port)."""
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", value.strip())
    if not m:
        raise ConfigError(f"{where}: expected HOST:PORT, got {value!r}")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4) or default_port)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{where}: port {port} out of range")
    return host, port


@dataclass(frozen=True)
class ServerConfig:
    listen: tuple[str, int] = ("127.0.0.1", 5060)
    public_address: str | None = None  # address written in Contact/SDP; default: listen host
    rtp_ports: tuple[int, int] = (20000, 29999)
    drain_timeout: float = 30.0
    media_timeout: float = 30.0
    flows: tuple[Path, ...] = ()
    answer_delay: float = 0.0  # seconds of ringing (180) before the call is answered
    # Calls up at once; more get 503 + Retry-After.  0: derived from rtp_ports (see call_limit).
    max_calls: int = 0
    stall_threshold: float = 0.020  # the loop watchdog logs every stall of the event loop longer than this
    gc_full_interval: float = 900.0  # while calls are up, a full garbage collection at most this often (ivr.runtime.gcwatch)

    @property
    def rtp_pairs(self) -> int:
        """How many even/odd RTP+RTCP port pairs ``rtp_ports`` holds."""
        first = self.rtp_ports[0] + self.rtp_ports[0] % 2
        return max(0, (self.rtp_ports[1] - first + 1) // 2)

    @property
    def call_limit(self) -> int:
        """``max_calls``, or half the RTP port pairs: a call bridged to a transfer takes a second pair."""
        return self.max_calls or max(1, self.rtp_pairs // 2)


@dataclass(frozen=True)
class TtsConfig:
    engine: str = "espeak"
    voice: str = "en-us"
    rate: int = 160
    # language -> voice ([tts.voices] de = "de"): the voice of a call in that language
    voices: tuple[tuple[str, str], ...] = ()

    def voice_for(self, language: str) -> str:
        return dict(self.voices).get(language, "")


@dataclass(frozen=True)
class Extension:
    number: str
    name: str = ""
    username: str = ""
    password: str = ""
    mailbox: str | None = None
    may_call_out: bool = False
    contacts: tuple[str, ...] = ()  # static contacts for devices that do not register
    follow_me: tuple[str, ...] = ()
    pikett: str = ""  # on-call number: what `transfer to pikett GROUP` rings for this member ("": off call)
    shown_number: str = "caller"  # what a call put through to this person shows: "caller" or "company"
    # Calls from this extension's phones (ivr.runtime.phones): the dial patterns it may call out
    # to (empty: whatever the trunks allow), the number it shows outside ("": the trunk's).
    allow: tuple[str, ...] = ()
    caller_id: str = ""
    # Forwarding ("Rufumleitung"): an extension, an external number or "voicemail" ("" none).
    forward_always: str = ""
    forward_busy: str = ""
    forward_no_answer: str = ""
    forward_unreachable: str = ""
    call_waiting: bool = False  # a second call rings while it is on a call (else: busy)
    # Colleagues whose lamps (dialog and presence subscriptions) this user's phones may watch:
    # extension patterns ("2*", ? one digit); empty: every extension (ivr.runtime.lamps).
    watch: tuple[str, ...] = ()
    may_record: bool = False  # may record its calls with [features] record ("Darf Anrufe aufzeichnen")


@dataclass(frozen=True)
class Mailbox:
    number: str
    owner: str = ""
    pin_hash: str = ""
    emails: tuple[str, ...] = ()
    max_messages: int = 100
    max_length: float = 180.0
    silence: float = 5.0  # a message ends after this much silence (0: only on # or max_length)
    min_length: float = 1.0  # shorter recordings are not stored
    # Greeting prompt files (inside the prompt folders) by kind: unavailable, busy, temporary, name.
    # Greetings the owner records by phone (in the data folder) take precedence.
    greetings: tuple[tuple[str, str], ...] = ()

    def greeting(self, kind: str) -> str | None:
        return dict(self.greetings).get(kind)


@dataclass(frozen=True)
class SmtpConfig:
    host: str = ""
    port: int = 25
    sender: str = "ivr@localhost"
    username: str = ""
    password: str = ""
    starttls: bool = False


@dataclass(frozen=True)
class SpeechConfig:
    engine: str = "pocketsphinx"  # or "combined" (pocketsphinx + moonshine, ivr.media.asr_combined), "vosk", "moonshine"
    model: Path | None = None  # vosk model folder; moonshine/combined: the installed moonshine-cpp model unless set
    language: str = "en"  # the language `engine` and `model` recognise
    # other languages: language -> vosk model folder ([speech.models] de = "models/vosk-model-small-de")
    models: tuple[tuple[str, Path], ...] = ()
    tuning: Path | None = None  # the deployment's tuning file (`ivr directory tune`): whisper's per-name offsets

    def languages(self) -> tuple[str, ...]:
        """Every language a recogniser is configured for (base names: ``de``)."""
        return (self.language, *(lang for lang, _ in self.models))


@dataclass(frozen=True)
class TransferConfig:
    """[transfers]: ringing phones for the flow (ivr.runtime.transfer)."""

    # A registered phone dialling this picks up a call ringing its extension or its group ("" off).
    pickup_code: str = "*8"


@dataclass(frozen=True)
class FeaturesConfig:
    """[features]: codes the deployment's phones dial (ivr.runtime.features); "" turns one off."""

    voicemail: str = "*97"  # the caller's own mailbox (PIN asked)
    directed_pickup: str = "**"  # followed by an extension: pick up the call ringing it
    night_on: str = "*41"  # the night switch on, after night_pin (ivr.runtime.featurecodes)
    night_off: str = "*40"  # the night switch off, after night_pin
    night_switch: str = "night"  # which switch those two flip (a flow declares it: `switch night`)
    night_pin: str = ""  # the PIN the night codes ask for; "" refuses them (403)
    follow_me_on: str = "*51"  # the caller's follow-me numbers on again
    follow_me_off: str = "*50"  # the caller's follow-me numbers off (calls ring the extension only)
    # Pressed during a bridged call by its staff side (ivr.runtime.incall):
    record: str = "*1"  # start / stop recording the conversation (extensions with may_record)
    add_party: str = "*3"  # then a number and #: add a third person ("Zuschalten", a conference)
    record_max_length: float = 14400.0  # seconds a call recording may last


# Countries whose national numbers are the international number without the country code and
# with the trunk prefix 0 in front (0435435570 is +41435435570 in CH): ISO code -> country code.
TRUNK_PREFIX_COUNTRIES: dict[str, str] = {
    "AT": "43", "AU": "61", "BE": "32", "CH": "41", "DE": "49", "FI": "358", "FR": "33", "GB": "44",
    "IE": "353", "LI": "423", "NL": "31", "NZ": "64", "SE": "46",
}


@dataclass(frozen=True)
class NumbersConfig:
    """[numbers]: how called numbers are matched to a flow's ``number`` lines (ivr.runtime.deployment)."""

    # ISO country code: its national numbers (0435435570) then also match their international
    # forms (+41435435570, 0041435435570).  "": national numbers match only as written.
    country: str = ""

    @property
    def country_code(self) -> str:
        """The country's calling code ("41"), "" without a country."""
        return TRUNK_PREFIX_COUNTRIES.get(self.country, "")


@dataclass(frozen=True)
class RegistrarConfig:
    """[registrar]: REGISTER handling (ivr.sip.registrar) and its digest authentication."""

    realm: str = "ivr"
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    max_contacts: int = 10
    # MD5 only by default: baresip 1.0.0 gives up on any non-MD5 challenge and
    # sipp 3.6.1 on a SHA-256 one listed first; add "SHA-256" for phones that do RFC 8760.
    digest_algorithms: tuple[str, ...] = ("MD5",)
    nonce_ttl: float = 300.0
    max_failures: int = 5  # wrong passwords per source IP within failure_window ...
    failure_window: float = 60.0
    block_time: float = 300.0  # ... block that IP this long
    throttle_action: str = "drop"  # or "403"
    domains: tuple[str, ...] = ()  # empty: any host in the Request-URI
    # Nodes behind one proxy share it, so a REGISTER answers a challenge any of them made;
    # empty: a random secret per process (nonces die with it: stale, not failure).
    nonce_secret: str = ""


@dataclass(frozen=True)
class StorageConfig:
    """Where the state lives: embedded (SQLite files in the data folder) unless ``url`` names PostgreSQL."""

    url: str = ""  # postgresql://user@host:port/db; empty: SQLite in the data folder
    shared: Path | None = None  # the folder every node mounts for voicemail audio; default: the data folder
    pool_size: int = 8  # connections per node

    @property
    def shared_database(self) -> bool:
        return bool(self.url)


@dataclass(frozen=True)
class HttpConfig:
    """[http]: the browser console, the JSON API and /metrics (ivr.web); off unless ``listen`` is set."""

    listen: tuple[str, int] | None = None
    tls_cert: Path | None = None  # both required for an address other than loopback
    tls_key: Path | None = None
    session_lifetime: float = 8 * 3600.0
    upload_limit: int = 1_000_000  # bytes of one request body; more gets 413
    admins: tuple[str, ...] = ()  # user names (an extension's username) with the admin role
    language: str = "en"  # the console's language unless the browser asks for another (en, de)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def loopback(self) -> bool:
        """Whether the console listens on loopback only (then /metrics needs no token)."""
        return self.listen is None or self.listen[0] in LOOPBACK


@dataclass(frozen=True)
class OverloadConfig:
    """``[overload]``: per-address request rates and shedding new calls while the loop lags."""

    rate: float = 50.0  # INVITE+REGISTER+OPTIONS per second from one address; 0: no per-address limit
    burst: int = 200  # requests one address may send at once (an office behind one NAT address)
    trusted: tuple[str, ...] = ()  # addresses or networks never rate-limited (a proxy in front)
    max_lag: float = 0.030  # shed new INVITEs while the loop's smoothed lag is above this; 0: never
    retry_after: int = 2  # seconds, in the 503 that sheds a new INVITE
    log_interval: float = 10.0  # one log line per refused address and interval


@dataclass(frozen=True)
class Config:
    path: Path | None = None
    base: Path = field(default_factory=Path.cwd)
    data: Path = field(default_factory=lambda: Path("data").resolve())
    prompt_folders: tuple[Path, ...] = ()
    server: ServerConfig = ServerConfig()
    tts: TtsConfig = TtsConfig()
    extensions: tuple[Extension, ...] = ()
    mailboxes: tuple[Mailbox, ...] = ()
    trunks: tuple[Trunk, ...] = ()
    smtp: SmtpConfig = SmtpConfig()
    speech: SpeechConfig = SpeechConfig()
    registrar: RegistrarConfig = RegistrarConfig()
    transfers: TransferConfig = TransferConfig()
    features: FeaturesConfig = FeaturesConfig()
    numbers: NumbersConfig = NumbersConfig()
    storage: StorageConfig = StorageConfig()
    http: HttpConfig = HttpConfig()
    overload: OverloadConfig = OverloadConfig()

    def extension(self, number: str) -> Extension | None:
        return next((e for e in self.extensions if e.number == number), None)

    def mailbox(self, number: str) -> Mailbox | None:
        return next((m for m in self.mailboxes if m.number == number), None)


def _table(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return value


def _items(raw: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{where}: [[{key}]] must be an array of tables")
    return value


def _greetings(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    kinds = ("unavailable", "busy", "temporary", "name")
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f"{where}: expected a table like {{ unavailable = \"greetings/200.wav\" }}")
    unknown = set(value) - set(kinds)
    if unknown:
        raise ConfigError(f"{where}: unknown greeting(s) {', '.join(sorted(unknown))}; use {', '.join(kinds)}")
    return tuple((k, value[k]) for k in kinds if k in value)


def _voices(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(isinstance(v, str) and v for v in value.values()):
        raise ConfigError(f"{where}: expected a table of language = \"voice\", like {{ de = \"de\" }}")
    return tuple((k.lower(), v) for k, v in value.items())


def _models(value: Any, base: Path, where: str) -> tuple[tuple[str, Path], ...]:
    if not isinstance(value, dict) or not all(isinstance(v, str) and v for v in value.values()):
        raise ConfigError(f"{where}: expected a table of language = \"vosk model folder\", like {{ de = \"models/vosk-de\" }}")
    return tuple((k.lower(), base / v) for k, v in value.items())


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{where}: expected a string or a list of strings")


def _shown_number(table: dict[str, Any], default: str, where: str) -> str:
    """``shown_number``: which number a forwarded call shows (docs/deployment.md)."""
    value = table.get("shown_number", default)
    if value not in ("caller", "company"):
        raise ConfigError(f'{where}: expected "caller" or "company", got {value!r}')
    return str(value)


def _build(cls: type, values: dict[str, Any], where: str, **converted: Any) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known - set(converted)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    kwargs = {k: v for k, v in values.items() if k in known}
    kwargs.update(converted)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_config(path: Path | str | None = None, *, data: Path | str | None = None) -> Config:
    """Read the deployment file; ``None`` and no ``./ivr.toml`` give the defaults.

    ``data`` (the ``--data`` option) overrides the file's data folder.
    """
    if path is None and Path(DEFAULT_CONFIG_NAME).is_file():
        path = Path(DEFAULT_CONFIG_NAME)
    raw: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such deployment file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        base = path.resolve().parent
    where = str(path) if path else "defaults"
    return _from_raw(raw, base, where, path, data)


def _from_raw(
    raw: dict[str, Any], base: Path, where: str, path: Path | None, data: Path | str | None
) -> Config:
    srv = dict(_table(raw, "server", where))
    listen = parse_hostport(srv.pop("listen", "127.0.0.1:5060"), where=f"{where}: server.listen")
    ports = srv.pop("rtp_ports", "20000-29999")
    m = re.fullmatch(r"(\d+)-(\d+)", str(ports))
    if not m or int(m.group(1)) >= int(m.group(2)):
        raise ConfigError(f"{where}: server.rtp_ports must look like 20000-29999")
    data_dir = Path(data) if data is not None else base / srv.pop("data", "data")
    srv.pop("data", None)
    server = _build(
        ServerConfig,
        srv,
        f"{where}: [server]",
        listen=listen,
        rtp_ports=(int(m.group(1)), int(m.group(2))),
        drain_timeout=parse_duration(srv.get("drain_timeout", 30), where=f"{where}: server.drain_timeout"),
        media_timeout=parse_duration(srv.get("media_timeout", 30), where=f"{where}: server.media_timeout"),
        answer_delay=parse_duration(srv.get("answer_delay", 0), where=f"{where}: server.answer_delay"),
        flows=tuple(base / f for f in _strs(srv.get("flows", []), f"{where}: server.flows")),
        max_calls=_max_calls(srv.get("max_calls", 0), f"{where}: server.max_calls"),
        stall_threshold=parse_duration(srv.get("stall_threshold", 0.02), where=f"{where}: server.stall_threshold"),
        gc_full_interval=parse_duration(srv.get("gc_full_interval", 900), where=f"{where}: server.gc_full_interval"),
    )
    prompts = _table(raw, "prompts", where)
    folders = tuple(
        (base / f).resolve() for f in _strs(prompts.get("folders", ["prompts"]), f"{where}: prompts.folders")
    )
    tt = _table(raw, "tts", where)
    tts = _build(TtsConfig, tt, f"{where}: [tts]", voices=_voices(tt.get("voices", {}), f"{where}: [tts.voices]"))
    if tts.engine != "espeak":
        raise ConfigError(f"{where}: [tts] engine must be \"espeak\" (espeak-ng through pyttsx3), got {tts.engine!r}")
    extensions = tuple(
        _build(
            Extension,
            e,
            f"{where}: extensions[{i}]",
            number=str(e.get("number", "")),
            contacts=_strs(e.get("contacts", []), f"{where}: extensions[{i}].contacts"),
            follow_me=_strs(e.get("follow_me", []), f"{where}: extensions[{i}].follow_me"),
            shown_number=_shown_number(e, "caller", f"{where}: extensions[{i}].shown_number"),
            allow=_strs(e.get("allow", []), f"{where}: extensions[{i}].allow"),
            watch=_strs(e.get("watch", []), f"{where}: extensions[{i}].watch"),
        )
        for i, e in enumerate(_items(raw, "extensions", where))
    )
    mailboxes = tuple(
        _build(
            Mailbox,
            mb,
            f"{where}: mailboxes[{i}]",
            number=str(mb.get("number", "")),
            emails=_strs(mb.get("emails", []), f"{where}: mailboxes[{i}].emails"),
            max_length=parse_duration(mb.get("max_length", 180), where=f"{where}: mailboxes[{i}].max_length"),
            silence=parse_duration(mb.get("silence", 5), where=f"{where}: mailboxes[{i}].silence"),
            min_length=parse_duration(mb.get("min_length", 1), where=f"{where}: mailboxes[{i}].min_length"),
            greetings=_greetings(mb.get("greetings", {}), f"{where}: mailboxes[{i}].greetings"),
        )
        for i, mb in enumerate(_items(raw, "mailboxes", where))
    )
    trunks = tuple(
        _build(Trunk, t, f"{where}: trunks[{i}]", allow=_strs(t.get("allow", []), f"{where}: trunks[{i}].allow"),
               shown_number=_shown_number(t, "company", f"{where}: trunks[{i}].shown_number"))
        for i, t in enumerate(_items(raw, "trunks", where))
    )
    smtp = _build(SmtpConfig, _table(raw, "smtp", where), f"{where}: [smtp]")
    sp = _table(raw, "speech", where)
    speech = _build(
        SpeechConfig, sp, f"{where}: [speech]", model=(base / sp["model"]) if sp.get("model") else None,
        tuning=(base / sp["tuning"]) if sp.get("tuning") else None,
        language=str(sp.get("language", "en")).lower(), models=_models(sp.get("models", {}), base, f"{where}: [speech.models]"),
    )
    if speech.engine not in ("combined", "pocketsphinx", "vosk", "moonshine", "whisper"):
        raise ConfigError(
            f"{where}: [speech] engine must be combined, pocketsphinx, vosk, moonshine or whisper, got {speech.engine!r}"
        )
    if speech.engine == "vosk" and speech.model is None:
        raise ConfigError(f"{where}: [speech] engine = \"vosk\" needs model = \"path/to/vosk-model\"")
    registrar = _registrar(_table(raw, "registrar", where), f"{where}: [registrar]")
    transfers = _build(TransferConfig, _table(raw, "transfers", where), f"{where}: [transfers]")
    features = _features(_table(raw, "features", where), f"{where}: [features]")
    numbers = _numbers(_table(raw, "numbers", where), f"{where}: [numbers]")
    storage = _storage(_table(raw, "storage", where), base, f"{where}: [storage]")
    http = _http(_table(raw, "http", where), base, f"{where}: [http]")
    overload = _overload(_table(raw, "overload", where), f"{where}: [overload]")
    known = {"server", "prompts", "tts", "extensions", "mailboxes", "trunks", "smtp", "speech", "registrar",
             "transfers", "numbers", "storage", "http", "overload", "features"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {', '.join(sorted(unknown))}")
    _check_unique(extensions, "extensions", where)
    _check_forwards(extensions, where)
    _check_unique(mailboxes, "mailboxes", where)
    return Config(
        path=path,
        base=base,
        data=data_dir.resolve(),
        prompt_folders=folders,
        server=server,
        tts=tts,
        extensions=extensions,
        mailboxes=mailboxes,
        trunks=trunks,
        smtp=smtp,
        speech=speech,
        registrar=registrar,
        transfers=transfers,
        numbers=numbers,
        storage=storage,
        http=http,
        overload=overload,
        features=features,
    )


def _storage(values: dict[str, Any], base: Path, where: str) -> StorageConfig:
    shared = values.get("shared")
    storage: StorageConfig = _build(
        StorageConfig, values, where, shared=(base / str(shared)).resolve() if shared else None
    )
    if storage.url and not re.match(r"postgres(ql)?://", storage.url):
        raise ConfigError(f"{where}: url must start with postgresql:// (empty: SQLite in the data folder)")
    if storage.pool_size < 1:
        raise ConfigError(f"{where}: pool_size must be 1 or more")
    return storage


def _overload(values: dict[str, Any], where: str) -> OverloadConfig:
    durations = {k: parse_duration(values[k], where=f"{where} {k}") for k in ("max_lag", "log_interval") if k in values}
    cfg: OverloadConfig = _build(
        OverloadConfig, values, where, trusted=_strs(values.get("trusted", []), f"{where} trusted"), **durations
    )
    for key in ("rate", "burst", "retry_after"):
        value = getattr(cfg, key)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{where}: {key} must be a number of at least 0, got {value!r}")
    if cfg.rate and cfg.burst < 1:
        raise ConfigError(f"{where}: burst must be at least 1 when rate is set, got {cfg.burst!r}")
    for item in cfg.trusted:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"{where}: trusted: {item!r} is not an address or a network") from None
    return cfg


def _numbers(values: dict[str, Any], where: str) -> NumbersConfig:
    numbers: NumbersConfig = _build(NumbersConfig, values, where)
    if numbers.country and numbers.country not in TRUNK_PREFIX_COUNTRIES:
        known = ", ".join(sorted(TRUNK_PREFIX_COUNTRIES))
        raise ConfigError(f"{where}: unknown country {numbers.country!r}; use one of {known}")
    return numbers


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _http(values: dict[str, Any], base: Path, where: str) -> HttpConfig:
    listen = values.get("listen", "")
    if not isinstance(listen, str):
        raise ConfigError(f"{where}: listen must be a string like \"127.0.0.1:8080\" (\"\": off)")
    files = {k: base / values[k] for k in ("tls_cert", "tls_key") if values.get(k)}
    http: HttpConfig = _build(
        HttpConfig, values, where,
        listen=parse_hostport(listen, where=f"{where} listen", default_port=8080) if listen else None,
        session_lifetime=parse_duration(values.get("session_lifetime", "8h"), where=f"{where} session_lifetime"),
        admins=_strs(values.get("admins", []), f"{where} admins"),
        tls_cert=files.get("tls_cert"), tls_key=files.get("tls_key"),
    )
    if (http.tls_cert is None) != (http.tls_key is None):
        raise ConfigError(f"{where}: tls_cert and tls_key go together")
    if http.listen is not None and http.listen[0] not in LOOPBACK and not http.tls:
        raise ConfigError(f"{where}: listen {http.listen[0]} is not loopback: set tls_cert and tls_key")
    if not isinstance(http.upload_limit, int) or isinstance(http.upload_limit, bool) or http.upload_limit < 1024:
        raise ConfigError(f"{where}: upload_limit must be a whole number of bytes, at least 1024")
    if http.language not in ("en", "de"):
        raise ConfigError(f"{where}: language must be \"en\" or \"de\", got {http.language!r}")
    return http


def _max_calls(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{where}: expected a whole number of calls (0: derived from rtp_ports), got {value!r}")
    return value


def _check_unique(items: tuple[Any, ...], what: str, where: str) -> None:
    seen: set[str] = set()
    for item in items:
        if not item.number:
            raise ConfigError(f"{where}: every entry of [[{what}]] needs a number")
        if item.number in seen:
            raise ConfigError(f"{where}: {what} number {item.number} is defined twice")
        seen.add(item.number)


FORWARDS = ("forward_always", "forward_busy", "forward_no_answer", "forward_unreachable")


def _check_forwards(extensions: tuple[Extension, ...], where: str) -> None:
    """Forwarding goes to an extension of this file, an external number or "voicemail"."""
    numbers = {e.number for e in extensions}
    for i, ext in enumerate(extensions):
        for key in FORWARDS:
            target = getattr(ext, key)
            if target and target != "voicemail" and target not in numbers and not re.fullmatch(r"\+?[0-9]{2,20}", target):
                raise ConfigError(
                    f"{where}: extensions[{i}].{key}: {target!r} is neither an extension, a telephone number nor \"voicemail\""
                )


def _registrar(values: dict[str, Any], where: str) -> RegistrarConfig:
    durations = {
        k: parse_duration(values[k], where=f"{where} {k}")
        for k in ("nonce_ttl", "failure_window", "block_time")
        if k in values
    }
    reg: RegistrarConfig = _build(
        RegistrarConfig,
        values,
        where,
        digest_algorithms=_strs(values.get("digest_algorithms", ["MD5"]), f"{where} digest_algorithms"),
        domains=_strs(values.get("domains", []), f"{where} domains"),
        **durations,
    )
    for key in ("min_expires", "max_expires", "default_expires", "max_contacts", "max_failures"):
        value = getattr(reg, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{where}: {key} must be a whole number of at least 1, got {value!r}")
    if not isinstance(reg.realm, str) or not reg.realm:
        raise ConfigError(f"{where}: realm must be a non-empty string")
    bad = [a for a in reg.digest_algorithms if a.upper().removesuffix("-SESS") not in ("MD5", "SHA-256", "SHA-512-256")]
    if bad or not reg.digest_algorithms:
        raise ConfigError(f"{where}: digest_algorithms must be MD5, SHA-256 or SHA-512-256, got {bad or '[]'}")
    if reg.throttle_action not in ("drop", "403"):
        raise ConfigError(f"{where}: throttle_action must be \"drop\" or \"403\"")
    if not reg.min_expires <= reg.default_expires <= reg.max_expires:
        raise ConfigError(f"{where}: need min_expires <= default_expires <= max_expires")
    return reg
