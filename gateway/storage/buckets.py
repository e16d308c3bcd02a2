"""Readings over time, aggregated in the database: ``bucket`` → avg/min/max/count per bucket.

One query per request, on the stable view ``v_readings``; the database does the grouping, so a
week of 10-second telemetry never crosses the wire row by row.

* PostgreSQL: ``date_bin`` (14+), or TimescaleDB's ``time_bucket`` where the extension is in.
* SQLite: the instant as epoch seconds (``strftime('%s', …)`` reads our fixed UTC text),
  floored to the bucket with integer arithmetic.

Buckets start at an origin of local midnight (Asia/Shanghai, UTC+8, no DST), so ``1d`` means
the station's calendar day, not the UTC one; for 1m/5m/1h the origin makes no difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, Protocol

BUCKETS: Final[dict[str, int]] = {"1m": 60, "5m": 300, "1h": 3600, "1d": 86400}
ORIGIN: Final = datetime(2000, 1, 1, tzinfo=timezone(timedelta(hours=8)))
_ORIGIN_EPOCH: Final = int(ORIGIN.timestamp())


class _Query(Protocol):
    backend: str

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


@dataclass(frozen=True, slots=True)
class Point:
    time: datetime
    avg: float
    min: float
    max: float
    count: int


def _as_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value))


class ReadingQueries:
    """Bucketed and raw readings of one device; remembers whether TimescaleDB is there."""

    def __init__(self, store: _Query) -> None:
        self._store = store
        self._timescale: bool | None = None

    async def _has_timescale(self) -> bool:
        if self._timescale is None:
            rows = await self._store.query(
                "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
            )
            self._timescale = bool(rows and rows[0][0])
        return self._timescale

    async def bucketed(
        self,
        device_id: str,
        metric: str | None,
        since: datetime,
        until: datetime,
        bucket: str,
    ) -> dict[str, list[Point]]:
        seconds = BUCKETS[bucket]
        where = "device_id = ? AND time >= ? AND time < ?"
        params: list[Any] = [device_id, since, until]
        if metric is not None:
            where += " AND metric = ?"
            params.append(metric)
        if self._store.backend == "sqlite":
            sql = (
                "SELECT metric, b, avg(value), min(value), max(value), count(*) FROM ("
                " SELECT metric, value,"
                " ((CAST(strftime('%s', time) AS INTEGER) - ?) / ?) * ? + ? AS b"
                f" FROM v_readings WHERE {where}) GROUP BY metric, b ORDER BY metric, b"
            )
            args: list[Any] = [_ORIGIN_EPOCH, seconds, seconds, _ORIGIN_EPOCH, *params]
        else:
            if await self._has_timescale():
                fn = "time_bucket(?::interval, time, origin => ?::timestamptz)"
            else:
                fn = "date_bin(?::interval, time, ?::timestamptz)"
            sql = (
                f"SELECT metric, {fn} AS b, avg(value), min(value), max(value), count(*)"
                f" FROM v_readings WHERE {where} GROUP BY metric, b ORDER BY metric, b"
            )
            args = [f"{seconds} seconds", ORIGIN, *params]
        series: dict[str, list[Point]] = {}
        for name, b, avg, lo, hi, n in await self._store.query(sql, args):
            series.setdefault(str(name), []).append(
                Point(_as_time(b), float(avg), float(lo), float(hi), int(n))
            )
        return series

    async def raw(
        self,
        device_id: str,
        metric: str | None,
        since: datetime,
        until: datetime,
        limit: int,
    ) -> tuple[dict[str, list[Point]], bool]:
        """Readings as they were stored (each its own point), oldest first; True when more
        than ``limit`` matched (the caller should ask for a bucket)."""
        where = "device_id = ? AND time >= ? AND time < ?"
        params: list[Any] = [device_id, since, until]
        if metric is not None:
            where += " AND metric = ?"
            params.append(metric)
        sql = f"SELECT metric, time, value FROM v_readings WHERE {where} ORDER BY metric, time"
        rows = await self._store.query(f"{sql} LIMIT ?", [*params, limit + 1])
        series: dict[str, list[Point]] = {}
        for name, at, value in rows[:limit]:
            v = float(value)
            series.setdefault(str(name), []).append(Point(_as_time(at), v, v, v, 1))
        return series, len(rows) > limit

    async def metrics(self, device_id: str, since: datetime) -> list[str]:
        """Metrics the device reported since ``since`` (bounded: years of history stay out)."""
        rows = await self._store.query(
            "SELECT DISTINCT metric FROM v_readings WHERE device_id = ? AND time >= ?"
            " ORDER BY metric",
            (device_id, since),
        )
        return [str(r[0]) for r in rows]
