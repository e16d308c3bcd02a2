"""The fault matrix plugin: markers → a Markdown table, also when xdist workers run the tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fault_matrix import Row, render

REPO = Path(__file__).resolve().parents[2]

SAMPLE = """
import pytest

@pytest.mark.fault("Broker restarted", checks="exactly once")
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_restart(backend):
    assert backend != "postgres", "lost 3 readings"

@pytest.mark.fault("Disk full", checks="a pipe | in the text")
def test_disk():
    pass

@pytest.mark.fault("Known gap", checks="not yet")
@pytest.mark.xfail(reason="not built yet", strict=True)
def test_gap():
    assert False

@pytest.mark.fault("Setup breaks", checks="errors count")
def test_setup_error(broken):
    pass

@pytest.fixture
def broken():
    raise RuntimeError("no server")

def test_unmarked():
    pass
"""

CONFTEST = """
from tests import fault_matrix

def pytest_configure(config):
    fault_matrix.register(config)
"""


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    out = tmp_path / "matrix.md"
    env = {**os.environ, "SCGW_FAULT_MATRIX": str(out), "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args, str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result, out.read_text(encoding="utf-8") if out.exists() else ""


def _check(table: str) -> None:
    rows = [line for line in table.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) == 5, table  # the unmarked test is not in the matrix
    cells = [re.split(r"(?<!\\)\|", r) for r in rows]  # an escaped \| is not a border
    by_test = {
        (c[3].strip(" `").split("::")[1], c[4].strip()): r for c, r in zip(cells, rows, strict=True)
    }
    assert "✅ pass" in by_test[("test_restart", "sqlite")]
    assert "❌ FAIL: AssertionError: lost 3 readings" in by_test[("test_restart", "postgres")]
    assert "a pipe \\| in the text" in by_test[("test_disk", "")]
    assert "known gap (xfail): not built yet" in by_test[("test_gap", "")]
    assert "❌ ERROR" in by_test[("test_setup_error", "")]
    assert "RuntimeError: no server" in by_test[("test_setup_error", "")]
    assert "5 rows" in table


def test_matrix_without_xdist(tmp_path: Path) -> None:
    result, table = _run(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr  # two tests fail on purpose
    assert "fault matrix (5 rows) written to" in result.stdout
    _check(table)


def test_matrix_with_xdist_workers(tmp_path: Path) -> None:
    result, table = _run(tmp_path, "-n", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    _check(table)


def test_no_marked_test_writes_nothing(tmp_path: Path) -> None:
    result, table = _run(tmp_path, "-k", "unmarked")
    assert result.returncode == 0, result.stdout + result.stderr
    assert table == ""


def test_render_orders_by_fault_and_shows_durations() -> None:
    table = render(
        [
            Row("b fault", "checks b", "t::b", "", "passed", 1.25),
            Row("A fault", "checks a", "t::a", "pg", "skipped", 0.0, "no server"),
        ]
    )
    lines = table.splitlines()
    assert lines[2].startswith("| A fault |")
    assert "⏭ skipped: no server" in lines[2]
    assert lines[3].endswith("| ✅ pass | 1.2 s |")
