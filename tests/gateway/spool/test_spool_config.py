"""``[spool]`` settings and where the spool lives."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from devices.models import Event, EventType
from gateway.config import ConfigError, load_settings
from gateway.intake.durable import spool_path, with_dedup_key


def test_defaults_and_sizes() -> None:
    spool = load_settings(None).spool
    assert spool.enabled
    assert spool.dir is None
    assert spool.max_bytes == 256 * 2**20
    assert spool.readings_share == 0.9
    assert spool.write_timeout == 2.0
    given = load_settings(None, spool={"max_bytes": "64KiB", "write_timeout": "300ms"}).spool
    assert given.max_bytes == 65536
    assert given.write_timeout == pytest.approx(0.3)
    assert load_settings(None, spool={"max_bytes": "1GB"}).spool.max_bytes == 10**9


@pytest.mark.parametrize(
    ("values", "key", "reason"),
    [
        ({"max_bytes": "lots"}, "spool.max_bytes", "expected a size"),
        ({"max_bytes": 100}, "spool.max_bytes", "greater than or equal to 4096"),
        ({"max_bytes": True}, "spool.max_bytes", "expected a size"),
        ({"readings_share": 0}, "spool.readings_share", "greater than 0"),
        ({"readings_share": 1.5}, "spool.readings_share", "less than or equal to 1"),
        ({"write_timeout": "soon"}, "spool.write_timeout", "expected a duration"),
        ({"write_timeout": 0}, "spool.write_timeout", "greater than 0"),
        ({"folder": "/x"}, "spool.folder", "unknown key"),
    ],
)
def test_bad_spool_config_names_the_key(values: dict[str, object], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, spool=values)
    assert f"key {key}: " in str(err.value)
    assert reason in str(err.value)


def test_env_overrides_the_spool_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCGW_SPOOL__DIR", "/mnt/other-disk/spool")
    assert load_settings(None).spool.dir == "/mnt/other-disk/spool"


def test_where_the_spool_lives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert spool_path("/spool", "sqlite:///x.db", "gw") == Path("/spool")
    assert spool_path(None, f"sqlite:///{tmp_path}/scgw.db", "gw") == tmp_path / "scgw.db.spool"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    one = spool_path(None, "postgresql://u@h/db1", "gw")
    two = spool_path(None, "postgresql://u@h/db2", "gw")
    assert one.parent == tmp_path / "scgw" / "spool"
    assert one.name.startswith("gw-")
    assert one != two  # two databases never share a spool


def test_an_event_without_id_or_seq_gets_a_key_for_its_replay() -> None:
    now = datetime.now(UTC)
    bare = Event("btn-1", EventType.SOS, now, now)
    keyed = with_dedup_key(bare)
    assert keyed.dedup_key is not None
    assert keyed.event_id is not None
    assert keyed.event_id.startswith("spool-")
    with_id = Event("btn-1", EventType.SOS, now, now, seq=4)
    assert with_dedup_key(with_id) is with_id
