"""The spool directory: order across segments, bounds with headroom for events, restart
after a crash mid-write, and the drain's view (oldest segment first, delete when applied)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerts.outage import OutageNotice
from devices.models import Event, EventType, Reading
from gateway.spool import records as rec
from gateway.spool.segments import segment_index
from gateway.spool.spool import Spool, SpoolState, SpoolStats

NOW = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def event(n: int) -> rec.SpooledEvent:
    return rec.SpooledEvent(Event("btn-1", EventType.SOS, NOW, NOW, event_id=f"e-{n}"))


def readings(n: int, rows: int = 10) -> rec.SpooledReadings:
    return rec.SpooledReadings(
        tuple(Reading(f"th-{n}", "temperature", NOW, float(i)) for i in range(rows))
    )


async def drain_all(spool: Spool) -> list[rec.Record]:
    out: list[rec.Record] = []
    while (item := await spool.next_segment()) is not None:
        segment, bodies = item
        for body in bodies[spool.applied_in_oldest :]:
            out.append(rec.loads(body))
            spool.applied()
        await spool.remove(segment)
    return out


async def test_records_drain_in_append_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10_000_000, segment_bytes=600)
    await spool.open()
    written: list[rec.Record] = []
    for n in range(40):
        record = event(n) if n % 3 == 0 else readings(n, rows=2)
        assert await spool.append(record)
        written.append(record)
    assert spool.active
    assert spool.records == 40
    assert spool.state is SpoolState.SPOOLING
    assert len(list((tmp_path / "spool").iterdir())) > 3  # it rotated
    assert await drain_all(spool) == written
    assert not spool.active
    assert spool.state is SpoolState.OK
    assert spool.records == 0
    assert list((tmp_path / "spool").iterdir()) == []  # applied segments are deleted
    await spool.close()


async def test_append_if_active_only_queues_behind_waiting_records(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=1_000_000)
    await spool.open()
    assert await spool.append_if_active(readings(1)) is None  # empty: the database's turn
    assert not (tmp_path / "spool").exists()  # nothing created until something is spooled
    assert await spool.append(event(1))
    assert await spool.append_if_active(readings(2)) is True
    assert [type(r) for r in await drain_all(spool)] == [rec.SpooledEvent, rec.SpooledReadings]
    await spool.close()


async def test_full_refuses_readings_but_never_events(tmp_path: Path) -> None:
    seen: list[SpoolStats] = []
    spool = Spool(tmp_path / "spool", max_bytes=4000, on_change=seen.append)
    await spool.open()
    accepted = 0
    while await spool.append(readings(accepted, rows=5)):
        accepted += 1
    assert spool.size_bytes <= spool.readings_limit == 3600
    assert spool.state is SpoolState.FULL
    assert seen[-1].state is SpoolState.FULL
    # Events use the headroom, and past max_bytes still go in (only the disk can refuse).
    for n in range(30):
        assert await spool.append(event(n))
    assert spool.size_bytes > spool.max_bytes
    assert spool.state is SpoolState.FULL
    assert spool.records == accepted + 30

    drained = await drain_all(spool)
    assert len(drained) == accepted + 30
    assert spool.state is SpoolState.OK
    assert seen[-1] == SpoolStats(SpoolState.OK, 0, 0, 4000, 0)
    assert await spool.append(readings(99))  # room again
    await spool.close()


async def test_restart_after_a_crash_mid_write_keeps_every_whole_record(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    first = Spool(directory, max_bytes=1_000_000, segment_bytes=300)
    await first.open()
    for n in range(10):
        await first.append(event(n))
    notice = OutageNotice("id:e-3", "alert-3", NOW, 0, ("responder:v-1",), 1)
    await first.append(rec.SpooledNotice(notice))
    # kill -9 mid-write: the process never closes the spool; the last record is half there.
    last = max(directory.iterdir(), key=lambda p: segment_index(p) or 0)
    with last.open("ab") as f:
        f.write(b"\x00\x00\x01\x00\x12\x34")

    second = Spool(directory, max_bytes=1_000_000, segment_bytes=300)
    notices = await second.open()
    assert notices == [rec.SpooledNotice(notice)]  # known before anything is replayed
    assert second.records == 11
    assert await second.append(event(10))  # a new segment: never behind the torn tail
    drained = await drain_all(second)
    assert drained == [*(event(n) for n in range(10)), rec.SpooledNotice(notice), event(10)]
    await second.close()
    await first.close()


async def test_a_segment_that_is_not_ours_is_set_aside_not_fatal(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    (directory / "000000000001.seg").write_bytes(b"something else entirely")
    spool = Spool(directory, max_bytes=1_000_000)
    assert await spool.open() == []
    assert not spool.active
    assert (directory / "000000000001.seg.bad").exists()
    await spool.close()


async def test_drain_resumes_after_the_records_already_applied(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=1_000_000)
    await spool.open()
    for n in range(5):
        await spool.append(event(n))
    item = await spool.next_segment()
    assert item is not None
    segment, _bodies = item
    spool.applied(2)  # then the database went away again
    assert spool.records == 3
    again = await spool.next_segment()
    assert again is not None
    assert again[0] == segment
    assert [rec.loads(b) for b in again[1][spool.applied_in_oldest :]] == [
        event(2),
        event(3),
        event(4),
    ]
    await spool.close()


async def test_a_failing_disk_raises_and_later_records_are_still_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=1_000_000)
    await spool.open()
    assert await spool.append(event(1))
    from gateway.spool import segments

    real = segments.os.fsync
    calls = {"n": 0}

    def failing(fd: int) -> None:
        calls["n"] += 1
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(segments.os, "fsync", failing)
    with pytest.raises(OSError, match="No space"):
        await spool.append(event(2))
    monkeypatch.setattr(segments.os, "fsync", real)
    assert await spool.append(event(3))
    assert await drain_all(spool) == [event(1), event(3)]
    await spool.close()


def test_bad_bounds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        Spool(tmp_path, max_bytes=0)
    with pytest.raises(ValueError, match="readings_share"):
        Spool(tmp_path, max_bytes=100, readings_share=1.5)
