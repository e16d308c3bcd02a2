"""The reliability fault matrix: which faults the suite injects, what it checks, and the result.

Mark a test with the fault it injects and what it checks::

    @pytest.mark.fault("PostgreSQL stopped 5 s", checks="no event lost; /readyz 503 then 200")
    async def test_...

Each marked test's outcome (passed / failed / skipped / xfail, duration, parameter such as the
backend) is collected and, at the end of the session, written as a Markdown table to
``$SCGW_FAULT_MATRIX`` (default ``test-artifacts/fault-matrix.md``) — only when at least one
marked test ran, so an unrelated run leaves the last matrix alone.

With pytest-xdist the tests run in workers; the marker's text travels in
``report.user_properties`` and the controller, which receives every worker's reports through
``pytest_runtest_logreport``, builds the table. Workers never write.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

ENV = "SCGW_FAULT_MATRIX"
DEFAULT_PATH = Path("test-artifacts") / "fault-matrix.md"
PROPERTY = "scgw_fault"
MARKER = "fault(name, checks=...): the fault a test injects and what it checks (fault matrix)"


@dataclass(slots=True)
class Row:
    """One test (one parametrisation) in the matrix."""

    fault: str
    checks: str
    test: str
    param: str
    outcome: str = "not run"
    duration: float = 0.0
    detail: str = ""


@dataclass(eq=False)  # hashable: pluggy keeps plugins in sets
class FaultMatrix:
    rows: dict[str, Row] = field(default_factory=dict)

    # -- worker side (or the only process without xdist) ----------------------------------
    @pytest.hookimpl
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            marker = item.get_closest_marker("fault")
            if marker is None:
                continue
            name = str(marker.args[0]) if marker.args else str(marker.kwargs.get("name", ""))
            if not name:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.fault needs the fault name")
            checks = str(marker.kwargs.get("checks", ""))
            callspec = getattr(item, "callspec", None)
            param = str(callspec.id) if callspec is not None else ""
            # user_properties travel with every report, also from xdist workers.
            info = {"fault": name, "checks": checks, "param": param}
            item.user_properties.append((PROPERTY, info))

    # -- controller side --------------------------------------------------------------------
    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        info = next((v for k, v in report.user_properties if k == PROPERTY), None)
        if not isinstance(info, dict):
            return
        row = self.rows.get(report.nodeid)
        if row is None:
            test = report.nodeid.split("[", 1)[0]
            row = Row(str(info["fault"]), str(info["checks"]), test, str(info["param"]))
            self.rows[report.nodeid] = row
        row.duration += report.duration
        outcome = _outcome(report)
        if outcome is None:
            return
        # The worst phase wins: a passing call with a failing teardown is an error.
        if _RANK[outcome] >= _RANK.get(row.outcome, 0):
            row.outcome = outcome
            if outcome in ("failed", "error", "xfail", "skipped"):
                row.detail = _short(report)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(session.config, "workerinput") or not self.rows:
            return
        path = Path(os.environ.get(ENV) or session.config.rootpath / DEFAULT_PATH)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(list(self.rows.values())), encoding="utf-8")
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"fault matrix ({len(self.rows)} rows) written to {path}")


_RANK = {"not run": 0, "passed": 1, "skipped": 2, "xpass": 2, "xfail": 3, "failed": 4, "error": 5}


def _outcome(report: pytest.TestReport) -> str | None:
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if xfail:
            return "xpass" if report.passed else "xfail"
        return report.outcome
    if report.failed:
        return "error"
    if report.skipped:
        return "xfail" if xfail else "skipped"
    return None  # a passing setup or teardown says nothing yet


def _short(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return str(report.wasxfail)
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])
    crash = getattr(report.longrepr, "reprcrash", None)  # also rebuilt from an xdist worker
    message = str(getattr(crash, "message", "") or "").strip()
    if message:
        return message.splitlines()[0]
    text = report.longreprtext.strip().splitlines()
    errors = [line for line in text if line.startswith("E ")]
    last = errors[-1] if errors else (text[-1] if text else "")
    return last.removeprefix("E").strip()


_SHOWN = {
    "passed": "✅ pass",
    "failed": "❌ FAIL",
    "error": "❌ ERROR",
    "skipped": "⏭ skipped",
    "xfail": "⚠️ known gap (xfail)",
    "xpass": "❓ xpass",
    "not run": "— not run",
}


def _cell(text: str, limit: int = 160) -> str:
    one_line = " ".join(text.split()).replace("|", "\\|")
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def render(rows: list[Row]) -> str:
    """The matrix as Markdown: one row per test and parameter, grouped by fault."""
    rows = sorted(rows, key=lambda r: (r.fault.lower(), r.test, r.param))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.outcome] = counts.get(row.outcome, 0) + 1
    summary = ", ".join(f"{n} {_SHOWN.get(k, k)}" for k, n in sorted(counts.items()))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "| fault / 故障 | what is checked / 检查内容 | test | param | result / 结果 | time |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        result = _SHOWN.get(row.outcome, row.outcome)
        if row.detail and row.outcome != "passed":
            result += f": {_cell(row.detail, 120)}"
        lines.append(
            f"| {_cell(row.fault)} | {_cell(row.checks, 300)} | `{row.test}` | {row.param} "
            f"| {result} | {row.duration:.1f} s |"
        )
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    footer = f"\n_{len(rows)} rows: {summary}. Generated {stamp}, Python {python}._\n"
    return "\n".join(lines) + "\n" + footer


def register(config: pytest.Config) -> None:
    """Called from tests/conftest.py's ``pytest_configure``: one plugin per process."""
    config.addinivalue_line("markers", MARKER)
    if not config.pluginmanager.has_plugin("scgw-fault-matrix"):
        config.pluginmanager.register(FaultMatrix(), "scgw-fault-matrix")
