"""Every shipped scenario passes against a gateway on real mosquitto and PostgreSQL; a scenario
that is not met fails with exit code 1 and says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators.scenario import load_scenario
from simulators.scenario_run import RunOptions, format_report, run_scenario
from tests.harness.mosquitto import MosquittoServer
from tests.simulators.conftest import SCENARIOS, SPEED, Site, import_community

SHIPPED = sorted(SCENARIOS.glob("*.toml"))


def test_the_four_scenarios_of_issue_6_are_shipped() -> None:
    assert {p.stem for p in SHIPPED} >= {
        "fire_drill",
        "night_sos",
        "flooding_device",
        "power_cut",
    }


# Scenarios that wait for no policy timer play in real time (see their header).
REAL_TIME = {"flooding_device"}


@pytest.mark.parametrize("scenario", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_scenario_passes(pg_site: Site, scenario: Path) -> None:
    speed = 1.0 if scenario.stem in REAL_TIME else SPEED
    result = pg_site.play(scenario, speed=speed)
    print(result.stdout)  # the report, shown with pytest -rP
    report = f"{result.stdout}\n{result.stderr}\n--- gateway log ---\n{pg_site.gateway_log()}"
    assert result.returncode == 0, report
    assert "result / 结果: PASS" in result.stdout, report
    assert "FAIL" not in result.stdout, report
    assert "Traceback" not in result.stderr, report


def test_an_unmet_expectation_fails_with_a_readable_report(
    sqlite_site: Site, tmp_path: Path
) -> None:
    scenario = tmp_path / "wrong.toml"
    scenario.write_text(
        """
name = "expects what does not happen"
[[at]]
t = "0s"
id = "press"
action = "press"
device = "btn-1-1-101"
[[expect]]
alert = { kind = "smoke", device = "btn-1-1-101" }
after = "press"
within = "1s"
[[expect]]
alert = { priority = "P1", kind = "sos", device = "btn-1-1-101" }
after = "press"
within = "2s"
""",
        encoding="utf-8",
    )
    result = sqlite_site.play(scenario)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "FAIL 未通过 #1 alert smoke device btn-1-1-101" in out, out
    assert "0 of 1 seen" in out, out
    assert "other alerts meanwhile: P1 sos btn-1-1-101" in out, out
    assert "PASS 通过   #2" in out, out
    assert "1 of 2 expectations met" in out, out


def test_a_device_the_site_does_not_know_is_a_usage_error(
    sqlite_site: Site, tmp_path: Path
) -> None:
    scenario = tmp_path / "unknown.toml"
    scenario.write_text(
        '[[at]]\nt = "0s"\naction = "press"\ndevice = "btn-nowhere"\n'
        '[[expect]]\nalert = { kind = "sos" }\nwithin = "1s"\n',
        encoding="utf-8",
    )
    result = sqlite_site.play(scenario)
    assert result.returncode == 2
    assert "not in the gateway's registry: btn-nowhere" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_gateway_that_hears_nothing_is_reported_not_waited_for(
    mosquitto: MosquittoServer, sqlite_url: str
) -> None:
    """No gateway behind the broker: the run stops after the warm-up with the reason."""
    await import_community(sqlite_url)
    scenario = load_scenario(SCENARIOS / "fire_drill.toml")
    lines: list[str] = []
    report = await run_scenario(
        scenario,
        RunOptions(mqtt=mosquitto.url, db=sqlite_url, speed=10, warmup_timeout=1.0),
        echo=lines.append,
    )
    assert not report.passed
    assert report.outcomes == ()
    assert report.problem is not None
    assert report.problem.startswith("the gateway heard from 0 of 47 fleet devices in 1s")
    assert "could not run / 无法运行" in format_report(report)
