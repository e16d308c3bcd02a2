"""The scenario format: what a technician writes, what a typo gets, how time is scaled."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from alerts.models import AlertState, Priority
from devices.models import DeviceType, EventType
from gateway.config import load_settings
from simulators.fleet import DeviceSpec
from simulators.scenario import (
    AlertExpect,
    EscalationExpect,
    EventStep,
    FloodStep,
    NoAlertExpect,
    PowerStep,
    RespondersStep,
    ScenarioError,
    Selector,
    Timing,
    load_scenario,
    parse_range,
    parse_scenario,
)
from simulators.scenario_run import describe, scaled_gateway_config
from tests.simulators.conftest import SCENARIOS

MINIMAL = """
[[at]]
t = "1s"
id = "press"
action = "press"
device = "btn-1"
[[expect]]
alert = { priority = "P1", kind = "sos" }
after = "press"
within = "2s"
"""


def parse(text: str) -> object:
    return parse_scenario(tomllib.loads(text), Path("test.toml"))


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_scenarios_parse(path: Path) -> None:
    scenario = load_scenario(path)
    assert "/" in scenario.name  # bilingual
    assert scenario.description
    assert scenario.expects


def test_a_full_scenario_reads_into_frozen_steps() -> None:
    scenario = parse_scenario(
        tomllib.loads(
            """
name = "x"
[fleet]
building = 3
heartbeat = "5s"
[[at]]
t = "10s"
id = "cut"
action = "offline"
select = { building = "2", types = ["sos_button", "pendant"], limit = 4 }
[[at]]
t = "0s"
responders = "decline"
answer_after = "1s..3s"
[[at]]
t = "2s"
action = "flood"
device = "th-1"
messages = 100
rate = 50
[[at]]
t = "3s"
action = "water_leak"
devices = ["w-1", "w-2"]
[[expect]]
escalation = "role:duty"
alert = { kind = "sos", state = "open" }
after = "cut"
not_before = "50s"
within = "70s"
[[expect]]
no_alert = { building = "1" }
after = "5s"
within = "10s"
[[expect]]
alert = { kind = "device_offline" }
count = 3
within = "1m"
"""
        ),
        Path("x.toml"),
    )
    assert [type(s) for s in scenario.steps] == [RespondersStep, FloodStep, EventStep, PowerStep]
    responders, flood, leak, cut = scenario.steps
    assert responders == RespondersStep(0.0, None, "decline", (1.0, 3.0))
    assert flood == FloodStep(2.0, None, "th-1", 100, 50.0, 0.3)
    assert isinstance(leak, EventStep)
    assert leak.kind is EventType.WATER_LEAK
    assert leak.select.devices == ("w-1", "w-2")
    assert cut == PowerStep(
        10.0,
        "cut",
        False,
        Selector((), "2", None, (DeviceType.SOS_BUTTON, DeviceType.PENDANT), 4),
    )
    escalation, quiet, offline = scenario.expects
    assert isinstance(escalation, EscalationExpect)
    assert escalation.filter.state is AlertState.OPEN
    assert (escalation.after, escalation.not_before, escalation.within) == ("cut", 50.0, 70.0)
    assert isinstance(quiet, NoAlertExpect)
    assert quiet.after == 5.0
    assert isinstance(offline, AlertExpect)
    assert (offline.after, offline.count, offline.within) == (0.0, 3, 60.0)
    assert scenario.fleet is not None
    assert scenario.fleet.select.building == "3"  # a number in the file is the building "3"
    assert scenario.device_ids() == {"w-1", "w-2", "th-1"}
    with pytest.raises(AttributeError):
        cut.t = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('within = "2s"', 'withn = "2s"'), "key within: missing"),
        (('action = "press"', 'action = "explode"'), "unknown action 'explode'"),
        (('after = "press"', 'after = "prses"'), "neither a step id (ids: press)"),
        (('priority = "P1"', 'priority = "P0"'), "'P0' is not a valid Priority"),
        (('id = "press"', 'id = "10s"'), "reads as a time"),
        (('device = "btn-1"', 'devise = "btn-1"'), "name the devices"),
        (('t = "1s"', 't = "soon"'), "key t: expected a duration"),
    ],
)
def test_mistakes_name_the_place_and_the_reason(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ScenarioError, match=r"test\.toml") as err:
        parse(MINIMAL.replace(*change))
    assert message in str(err.value)


def test_more_mistakes(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"\[\[at\]\] #1: unknown key 'colour'"):
        parse(MINIMAL.replace('t = "1s"', 't = "1s"\ncolour = "red"'))
    with pytest.raises(ScenarioError, match="no \\[\\[at\\]\\] steps"):
        parse('[[expect]]\nalert = {}\nwithin = "1s"\n')
    with pytest.raises(ScenarioError, match="no \\[\\[expect\\]\\]"):
        parse('[[at]]\nt = "0s"\nresponders = "none"\n')
    with pytest.raises(ScenarioError, match="responders: expected one of"):
        parse(MINIMAL.replace('action = "press"\ndevice = "btn-1"', 'responders = "maybe"'))
    with pytest.raises(ScenarioError, match="used twice"):
        parse(MINIMAL + '[[at]]\nt = "2s"\nid = "press"\naction = "sos"\ndevice = "b"\n')
    with pytest.raises(ScenarioError, match="exactly one of"):
        parse(MINIMAL.replace("alert = {", "no_alert = {}\nalert = {"))
    with pytest.raises(ScenarioError, match="escalation: expected role:R"):
        parse(MINIMAL.replace('alert = { priority = "P1", kind = "sos" }', 'escalation = "boss"'))
    with pytest.raises(ScenarioError, match="unknown device type 'lamp'"):
        parse(MINIMAL.replace('device = "btn-1"', 'select = { type = "lamp" }'))
    broken = tmp_path / "broken.toml"
    broken.write_text("t = ", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"broken\.toml: not valid TOML"):
        load_scenario(broken)
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(tmp_path / "missing.toml")
    with pytest.raises(ScenarioError, match="ends before it starts"):
        parse_range("5s..1s")


def test_speed_scales_times_but_never_cuts_a_deadline_below_the_floor() -> None:
    timing = Timing(speed=10, floor=2)
    assert timing.at(70) == 7
    assert timing.within(70) == 7  # a policy timer plays 10× faster
    assert timing.within(2) == 2  # processing latency does not speed up
    assert timing.within(5) == 2
    assert timing.within(1) == 1  # and a tight budget is never loosened
    assert Timing().within(70) == 70
    scenario = load_scenario(SCENARIOS / "night_sos.toml")
    text = describe(scenario.expects[2], timing)
    assert text == (
        "escalation to role:duty (sos device btn-2-1-301) not before 50s (→5s), "
        'within 70s (→7s) after "press"'
    )


def test_selectors_pick_from_the_registry_in_order() -> None:
    registry = [
        DeviceSpec("btn-2", DeviceType.SOS_BUTTON, building="2", unit="1"),
        DeviceSpec("smoke-2", DeviceType.SMOKE_DETECTOR, building="2", unit="2"),
        DeviceSpec("btn-1", DeviceType.SOS_BUTTON, building="1", unit="1"),
    ]

    def ids(selector: Selector) -> list[str]:
        return [s.device_id for s in selector.pick(registry)]

    assert ids(Selector(building="2")) == ["btn-2", "smoke-2"]
    assert ids(Selector(types=(DeviceType.SOS_BUTTON,), limit=1)) == ["btn-2"]
    assert ids(Selector(devices=("btn-1", "btn-2"))) == ["btn-1", "btn-2"]
    assert ids(Selector(devices=("btn-1", "btn-2"), building="2")) == ["btn-2"]
    assert ids(Selector(unit="2")) == ["smoke-2"]


def test_the_scaled_gateway_config_is_the_default_policy_divided(tmp_path: Path) -> None:
    config = tmp_path / "scgw.toml"
    config.write_text(
        '[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n' + scaled_gateway_config(10), encoding="utf-8"
    )
    alerts = load_settings(config).alerts
    default = load_settings(None).alerts
    for priority in Priority:
        fast, slow = alerts.steps_for(priority), default.steps_for(priority)
        assert [s.targets for s in fast] == [s.targets for s in slow]
        assert [s.ack_timeout * 10 for s in fast] == pytest.approx([s.ack_timeout for s in slow])
    assert alerts.offline_check_every * 10 == default.offline_check_every
    assert alerts.offline_timeout("sos_button") * 10 == default.offline_timeout("sos_button")
    assert alerts.thresholds == default.thresholds
