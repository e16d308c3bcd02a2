"""The spool's file format: append-only segment files of checksummed records.

A segment is ``HEADER`` (``b"SCGWSPL"`` + version byte) followed by records, each
``length u32 BE | crc32 u32 BE | body`` (CRC-32 of the body). A writer fsyncs after each
record it is asked to make durable, and the directory after creating a file, so a record
whose append returned survives ``kill -9`` and power loss.

Reading stops at the first record that is incomplete or fails its CRC (a crash mid-write
leaves a torn tail): everything before it is returned, and the tail is reported, never
raised. Writers never append to a segment from an earlier process (they open a new one), so
a torn tail never has good records behind it.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

MAGIC: Final = b"SCGWSPL"
VERSION: Final = 1
HEADER: Final = MAGIC + bytes([VERSION])
_FRAME: Final = struct.Struct(">II")
MAX_RECORD: Final = 64 * 1024 * 1024  # a length beyond this is garbage, not a record
SUFFIX: Final = ".seg"


class SegmentError(ValueError):
    """Not a spool segment (wrong magic) or a version this code cannot read."""


@dataclass(frozen=True, slots=True)
class Scan:
    records: list[bytes]
    good_bytes: int  # header + whole, valid records
    torn_bytes: int  # bytes after the last valid record (a crash mid-write), 0 normally


def frame(body: bytes) -> bytes:
    if len(body) > MAX_RECORD:
        raise ValueError(f"spool record of {len(body)} bytes is over {MAX_RECORD}")
    return _FRAME.pack(len(body), zlib.crc32(body)) + body


def parse(data: bytes) -> Scan:
    """The valid records of a segment's bytes, in order."""
    if len(data) < len(HEADER):
        # A crash between creating the file and writing its header: an empty segment.
        return Scan([], 0, len(data))
    if data[: len(MAGIC)] != MAGIC:
        raise SegmentError("not a spool segment (bad magic)")
    if data[len(MAGIC)] != VERSION:
        raise SegmentError(f"spool segment version {data[len(MAGIC)]} (this code reads {VERSION})")
    records: list[bytes] = []
    pos = len(HEADER)
    end = len(data)
    while pos + _FRAME.size <= end:
        length, crc = _FRAME.unpack_from(data, pos)
        start = pos + _FRAME.size
        if length > MAX_RECORD or start + length > end:
            break
        body = data[start : start + length]
        if zlib.crc32(body) != crc:
            break
        records.append(bytes(body))
        pos = start + length
    return Scan(records, pos, end - pos)


def read_segment(path: Path) -> Scan:
    return parse(path.read_bytes())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SegmentWriter:
    """Appends records to one new segment file. Not thread-safe: one owner."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = 0
        # O_EXCL: never continue a file a previous process left behind.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._file: BinaryIO = os.fdopen(fd, "ab", buffering=0)
        self._file.write(HEADER)
        os.fsync(fd)
        fsync_dir(path.parent)
        self.size = len(HEADER)

    def append(self, body: bytes, *, sync: bool = True) -> int:
        """Write one record; with ``sync`` it is on disk when this returns. Its size."""
        data = frame(body)
        self._file.write(data)
        if sync:
            os.fsync(self._file.fileno())
        self.size += len(data)
        self.records += 1
        return len(data)

    def close(self) -> None:
        self._file.close()


def segment_name(index: int) -> str:
    return f"{index:012d}{SUFFIX}"


def segment_index(path: Path) -> int | None:
    stem = path.name.removesuffix(SUFFIX)
    return int(stem) if path.name.endswith(SUFFIX) and stem.isdigit() else None
