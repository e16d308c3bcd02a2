"""Gateway configuration: a TOML file, overridden by ``SCGW_<SECTION>__<KEY>`` env variables.

A bad config must stop the gateway with the file, the key and the reason, never a traceback:
``load_settings`` turns every failure into one ``ConfigError`` with that text.

Secrets can live in files instead of the config or the environment (Docker/Kubernetes
secrets, systemd ``LoadCredential``): ``[mqtt] password_file`` / ``url_file``, ``[database]
password_file`` / ``url_file``, ``[[sia.accounts]] key_file``, or the same as env variables
(``SCGW_MQTT__PASSWORD_FILE=/run/secrets/mqtt``). A secret never appears in an error message
or in the settings' repr; URLs are shown with the password replaced by ``***``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Literal
from urllib.parse import quote, urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from alerts.config import AlertsSettings
from devices.durations import Duration


class ConfigError(Exception):
    """A configuration problem, already phrased for the person who wrote the file."""


def _split_bind(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8080, got {value!r}")
    return host.strip("[]"), int(port)


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


MAX_SECRET_FILE: Final = 64 * 1024


def read_secret(path: object, key: str) -> str:
    """The secret in a file, without surrounding whitespace (``echo`` adds a newline).
    Errors name the key and the file, never any of its content."""
    if not isinstance(path, str | Path):
        raise ValueError(f"{key} must be a file path")
    where = str(path)
    try:
        with Path(path).open("rb") as f:
            raw = f.read(MAX_SECRET_FILE + 1)
    except OSError as exc:
        raise ValueError(
            f"{key}: cannot read {where!r}: {exc.strerror or type(exc).__name__}"
        ) from None
    if len(raw) > MAX_SECRET_FILE:
        raise ValueError(f"{key}: {where!r} is too big for a secret")
    try:
        secret = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"{key}: {where!r} is not UTF-8 text") from None
    if not secret:
        raise ValueError(f"{key}: {where!r} is empty")
    if any(c in secret for c in "\r\n\x00"):
        raise ValueError(f"{key}: {where!r} must hold one line")
    return secret


def with_password(url: str, password: str) -> str:
    """``scheme://user@host…`` with the password put in (percent-encoded)."""
    parts = urlsplit(url)
    creds, at, host = parts.netloc.rpartition("@")
    if not at or not creds:
        raise ValueError(
            "password_file needs a user name in url, like scheme://USER@host, "
            f"got {redact_url(url)!r}"
        )
    if ":" in creds:
        raise ValueError("url has a password already: remove it from url or drop password_file")
    netloc = f"{creds}:{quote(password, safe='')}@{host}"
    return parts._replace(netloc=netloc).geturl()


def _url_secrets(data: Any, schemes: tuple[str, ...]) -> Any:
    """``url_file`` → ``url``; ``password_file`` → the password inside ``url``."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    url_file = data.get("url_file")
    if url_file is not None:
        if data.get("url") is not None:
            raise ValueError("set url or url_file, not both")
        url = read_secret(url_file, "url_file")
        if not url.lower().startswith(schemes):
            # Not echoed: a file meant to hold a URL may hold a bare password by mistake.
            raise ValueError(f"url_file: {str(url_file)!r} does not hold a {schemes[0]} URL")
        data["url"] = url
    password_file = data.get("password_file")
    if password_file is not None:
        password = read_secret(password_file, "password_file")
        url = data.get("url")
        if not isinstance(url, str):
            raise ValueError("password_file needs url (with the user name) as well")
        data["url"] = with_password(url, password)
    return data


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(_Section):
    # repr=False: the URL may carry the password (a settings dump must not show it).
    url: str | None = Field(default=None, repr=False)
    url_file: Path | None = None
    password_file: Path | None = None
    prefix: str = "scgw"
    client_id: str = "scgw-gateway"
    # MQTT v5 lets the gateway announce how many unacked messages it takes (Receive Maximum);
    # 3.1.1 is for brokers without v5 (the embedded demo broker).
    protocol: Literal["5", "3.1.1"] = "5"
    # With a group, several gateway processes share the uplinks ($share/GROUP/...).
    shared_group: str | None = None
    session_expiry: Duration = 7 * 86400.0
    keepalive: int = Field(default=30, ge=5, le=3600)
    # How many unacknowledged QoS 1 messages the broker may send each lane (MQTT v5 Receive
    # Maximum). Telemetry is acked per committed batch, so this bounds the batch pipeline.
    telemetry_inflight: int = Field(default=10000, ge=1, le=65535)
    # Large: the event lane takes everything the broker holds for it and serves devices in
    # turn (gateway/ingest/fair.py), so one flooding device cannot hold a press at the broker.
    event_inflight: int = Field(default=10000, ge=1, le=65535)
    max_payload_bytes: int = Field(default=64 * 1024, ge=256, le=16 * 1024 * 1024)

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        return _url_secrets(data, ("mqtt://", "mqtts://", "tcp://", "ssl://"))

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"scheme must be mqtt:// or mqtts://, got {redact_url(value)!r}")
        if not parts.hostname:
            raise ValueError(f"no host in {redact_url(value)!r}")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"bad port in {redact_url(value)!r}") from None
        return value

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not value or any(c in value for c in "/+#"):
            raise ValueError("prefix must be one topic level without '/', '+' or '#'")
        return value


class DatabaseSettings(_Section):
    url: str = Field(default="sqlite:///scgw.db", repr=False)
    url_file: Path | None = None
    password_file: Path | None = None
    # 1,000 rows: a transaction short enough (a few ms) that a press's own writes never wait
    # long behind one, yet ~15 commits/s at the 15k msg/s target (docs/benchmarks.md).
    batch_max_rows: int = Field(default=1000, ge=1, le=100_000)
    batch_max_delay: Duration = 0.05

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        return _url_secrets(data, ("postgresql://", "postgres://", "sqlite:///"))

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
        return value


class HttpSettings(_Section):
    bind: str = "127.0.0.1:8080"
    public_url: str | None = None

    @field_validator("bind")
    @classmethod
    def _check_bind(cls, value: str) -> str:
        _split_bind(value)
        return value

    @property
    def host(self) -> str:
        return _split_bind(self.bind)[0]

    @property
    def port(self) -> int:
        return _split_bind(self.bind)[1]


class SerialPortSettings(_Section):
    name: str = Field(min_length=1, max_length=64)
    url: str = Field(min_length=1)
    baudrate: int = Field(default=9600, gt=0)
    # A line quiet this long in the middle of a frame will not finish it (the half frame is
    # skipped and counted). A local UART delivers a frame in one go; a serial server over
    # TCP (socket://) may split one across writes with gaps — give it more.
    frame_gap: Annotated[Duration, Field(gt=0, le=60)] = 0.25


class SerialSettings(_Section):
    ports: list[SerialPortSettings] = Field(default_factory=list)

    @field_validator("ports")
    @classmethod
    def _unique_names(cls, ports: list[SerialPortSettings]) -> list[SerialPortSettings]:
        names = [p.name for p in ports]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"serial port names must be unique, repeated: {', '.join(dupes)}")
        return ports


class SiaAccountSettings(_Section):
    account: str = Field(pattern=r"^[0-9A-Fa-f]{3,16}$")
    # AES key as 32, 48 or 64 hex digits; with a key the account must send encrypted messages.
    key: str | None = Field(default=None, repr=False)
    key_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _key_from_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("key_file") is not None:
            if data.get("key") is not None:
                raise ValueError("set key or key_file, not both")
            data = {**data, "key": read_secret(data["key_file"], "key_file")}
        return data

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: str | None) -> str | None:
        if value is not None:
            from devices.dc09 import parse_key

            parse_key(value)  # ValueError names what is wrong, not the key
        return value


class SiaSettings(_Section):
    bind: str | None = None
    accounts: list[SiaAccountSettings] = Field(default_factory=list)
    # DC-09 replay window: a message may be this much older / newer than the receiver's clock.
    timestamp_past: Duration = 40.0
    timestamp_future: Duration = 20.0
    # Which messages the window applies to: encrypted ones (the standard), all, or none.
    check_timestamps: Literal["encrypted", "all", "off"] = "encrypted"
    # Strict by default; some panels send the length in decimal or the CRC as two raw bytes.
    tolerate_decimal_length: bool = False
    tolerate_binary_crc: bool = False
    idle_timeout: Duration = 300.0  # a connection silent this long is closed

    @field_validator("bind")
    @classmethod
    def _check_bind(cls, value: str | None) -> str | None:
        if value is not None:
            _split_bind(value)
        return value

    @field_validator("accounts")
    @classmethod
    def _unique_accounts(cls, accounts: list[SiaAccountSettings]) -> list[SiaAccountSettings]:
        names = [a.account.upper() for a in accounts]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"SIA accounts must be unique, repeated: {', '.join(dupes)}")
        return accounts


class Zigbee2MqttSettings(_Section):
    """zigbee2mqtt devices on the same broker (``{prefix}/{friendly_name}``)."""

    enabled: bool = True
    prefix: str = "zigbee2mqtt"
    # The most MQTT allows: alarms and readings share these topics, so the broker's queue for
    # this lane is one FIFO; the gateway must be sent everything it holds to find an alarm
    # behind a flood of readings (it reads them all at once; they are acked as stored).
    inflight: int = Field(default=65535, ge=1, le=65535)

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not value or any(c in value for c in "/+#"):
            raise ValueError("prefix must be one topic level without '/', '+' or '#'")
        return value


class IngestSettings(_Section):
    # Per-device token bucket on telemetry/status: a device over it is flagged for technicians.
    device_rate: float = Field(default=20.0, gt=0)
    device_burst: int = Field(default=200, ge=1)
    # What happens to a flooding device's messages over the limit: "flag" keeps every one
    # (SPEC: no silent discard by default — a backlog the broker held looks like a flood);
    # "discard" drops them as rejected{reason="rate_limited"} (opt-in).
    flood_action: Literal["flag", "discard"] = "flag"
    # A device timestamp further ahead than this is replaced by the receive time and flagged
    # (SPEC, Time): a clock 30 minutes fast must not keep a device "seen" in the future.
    max_clock_ahead: Annotated[Duration, Field(gt=0)] = 300.0
    # A device flagged for flooding is unflagged after this long without a refused message.
    device_flag_clear: Annotated[Duration, Field(gt=0)] = 600.0
    unknown_recheck: Duration = 10.0


_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 10**6,
    "mib": 2**20,
    "gb": 10**9,
    "gib": 2**30,
}


def parse_size(value: object) -> int:
    """``"256MiB"``, ``"1GB"``, ``"64KiB"`` or a plain number of bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size like '256MiB' or '1GB'")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (m := _SIZE_RE.match(value)):
        return int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()]
    raise ValueError(f"expected a size like '256MiB' or '1GB', got {value!r}")


Size = Annotated[int, BeforeValidator(parse_size)]


class SpoolSettings(_Section):
    """Where events and readings wait while the database is away (issue 8)."""

    enabled: bool = True
    # Best on another disk than a SQLite database file. Default: beside the SQLite file, or
    # ~/.local/state/scgw/spool/<client id>-<hash of the database URL> for PostgreSQL.
    dir: str | None = None
    max_bytes: Size = Field(default=256 * 2**20, ge=4096)
    # Readings may fill this share of max_bytes; the rest is kept for events.
    readings_share: float = Field(default=0.9, gt=0, le=1)
    # A write the database does not finish within this is spooled at once (a write that
    # fails with an error is retried once first): a stopped server can otherwise hold a write
    # for the pool's whole connect timeout.
    write_timeout: Duration = Field(default=2.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SCGW_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )
    toml_path: ClassVar[Path | None] = None

    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    serial: SerialSettings = Field(default_factory=SerialSettings)
    sia: SiaSettings = Field(default_factory=SiaSettings)
    zigbee2mqtt: Zigbee2MqttSettings = Field(default_factory=Zigbee2MqttSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)
    spool: SpoolSettings = Field(default_factory=SpoolSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_path))
        return tuple(sources)


@dataclass(frozen=True, slots=True)
class _Where:
    path: Path | None

    def name(self) -> str:
        return str(self.path) if self.path is not None else "(no config file)"


def _describe(err: ValidationError, where: _Where) -> str:
    lines = [f"config error in {where.name()}:"]
    for item in err.errors(include_url=False):
        key = ".".join(str(p) for p in item["loc"])
        env = "SCGW_" + "__".join(str(p).upper() for p in item["loc"] if isinstance(p, str))
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see config/scgw.example.toml)"
        lines.append(f"  key {key}: {msg} (from the file or {env})")
    return "\n".join(lines)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read, merge and validate. Raises ConfigError with file, key and reason."""
    where = _Where(path)
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config error: {path}: file not found")
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config error in {path}: not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config error in {path}: not UTF-8 text") from None

    cls = type("FileSettings", (Settings,), {"toml_path": path})
    try:
        settings: Settings = cls(**overrides)
    except ValidationError as err:
        raise ConfigError(_describe(err, where)) from None
    except SettingsError as err:  # an environment variable that is not valid for its key
        raise ConfigError(f"config error in {where.name()}: {err}") from None
    return settings
