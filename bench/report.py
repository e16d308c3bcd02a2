"""What ``scgw bench`` measured, as figures: percentiles, rates, the JSON object, the table.

Pure logic (no I/O), so it is unit-tested alone. Latencies are in milliseconds, rates in
messages per second, sizes in bytes.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) with linear interpolation between closest ranks (the
    common "type 7" definition: numpy's default, Excel's PERCENTILE.INC)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def steady_rate(samples: Sequence[tuple[float, int]], start: float, end: float) -> float | None:
    """Rows per second between the first sample at or after ``start`` and the last at or
    before ``end`` (samples are ``(seconds, stored rows)``); None with fewer than two."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    (t0, n0), (t1, n1) = inside[0], inside[-1]
    return (n1 - n0) / (t1 - t0)


@dataclass(frozen=True, slots=True)
class Latency:
    """Press → first notification, over ``n`` presses that were notified; ``missed`` presses
    got no notification within the deadline."""

    n: int
    missed: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, samples_ms: Sequence[float], missed: int = 0) -> Latency:
        if not samples_ms:
            return cls(0, missed, None, None, None, None)
        return cls(
            n=len(samples_ms),
            missed=missed,
            p50=percentile(samples_ms, 50),
            p95=percentile(samples_ms, 95),
            p99=percentile(samples_ms, 99),
            max=max(samples_ms),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "missed": self.missed,
            "p50": _round(self.p50, 2),
            "p95": _round(self.p95, 2),
            "p99": _round(self.p99, 2),
            "max": _round(self.max, 2),
        }


@dataclass(frozen=True, slots=True)
class Usage:
    """The gateway process over one phase: CPU (user + system seconds) per wall second —
    1.0 is one core busy — and its peak resident memory since it started."""

    cpu_seconds: float
    wall_seconds: float
    peak_rss_bytes: int

    @property
    def cpu_ratio(self) -> float:
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "cpu_seconds": round(self.cpu_seconds, 2),
            "wall_seconds": round(self.wall_seconds, 2),
            "cpu_per_wall": round(self.cpu_ratio, 3),
            "peak_rss_mb": round(self.peak_rss_bytes / 2**20, 1),
        }


@dataclass(frozen=True, slots=True)
class Telemetry:
    """One telemetry load: what the generator offered, what the broker acknowledged (``sent``)
    and what the database holds (``stored``: distinct readings; ``duplicates``: rows beyond
    those, which must be 0)."""

    offered_rate: float
    load_seconds: float
    published: int  # written to the broker
    sent: int  # PUBACKed by the broker: the devices' side of the no-loss promise
    stored: int
    duplicates: int
    seconds_to_store: float | None  # from the start of the load until every row was stored
    steady_rate: float | None  # stored rows per second while the load ran (warm-up excluded)
    generator_cpu_seconds: float

    @property
    def lost(self) -> int:
        return self.sent - self.stored

    @property
    def unacked(self) -> int:
        """Published but never PUBACKed by the broker."""
        return self.published - self.sent

    @property
    def overall_rate(self) -> float | None:
        if not self.seconds_to_store:
            return None
        return self.stored / self.seconds_to_store

    @property
    def sent_rate(self) -> float:
        return self.sent / self.load_seconds if self.load_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "offered_msgs_per_s": round(self.offered_rate),
            "sent_msgs_per_s": round(self.sent_rate),
            "load_seconds": round(self.load_seconds, 2),
            "published": self.published,
            "sent": self.sent,
            "stored": self.stored,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "broker_unacked": self.unacked,
            "stored_msgs_per_s": _round(self.steady_rate, 0),
            "overall_msgs_per_s": _round(self.overall_rate, 0),
            "seconds_until_all_stored": _round(self.seconds_to_store, 2),
            "generator_cpu_us_per_msg": (
                round(self.generator_cpu_seconds / self.published * 1e6, 1)
                if self.published
                else None
            ),
        }


@dataclass(frozen=True, slots=True)
class BackendResult:
    backend: str  # "postgres" | "sqlite"
    ingest: Telemetry
    ingest_usage: Usage
    idle: Latency
    loaded: Latency
    loaded_telemetry: Telemetry
    loaded_usage: Usage
    first_press_ms: float | None

    @property
    def sent(self) -> int:
        return self.ingest.sent + self.loaded_telemetry.sent

    @property
    def stored(self) -> int:
        return self.ingest.stored + self.loaded_telemetry.stored

    @property
    def lost(self) -> int:
        return self.sent - self.stored

    @property
    def problems(self) -> list[str]:
        """Why this run fails the bench's own checks (empty: it passed)."""
        out = []
        for name, t in (("ingest", self.ingest), ("under load", self.loaded_telemetry)):
            if t.lost:
                out.append(f"{self.backend} {name}: {t.lost} of {t.sent} messages not stored")
            if t.duplicates:
                out.append(f"{self.backend} {name}: {t.duplicates} duplicate rows")
            if t.unacked:
                out.append(f"{self.backend} {name}: broker did not ack {t.unacked} publishes")
        for name, lat in (("idle", self.idle), ("under load", self.loaded)):
            if lat.missed:
                out.append(f"{self.backend} {name}: {lat.missed} presses got no notification")
            if lat.n == 0:
                out.append(f"{self.backend} {name}: no press was measured")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "ingest_msgs_per_s": _round(self.ingest.steady_rate, 0),
            "sent": self.sent,
            "stored": self.stored,
            "lost": self.lost,
            "alert_latency_ms": self.loaded.as_dict(),
            "alert_latency_idle_ms": self.idle.as_dict(),
            "first_press_ms": _round(self.first_press_ms, 2),
            "ingest": self.ingest.as_dict(),
            "ingest_gateway": self.ingest_usage.as_dict(),
            "under_load": self.loaded_telemetry.as_dict(),
            "under_load_gateway": self.loaded_usage.as_dict(),
        }


@dataclass(frozen=True, slots=True)
class BenchReport:
    results: tuple[BackendResult, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def primary(self) -> BackendResult:
        """The figures the SPEC promises are for PostgreSQL; SQLite when it ran alone."""
        for r in self.results:
            if r.backend == "postgres":
                return r
        return self.results[0]

    @property
    def problems(self) -> list[str]:
        return [p for r in self.results for p in r.problems]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """One JSON object: the primary backend's headline figures at the top (``sent``,
        ``stored``, ``lost`` summed over every backend), each backend in full below."""
        p = self.primary
        return {
            "ingest_msgs_per_s": _round(p.ingest.steady_rate, 0),
            "sent": sum(r.sent for r in self.results),
            "stored": sum(r.stored for r in self.results),
            "lost": sum(r.lost for r in self.results),
            "alert_latency_ms": p.loaded.as_dict(),
            "backend": p.backend,
            "ok": self.ok,
            "problems": self.problems,
            "backends": {r.backend: r.as_dict() for r in self.results},
            "settings": self.settings,
        }


# --------------------------------------------------------------------------- table
def _round(value: float | None, digits: int) -> float | None:
    if value is None:
        return None
    return round(value, digits) if digits else float(round(value))


def display_width(text: str) -> int:
    """Terminal columns: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def _pad(text: str, width: int, *, right: bool = False) -> str:
    gap = " " * max(0, width - display_width(text))
    return gap + text if right else text + gap


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _peak_rss(r: BackendResult) -> int:
    return max(r.ingest_usage.peak_rss_bytes, r.loaded_usage.peak_rss_bytes)


def _ms(lat: Latency) -> str:
    if lat.n == 0:
        return "–"
    return f"{_num(lat.p50, 1)} / {_num(lat.p95, 1)} / {_num(lat.p99, 1)}"


def format_table(report: BenchReport) -> str:
    """The figures as a bilingual table, one column per backend."""
    results = report.results
    rows: list[tuple[str, list[str]]] = [
        ("ingest offered / 发送速率 (msg/s)", [_num(r.ingest.sent_rate) for r in results]),
        (
            "ingest stored, sustained / 持续入库 (msg/s)",
            [_num(r.ingest.steady_rate) for r in results],
        ),
        (
            "ingest incl. drain / 含排空入库 (msg/s)",
            [_num(r.ingest.overall_rate) for r in results],
        ),
        ("sent / 已发送", [_num(r.sent) for r in results]),
        ("stored / 已入库", [_num(r.stored) for r in results]),
        ("lost / 丢失", [_num(r.lost) for r in results]),
        (
            "gateway CPU, ingest / 网关CPU (core)",
            [_num(r.ingest_usage.cpu_ratio, 2) for r in results],
        ),
        (
            "gateway peak RSS / 网关内存峰值 (MB)",
            [_num(_peak_rss(r) / 2**20, 0) for r in results],
        ),
        ("press→notify idle p50/p95/p99 / 空闲时呼叫→通知 (ms)", [_ms(r.idle) for r in results]),
        (
            "press→notify under load p50/p95/p99 / 负载下呼叫→通知 (ms)",
            [_ms(r.loaded) for r in results],
        ),
        (
            "presses idle / load · 呼叫次数 空闲/负载",
            [f"{r.idle.n} / {r.loaded.n}" for r in results],
        ),
        (
            "telemetry during presses / 呼叫时遥测 (msg/s)",
            [_num(r.loaded_telemetry.sent_rate) for r in results],
        ),
        (
            "gateway CPU under load / 负载下网关CPU (core)",
            [_num(r.loaded_usage.cpu_ratio, 2) for r in results],
        ),
    ]
    header = ("", [r.backend for r in results])
    label_w = max(display_width(label) for label, _ in [header, *rows])
    col_w = [
        max(display_width(values[i]) for _, values in [header, *rows]) for i in range(len(results))
    ]
    lines = []
    for n, (label, values) in enumerate([header, *rows]):
        cells = [_pad(v, w, right=True) for v, w in zip(values, col_w, strict=True)]
        lines.append("  ".join([_pad(label, label_w), *cells]).rstrip())
        if n == 0:
            lines.append("-" * (label_w + sum(w + 2 for w in col_w)))
    verdict = (
        "OK: stored == sent, every press notified / 通过：全部入库，每次呼叫均已通知"
        if report.ok
        else "FAILED / 未通过:\n" + "\n".join(f"  {p}" for p in report.problems)
    )
    return "\n".join([*lines, "", verdict])
