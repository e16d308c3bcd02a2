"""Config: TOML + env overrides; a bad config names the file, the key and the reason."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import get_args, get_origin

import pytest
from pydantic import BaseModel

from alerts.models import Priority
from gateway.config import ConfigError, Settings, load_settings, redact_url


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scgw.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_spec_keys_load(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[mqtt]
url = "mqtt://gw:secret@broker.local:1883"
[database]
url = "postgresql://scgw@db/scgw"
batch_max_delay = "20ms"
[http]
bind = "0.0.0.0:8080"
public_url = "https://desk.example.org"
[[serial.ports]]
name = "bus1"
url = "/dev/ttyUSB0"
baudrate = 9600
[sia]
bind = "0.0.0.0:12128"
[[sia.accounts]]
account = "1234"
""",
    )
    settings = load_settings(path)
    assert settings.mqtt.url == "mqtt://gw:secret@broker.local:1883"
    assert settings.database.batch_max_delay == pytest.approx(0.02)
    assert (settings.http.host, settings.http.port) == ("0.0.0.0", 8080)
    assert settings.serial.ports[0].name == "bus1"
    assert settings.sia.accounts[0].account == "1234"


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, '[http]\nbind = "127.0.0.1:8080"\n')
    monkeypatch.setenv("SCGW_HTTP__BIND", "127.0.0.1:9999")
    monkeypatch.setenv("SCGW_DATABASE__URL", "sqlite:///other.db")
    settings = load_settings(path)
    assert settings.http.port == 9999
    assert settings.database.url == "sqlite:///other.db"


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('[mqtt]\nurl = "http://broker"\n', "mqtt.url", "scheme must be mqtt://"),
        ('[mqtt]\nurll = "mqtt://x"\n', "mqtt.urll", "unknown key"),
        ('[http]\nbind = "8080"\n', "http.bind", "HOST:PORT"),
        ('[database]\nurl = "mysql://x"\n', "database.url", "sqlite:///PATH"),
        ('[database]\nbatch_max_delay = "soon"\n', "database.batch_max_delay", "duration"),
        ('[[serial.ports]]\nname = "a"\n', "serial.ports.0.url", "Field required"),
        ('[mqtt]\nkeepalive = "often"\n', "mqtt.keepalive", "integer"),
    ],
)
def test_bad_values_name_file_key_and_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert str(path) in message
    assert f"key {key}:" in message
    assert reason in message


def test_duplicate_serial_port_names(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[[serial.ports]]\nname = "a"\nurl = "/dev/x"\n'
        '[[serial.ports]]\nname = "a"\nurl = "/dev/y"\n',
    )
    with pytest.raises(ConfigError, match="repeated: a"):
        load_settings(path)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not valid TOML.*line 1"):
        load_settings(_write(tmp_path, "[mqtt\nurl="))
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.toml")


def test_bad_env_value_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCGW_MQTT__KEEPALIVE", "x")
    with pytest.raises(ConfigError, match="SCGW_MQTT__KEEPALIVE"):
        load_settings(_write(tmp_path, ""))


def test_password_never_in_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, '[mqtt]\nurl = "http://gw:hunter2@broker"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "hunter2" not in str(info.value)
    assert redact_url("mqtt://u:p@h:1") == "mqtt://u:***@h:1"


def test_shipped_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "scgw.example.toml"
    settings = load_settings(example)
    assert settings.mqtt.client_id == "scgw-gw1"
    assert settings.database.url.startswith("postgresql://")


def test_alert_settings_merge_with_defaults(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[[alerts.policies.P1.steps]]
targets = ["assigned"]
ack_timeout = "30s"
[alerts.thresholds.temperature]
kind = "high_temp"
priority = "P2"
high = 60
clear_high = 55
[alerts.offline_after]
sos_button = "5m"
""",
    )
    alerts = load_settings(path).alerts
    assert [s.ack_timeout for s in alerts.steps_for("P1")] == [30.0]  # type: ignore[arg-type]
    assert len(alerts.steps_for("P2")) == 2  # type: ignore[arg-type]  # default kept
    assert alerts.thresholds["temperature"].high == 60
    assert alerts.thresholds["gas_ppm"].kind == "gas"  # default kept
    assert alerts.offline_timeout("sos_button") == 300
    assert alerts.offline_timeout("gas_detector") == 1800


def test_bad_alert_target_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, '[[alerts.policies.P1.steps]]\ntargets = ["everyone"]\n')
    with pytest.raises(ConfigError, match=r"key alerts\.policies\.P1\.steps\.0\.targets: unknown"):
        load_settings(path)


# -- the shipped example config: documents every key, holds the defaults, and its commented
# -- optional keys load too ------------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "scgw.example.toml"
# A commented-out table or key in the example: "# [table]", "# [[table]]", "# key = value".
_COMMENTED = re.compile(r"^# (\[\[?[\w.]+\]\]?|\w+ = .*)$")
_TABLE = re.compile(r"^\[\[?([\w.]+)\]\]?")
_KEY = re.compile(r"^(\w+) = ")


def _documented() -> dict[str, set[str]]:
    """Keys per table as a reader of the example sees them, commented out or not."""
    keys: dict[str, set[str]] = {"": set()}
    table = ""
    for raw in EXAMPLE.read_text(encoding="utf-8").splitlines():
        commented = _COMMENTED.match(raw)
        line = commented.group(1) if commented else raw
        if t := _TABLE.match(line):
            table = t.group(1)
            keys.setdefault(table, set())
        elif k := _KEY.match(line):
            keys[table].add(k.group(1))
    return keys


def _model_of(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _undocumented(model: type[BaseModel], tables: list[str], doc: dict[str, set[str]]) -> list[str]:
    """Dotted names of ``model``'s keys that none of ``tables`` in the example mentions.
    A dict of sections (``alerts.policies``) is walked through the tables the example gives it,
    and counts as documented when each key appears in at least one of them."""
    missing: list[str] = []
    for name, field in model.model_fields.items():
        here = [f"{t}.{name}".lstrip(".") for t in tables]
        origin, args = get_origin(field.annotation), get_args(field.annotation)
        if (sub := _model_of(field.annotation)) or (origin is list and (sub := _model_of(args[0]))):
            found = [t for t in here if any(d == t or d.startswith(t + ".") for d in doc)]
            missing += _undocumented(sub, found, doc) if found else here[:1]
        elif origin is dict and (sub := _model_of(args[1])):
            # one table per entry: alerts.policies.P1, alerts.policies.P2, ...
            depth = here[0].count(".") + 1
            children = [d for d in doc for t in here if d.startswith(t + ".")]
            direct = [d for d in children if d.count(".") == depth]
            missing += _undocumented(sub, direct, doc) if direct else here[:1]
        elif origin is dict:
            if not any(doc.get(t) for t in here):  # one table of plain values
                missing.append(here[0])
        elif not any(name in doc.get(t, set()) for t in tables):
            missing.append(here[0])
    return missing


def test_example_config_documents_every_key() -> None:
    assert _undocumented(Settings, [""], _documented()) == []


def test_example_config_holds_the_defaults() -> None:
    example = load_settings(EXAMPLE)
    assert example.mqtt.url == "mqtt://scgw.gateway@127.0.0.1:1883"
    assert example.spool.max_bytes == 256 * 2**20
    assert example.alerts.steps_for(Priority.P1)[0].ack_timeout == 60.0
    assert example.alerts.offline_timeout("sos_button") == 900.0
    # Every value is the default but the four the file marks "example".
    shown = example.model_dump()
    defaults = load_settings(None).model_dump()
    for section, key in [
        ("mqtt", "url"),
        ("mqtt", "client_id"),
        ("database", "url"),
        ("http", "public_url"),
    ]:
        assert shown[section][key] != defaults[section][key]
        defaults[section][key] = shown[section][key]
    assert shown == defaults


def test_example_config_commented_keys_load_too(tmp_path: Path) -> None:
    secrets = {"password_file": "hunter2", "key_file": "000102030405060708090A0B0C0D0E0F"}
    for key, secret in secrets.items():
        (tmp_path / key).write_text(secret + "\n", encoding="utf-8")
    lines: list[str] = []
    for raw in EXAMPLE.read_text(encoding="utf-8").splitlines():
        commented = _COMMENTED.match(raw)
        line = commented.group(1) if commented else raw
        if line.startswith("url_file = "):
            continue  # the example sets url; url_file is its alternative
        if m := re.match(r"^(\w+_file) = ", line):
            line = f"{m.group(1)} = {json.dumps(str(tmp_path / m.group(1)))}"
        lines.append(line)
    settings = load_settings(_write(tmp_path, "\n".join(lines)))
    assert settings.mqtt.url == "mqtt://scgw.gateway:hunter2@127.0.0.1:1883"
    assert settings.mqtt.shared_group == "scgw"
    assert settings.database.url == "postgresql://scgw:hunter2@127.0.0.1:5432/scgw"
    assert [p.name for p in settings.serial.ports] == ["bus1"]
    assert settings.sia.bind == "0.0.0.0:12128"
    assert [a.key for a in settings.sia.accounts] == [
        "00112233445566778899AABBCCDDEEFF",
        secrets["key_file"],
    ]
    assert settings.spool.dir is not None
    assert len(settings.alerts.contact_channels) == 1
