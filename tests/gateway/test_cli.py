"""The ``scgw`` command line as a technician uses it: clear lines, right exit codes, never a
traceback for an expected failure."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
COMMUNITY = ROOT / "config" / "community"


def scgw(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def test_bad_config_names_file_key_reason_without_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[mqtt]\nurl = "http://nowhere"\n[database]\nurl = "mysql://x"\n')
    result = scgw("run", "-c", str(config))
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert "key mqtt.url: scheme must be mqtt://" in result.stderr
    assert "key database.url:" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_mqtt_url_and_taken_http_port(tmp_path: Path) -> None:
    config = tmp_path / "scgw.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/x.db"\n')
    result = scgw("run", "-c", str(config))
    assert result.returncode == 2
    assert "[mqtt] url is required" in result.stderr

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config.write_text(
            f'[mqtt]\nurl = "mqtt://127.0.0.1:{free_port()}"\n'
            f'[database]\nurl = "sqlite:///{tmp_path}/x.db"\n[http]\nbind = "127.0.0.1:{port}"\n'
        )
        result = scgw("run", "-c", str(config))
    assert result.returncode == 2
    assert f"127.0.0.1:{port}" in result.stderr
    assert "cannot listen" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_migrate_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    first = scgw("db", "migrate", "--db", url)
    second = scgw("db", "migrate", "--db", url)
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout
    assert "schema at version" in first.stdout


def test_db_migrate_against_postgres(pg_url: str) -> None:
    result = scgw("db", "migrate", "--db", pg_url)
    assert result.returncode == 0, result.stderr
    assert "(postgresql)" in result.stdout or "postgres" in result.stdout


def test_unreachable_database_is_one_clear_line() -> None:
    result = scgw("db", "migrate", "--db", f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    assert result.returncode == 1
    assert "database not reachable" in result.stderr
    assert "Traceback" not in result.stderr


def test_import_example_community_then_reimport_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    for name in ("responders.csv", "residents.csv", "devices.csv"):
        result = scgw("import", str(COMMUNITY / name), "--db", url)
        assert result.returncode == 0, result.stdout + result.stderr
    again = scgw("import", str(COMMUNITY / "devices.csv"), "--db", url)
    assert again.returncode == 0
    rows = sum(1 for line in (COMMUNITY / "devices.csv").read_text().splitlines()[1:] if line)
    assert f"{rows} unchanged" in again.stdout


def test_import_bad_row_names_the_line_and_imports_the_rest(tmp_path: Path) -> None:
    csv = tmp_path / "devices.csv"
    csv.write_text("device_id,type\nbtn-1,sos_button\nbtn-2,toaster\nbtn-3,smoke_detector\n")
    result = scgw("import", str(csv), "--db", f"sqlite:///{tmp_path}/d.db")
    assert result.returncode == 1
    assert "line 3" in result.stdout
    assert "2 new" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("import", "/nonexistent.csv"), "file not found"),
        (("sim", "press", "btn-1", "--type", "explode"), "unknown event type"),
        (("sim", "press", "bad id"), "invalid device id"),
    ],
)
def test_usage_errors(args: tuple[str, ...], message: str) -> None:
    result = scgw(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
