"""The bench's figures: percentiles, rates, the loss verdict, the JSON object and the table."""

from __future__ import annotations

import json

import pytest

from bench.report import (
    BackendResult,
    BenchReport,
    Latency,
    Telemetry,
    Usage,
    display_width,
    format_table,
    percentile,
    steady_rate,
)


# --------------------------------------------------------------------------- percentile
def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0


def test_percentile_ignores_input_order_and_handles_one_value() -> None:
    assert percentile([30.0, 10.0, 20.0], 50) == 20.0
    assert percentile([7.5], 99) == 7.5


def test_percentile_of_nothing_or_out_of_range_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1.0], 101)
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1.0], -1)


def test_latency_summary_is_ordered_and_counts_missed() -> None:
    samples = [5.0, 7.0, 9.0, 11.0, 250.0]
    lat = Latency.of(samples, missed=2)
    assert (lat.n, lat.missed, lat.max) == (5, 2, 250.0)
    assert lat.p50 is not None
    assert lat.p95 is not None
    assert lat.p99 is not None
    assert lat.p50 <= lat.p95 <= lat.p99 <= 250.0
    assert lat.as_dict()["p50"] == 9.0


def test_latency_without_samples_has_no_percentiles() -> None:
    lat = Latency.of([], missed=3)
    assert lat.as_dict() == {
        "n": 0,
        "missed": 3,
        "p50": None,
        "p95": None,
        "p99": None,
        "max": None,
    }


# --------------------------------------------------------------------------- rates
def test_steady_rate_is_the_slope_inside_the_window() -> None:
    samples = [(0.0, 0), (1.0, 500), (2.0, 2000), (3.0, 3500), (4.0, 5000), (6.0, 6000)]
    # warm-up (0..2 s) and the drain after the load (past 4 s) are left out
    assert steady_rate(samples, 2.0, 4.0) == pytest.approx(1500.0)


def test_steady_rate_needs_two_samples() -> None:
    assert steady_rate([(2.5, 100)], 2.0, 4.0) is None
    assert steady_rate([], 0.0, 1.0) is None


def test_usage_cpu_ratio() -> None:
    usage = Usage(cpu_seconds=3.0, wall_seconds=2.0, peak_rss_bytes=100 * 2**20)
    assert usage.cpu_ratio == 1.5
    assert usage.as_dict() == {
        "cpu_seconds": 3.0,
        "wall_seconds": 2.0,
        "cpu_per_wall": 1.5,
        "peak_rss_mb": 100.0,
    }
    assert Usage(1.0, 0.0, 0).cpu_ratio == 0.0


# --------------------------------------------------------------------------- verdicts
def _telemetry(sent: int = 1000, stored: int = 1000, *, published: int | None = None,
               duplicates: int = 0) -> Telemetry:  # fmt: skip
    return Telemetry(
        offered_rate=500.0,
        load_seconds=2.0,
        published=sent if published is None else published,
        sent=sent,
        stored=stored,
        duplicates=duplicates,
        seconds_to_store=2.5 if stored >= sent else None,
        steady_rate=480.0,
        generator_cpu_seconds=0.01,
    )


def _result(backend: str = "postgres", **changes: object) -> BackendResult:
    fields: dict[str, object] = {
        "backend": backend,
        "ingest": _telemetry(),
        "ingest_usage": Usage(1.0, 2.5, 80 * 2**20),
        "idle": Latency.of([3.0, 4.0, 5.0]),
        "loaded": Latency.of([6.0, 8.0, 30.0]),
        "loaded_telemetry": _telemetry(800, 800),
        "loaded_usage": Usage(0.8, 2.0, 90 * 2**20),
        "first_press_ms": 120.0,
    }
    fields.update(changes)
    return BackendResult(**fields)  # type: ignore[arg-type]


def test_a_clean_run_passes_and_sums_sent_and_stored() -> None:
    result = _result()
    assert (result.sent, result.stored, result.lost) == (1800, 1800, 0)
    assert result.problems == []


def test_loss_duplicates_unacked_and_missed_presses_are_problems() -> None:
    result = _result(
        ingest=_telemetry(1000, 990, published=1005),
        loaded_telemetry=_telemetry(800, 800, duplicates=4),
        loaded=Latency.of([5.0], missed=1),
        idle=Latency.of([]),
    )
    problems = "\n".join(result.problems)
    assert result.lost == 10
    assert "ingest: 10 of 1000 messages not stored" in problems
    assert "broker did not ack 5 publishes" in problems
    assert "4 duplicate rows" in problems
    assert "under load: 1 presses got no notification" in problems
    assert "idle: no press was measured" in problems


def test_json_has_the_spec_keys_with_postgres_as_headline() -> None:
    report = BenchReport(
        (_result("sqlite", ingest=_telemetry(1000, 999)), _result("postgres")),
        {"rate": 500.0},
    )
    data = json.loads(json.dumps(report.as_dict()))
    for key in ("ingest_msgs_per_s", "sent", "stored", "lost", "alert_latency_ms"):
        assert key in data
    assert set(data["alert_latency_ms"]) >= {"p50", "p95", "p99"}
    assert data["backend"] == "postgres"
    assert data["alert_latency_ms"]["p99"] == report.primary.loaded.as_dict()["p99"]
    # loss anywhere shows at the top and fails the run
    assert (data["sent"], data["stored"], data["lost"]) == (3600, 3599, 1)
    assert data["ok"] is False
    assert set(data["backends"]) == {"sqlite", "postgres"}
    assert data["backends"]["sqlite"]["lost"] == 1
    assert data["settings"] == {"rate": 500.0}


def test_sqlite_alone_is_the_headline() -> None:
    report = BenchReport((_result("sqlite"),))
    assert report.as_dict()["backend"] == "sqlite"
    assert report.ok


# --------------------------------------------------------------------------- table
def test_display_width_counts_cjk_as_two_columns() -> None:
    assert display_width("abc") == 3
    assert display_width("入库") == 4
    assert display_width("p50 / 延迟") == 10


def test_table_is_aligned_bilingual_and_states_the_verdict() -> None:
    table = format_table(BenchReport((_result("postgres"), _result("sqlite"))))
    lines = table.splitlines()
    assert lines[0].split() == ["postgres", "sqlite"]
    rows = [line for line in lines[2:] if line and not line.startswith(("OK", "FAILED"))]
    widths = {display_width(line) for line in rows}
    assert len(widths) == 1, "every row ends in the same column"
    assert any("stored / 已入库" in line and "1,800" in line for line in lines)
    assert any("lost / 丢失" in line for line in lines)
    assert any(line.startswith("press→notify under load") and "8.0 / " in line for line in lines)
    assert lines[-1].startswith("OK: stored == sent")


def test_table_lists_the_problems_when_the_run_failed() -> None:
    table = format_table(BenchReport((_result(ingest=_telemetry(1000, 900)),)))
    assert "FAILED / 未通过" in table
    assert "postgres ingest: 100 of 1000 messages not stored" in table
