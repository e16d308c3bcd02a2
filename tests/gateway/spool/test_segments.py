"""The segment file format: order, CRC, torn tails, a foreign file, the fsync path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.spool import segments as seg


def write(path: Path, bodies: list[bytes]) -> seg.SegmentWriter:
    writer = seg.SegmentWriter(path)
    for body in bodies:
        writer.append(body)
    return writer


def test_records_come_back_in_order(tmp_path: Path) -> None:
    bodies = [f"record {i}".encode() * (i + 1) for i in range(50)] + [b""]
    writer = write(tmp_path / seg.segment_name(1), bodies)
    writer.close()
    scan = seg.read_segment(tmp_path / seg.segment_name(1))
    assert scan.records == bodies
    assert scan.torn_bytes == 0
    assert scan.good_bytes == writer.size == (tmp_path / seg.segment_name(1)).stat().st_size


@pytest.mark.parametrize("cut", [1, 4, 8, 9, 15])
def test_a_torn_last_record_is_ignored_and_earlier_ones_kept(tmp_path: Path, cut: int) -> None:
    path = tmp_path / seg.segment_name(1)
    write(path, [b"first", b"second", b"third-and-last"]).close()
    data = path.read_bytes()
    path.write_bytes(data[:-cut])  # a crash in the middle of writing the last record
    scan = seg.read_segment(path)
    assert scan.records == [b"first", b"second"]
    assert scan.torn_bytes == len(data) - cut - scan.good_bytes


def test_a_flipped_bit_stops_reading_at_that_record(tmp_path: Path) -> None:
    path = tmp_path / seg.segment_name(1)
    write(path, [b"good", b"damaged", b"after"]).close()
    data = bytearray(path.read_bytes())
    data[data.index(b"damaged")] ^= 0x01
    path.write_bytes(bytes(data))
    assert seg.read_segment(path).records == [b"good"]


def test_a_garbage_length_is_a_torn_tail_not_a_huge_read(tmp_path: Path) -> None:
    path = tmp_path / seg.segment_name(1)
    write(path, [b"ok"]).close()
    with path.open("ab") as f:
        f.write(b"\xff\xff\xff\xff\x00\x00\x00\x00garbage")
    scan = seg.read_segment(path)
    assert scan.records == [b"ok"]
    assert scan.torn_bytes == 15


def test_a_crash_before_the_header_is_an_empty_segment(tmp_path: Path) -> None:
    path = tmp_path / seg.segment_name(1)
    path.write_bytes(seg.MAGIC[:3])
    assert seg.read_segment(path).records == []


def test_a_foreign_file_or_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / seg.segment_name(1)
    path.write_bytes(b"NOTASPOOL" + b"\x00" * 20)
    with pytest.raises(seg.SegmentError, match="magic"):
        seg.read_segment(path)
    path.write_bytes(seg.MAGIC + bytes([seg.VERSION + 1]))
    with pytest.raises(seg.SegmentError, match="version"):
        seg.read_segment(path)


def test_a_writer_never_continues_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / seg.segment_name(1)
    write(path, [b"x"]).close()
    with pytest.raises(FileExistsError):
        seg.SegmentWriter(path)


def test_an_oversized_record_is_refused() -> None:
    with pytest.raises(ValueError, match="over"):
        seg.frame(b"x" * (seg.MAX_RECORD + 1))


def test_every_record_and_the_new_file_are_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(seg.os, "fsync", spy)
    writer = seg.SegmentWriter(tmp_path / seg.segment_name(7))
    assert len(synced) == 2  # the header, then the directory entry
    writer.append(b"a")
    writer.append(b"b")
    assert len(synced) == 4
    writer.append(b"c", sync=False)
    assert len(synced) == 4
    writer.close()


def test_segment_names_sort_in_order() -> None:
    names = [seg.segment_name(i) for i in (1, 2, 10, 100, 9)]
    assert sorted(names, key=lambda n: seg.segment_index(Path(n)) or 0) == sorted(names)
    assert seg.segment_index(Path("000000000042.seg")) == 42
    assert seg.segment_index(Path("notes.txt")) is None
