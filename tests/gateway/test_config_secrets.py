"""Secrets from files (``*_file`` keys and ``SCGW_…_FILE`` env): read, merged, and never shown
in an error message, a settings repr, or the output of a failing command."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_settings
from gateway.mqtt.address import BrokerAddress
from tests.harness.ports import free_port

SECRET = "Sup3r$ecret:@/x%41 密码"


def _secret_file(tmp_path: Path, text: str = SECRET + "\n", name: str = "pw") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scgw.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_password_files_go_into_the_urls(tmp_path: Path) -> None:
    pw = _secret_file(tmp_path)
    path = _config(
        tmp_path,
        f'[mqtt]\nurl = "mqtt://gateway@broker:1883"\npassword_file = "{pw}"\n'
        f'[database]\nurl = "postgresql://scgw@db:5432/scgw"\npassword_file = "{pw}"\n',
    )
    settings = load_settings(path)
    assert settings.mqtt.url is not None
    address = BrokerAddress.parse(settings.mqtt.url)
    assert (address.username, address.password) == ("gateway", SECRET)  # newline stripped
    assert (address.host, address.port) == ("broker", 1883)
    assert settings.database.url.startswith("postgresql://scgw:")
    assert settings.database.url.endswith("@db:5432/scgw")
    text = repr(settings) + str(settings) + repr(settings.mqtt) + repr(settings.database)
    assert SECRET not in text
    assert "Sup3r" not in text


def test_env_file_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url_file = _secret_file(tmp_path, "postgresql://scgw:pw-from-file@db/scgw\n", "db")
    pw = _secret_file(tmp_path)
    monkeypatch.setenv("SCGW_DATABASE__URL_FILE", str(url_file))
    monkeypatch.setenv("SCGW_MQTT__URL", "mqtts://gateway@broker:8883")
    monkeypatch.setenv("SCGW_MQTT__PASSWORD_FILE", str(pw))
    settings = load_settings(_config(tmp_path, ""))
    assert settings.database.url == "postgresql://scgw:pw-from-file@db/scgw"
    assert settings.mqtt.url is not None
    assert BrokerAddress.parse(settings.mqtt.url).password == SECRET


def test_sia_key_file(tmp_path: Path) -> None:
    key = _secret_file(tmp_path, "00112233445566778899AABBCCDDEEFF\n", "aes")
    path = _config(tmp_path, f'[[sia.accounts]]\naccount = "1234"\nkey_file = "{key}"\n')
    account = load_settings(path).sia.accounts[0]
    assert account.key == "00112233445566778899AABBCCDDEEFF"
    assert "00112233" not in repr(account)


@pytest.mark.parametrize(
    ("section", "body", "why"),
    [
        ("mqtt", 'url = "mqtt://gw@b:1883"\npassword_file = "{missing}"', "cannot read"),
        ("mqtt", 'url = "mqtt://gw@b:1883"\npassword_file = "{empty}"', "is empty"),
        ("mqtt", 'url = "mqtt://gw@b:1883"\npassword_file = "{dir}"', "cannot read"),
        ("mqtt", 'url = "mqtt://gw@b:1883"\npassword_file = "{two_lines}"', "one line"),
        ("mqtt", 'url = "mqtt://gw@b:1883"\npassword_file = "{binary}"', "not UTF-8"),
        ("mqtt", 'password_file = "{secret}"', "needs url"),
        ("mqtt", 'url = "mqtt://b:1883"\npassword_file = "{secret}"', "needs a user name"),
        ("mqtt", 'url = "mqtt://gw:old@b:1883"\npassword_file = "{secret}"', "password already"),
        ("mqtt", 'url = "mqtt://gw@b"\nurl_file = "{secret}"', "not both"),
        ("mqtt", 'url_file = "{secret}"', "does not hold a mqtt:// URL"),
        ("database", 'url_file = "{secret}"', "does not hold a postgresql:// URL"),
        ("database", 'url = "postgresql://db/x"\npassword_file = "{secret}"', "user name"),
        ("mqtt", "password_file = 7", "file path"),
    ],
)
def test_bad_secret_files_name_the_key_never_the_secret(
    tmp_path: Path, section: str, body: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    files = {
        "missing": tmp_path / "nope",
        "empty": _secret_file(tmp_path, "\n", "empty"),
        "dir": tmp_path,
        "two_lines": _secret_file(tmp_path, SECRET + "\nmore-" + SECRET, "two"),
        "secret": _secret_file(tmp_path),
    }
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe" + SECRET.encode())
    files["binary"] = binary
    path = _config(tmp_path, f"[{section}]\n" + body.format(**files) + "\n")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert why in message
    assert str(path) in message
    assert f"key {section}" in message
    assert "Sup3r" not in message
    assert "Sup3r" not in caplog.text


def test_a_failing_command_never_prints_the_secret(tmp_path: Path) -> None:
    """The real CLI, a database that refuses the connection: the error names the host."""
    pw = _secret_file(tmp_path)
    port = free_port()  # nothing listens there
    path = _config(
        tmp_path,
        f'[database]\nurl = "postgresql://scgw@127.0.0.1:{port}/scgw"\npassword_file = "{pw}"\n',
    )
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "db", "migrate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"127.0.0.1:{port}" in output
    assert "Sup3r" not in output
    assert "Traceback" not in output
