"""Gateway configuration: a TOML file, overridden by ``SCGW_<SECTION>__<KEY>`` env variables.

A bad config must stop the gateway with the file, the key and the reason, never a traceback:
``load_settings`` turns every failure into one ``ConfigError`` with that text.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from alerts.config import AlertsSettings

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class ConfigError(Exception):
    """A configuration problem, already phrased for the person who wrote the file."""


def parse_duration(value: object) -> float:
    """``"60s"``, ``"5m"``, ``"50ms"``, ``"2h"``, ``"1d"`` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like '60s', '5m' or '50ms'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise ValueError(f"expected a duration like '60s', '5m' or '50ms', got {value!r}")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(_Section):
    url: str | None = None
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
    event_inflight: int = Field(default=1000, ge=1, le=65535)
    max_payload_bytes: int = Field(default=64 * 1024, ge=256, le=16 * 1024 * 1024)

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
    url: str = "sqlite:///scgw.db"
    batch_max_rows: int = Field(default=5000, ge=1, le=100_000)
    batch_max_delay: Duration = 0.05

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
    key: str | None = None

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
    inflight: int = Field(default=1000, ge=1, le=65535)

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not value or any(c in value for c in "/+#"):
            raise ValueError("prefix must be one topic level without '/', '+' or '#'")
        return value


class IngestSettings(_Section):
    # Per-device token bucket on telemetry/status: a flooding device is cut off, others not.
    device_rate: float = Field(default=20.0, gt=0)
    device_burst: int = Field(default=200, ge=1)
    unknown_recheck: Duration = 10.0


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
