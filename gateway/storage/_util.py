"""Small helpers both backends share: instants, JSON text and placeholder translation."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from devices.models import EventType, PendingSighting


def require_aware(ts: datetime) -> datetime:
    """Refuse naive datetimes: a naive value would be read in some machine's local zone and
    silently shift every stored instant by hours."""
    if ts.utcoffset() is None:
        raise ValueError(f"naive datetime {ts!r}: the store only accepts timezone-aware instants")
    return ts


def utc_text(ts: datetime) -> str:
    """The one fixed text form of an instant (``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``).

    Fixed width and always UTC, so text equality is instant equality and text order is time
    order: SQLite compares these as plain strings in keys, ``max()`` and range filters.
    """
    return require_aware(ts).astimezone(UTC).isoformat(timespec="microseconds")


def parse_utc_text(raw: bytes | str) -> datetime:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return datetime.fromisoformat(text)


def dump_json(value: Any) -> str:
    # Compact, and readable Chinese text (names, notes) for anyone who looks at the raw column.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def as_json_text(payload: str) -> str:
    """Make a payload storable as JSON on both backends.

    Valid JSON is kept byte for byte. Anything else (a raw frame, a truncated message) is
    wrapped as a JSON string rather than refused: an event must never be lost because its
    payload is not JSON. Python's strict parser also guarantees no literal NUL survives, which
    PostgreSQL would reject.
    """
    try:
        json.loads(payload)
    except ValueError:
        return json.dumps(payload)
    return payload


def clean_text(text: str) -> str:
    """PostgreSQL text cannot hold NUL; keep SQLite identical so both backends agree."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def qmark_to_pyformat(sql: str) -> str:
    """Translate ``?`` placeholders to psycopg's ``%s``.

    ``%`` is doubled everywhere (psycopg parses the whole string); ``?`` inside quoted strings,
    quoted identifiers and ``--`` comments is left alone. PostgreSQL's jsonb ``?`` operators
    therefore cannot be written with this helper; use ``jsonb_exists()`` instead.
    """
    out: list[str] = []
    quote: str | None = None
    i = 0
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch == "%":
            out.append("%%")
        elif quote is not None:
            out.append(ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end == -1 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
            continue
        elif ch == "?":
            out.append("%s")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class PendingFold:
    """Several sightings of one unknown device, folded into the one row they amount to."""

    device_id: str
    first_seen: datetime
    last_seen: datetime
    messages: int
    sos_count: int
    last_kind: str
    last_payload: str


def fold_pending(sightings: Iterable[PendingSighting]) -> list[PendingFold]:
    """One row per device (a flooding unknown device costs one upsert per batch, not one per
    message). Equal timestamps: the later sighting wins, as applying them one by one would."""
    folded: dict[str, PendingFold] = {}
    for s in sightings:
        ts = require_aware(s.ts)
        sos = int(s.event_type == EventType.SOS)
        old = folded.get(s.device_id)
        if old is None:
            folded[s.device_id] = PendingFold(
                s.device_id, ts, ts, 1, sos, clean_text(s.kind), clean_text(s.payload)
            )
            continue
        newest = ts >= old.last_seen
        folded[s.device_id] = PendingFold(
            s.device_id,
            min(old.first_seen, ts),
            max(old.last_seen, ts),
            old.messages + 1,
            old.sos_count + sos,
            clean_text(s.kind) if newest else old.last_kind,
            clean_text(s.payload) if newest else old.last_payload,
        )
    return sorted(folded.values(), key=lambda f: f.device_id)  # one lock order everywhere


def escaped(text: str, limit: int = 16_384) -> str:
    """Text any database stores: control characters (NUL above all) written as escapes, cut
    to ``limit`` — for keeping a copy of what a database refused."""
    out = text.encode("unicode_escape").decode("ascii")
    return out if len(out) <= limit else out[:limit] + "…"
