"""Test scenarios for technicians: a TOML timeline of what happens on site, and what the
gateway must do about it, checked against the running gateway's database.

Format (see ``config/scenarios/*.toml`` for complete, commented examples)::

    name = "Fire drill / 消防演练"
    description = "Smoke in three flats of building 3."

    [fleet]                      # optional: devices that stay alive (status + heartbeats)
    building = "3"               # selector: device(s), building, unit, type(s), limit
    heartbeat = "10s"

    [[at]]                       # the timeline, in scenario time
    t = "0s"
    responders = "accept"        # accept | decline | none | mixed; answer_after = "5s..15s"

    [[at]]
    t = "5s"
    id = "fire"                  # expectations measure from a step by its id
    action = "smoke"             # an EVENT (sos, fall, smoke, gas, co, water_leak, cancel,
                                 # restore, …; "press" = sos), or offline / online / flood
    devices = ["smoke-3-1-101", "smoke-3-1-201"]     # or device = "…", or select = {…}

    [[expect]]
    alert = { priority = "P1", kind = "smoke", building = "3" }   # also device, resident, state
    count = 2                    # at least this many distinct alerts (default 1)
    after = "fire"               # a step id, or a scenario time such as "10s" (default: start)
    within = "2s"

    [[expect]]
    escalation = "role:duty"     # role:R, responder:ID, contacts, any — a `notify` entry on the
    alert = { kind = "sos" }     # timeline of a matching alert, to such a recipient
    after = "press"
    not_before = "50s"           # optional: and not earlier than this
    within = "70s"

    [[expect]]
    no_alert = { priority = "P1", building = "1" }    # nothing matching opens in the window
    after = "fire"
    within = "10s"

Time. ``--speed S`` divides every time in the file (``t``, ``within``, ``not_before``,
``answer_after``, the fleet heartbeat) so a gateway whose policy timers are divided by S too
(``scaled_gateway_config``) plays a 70 s escalation in 7 s. A ``within`` is never cut below
``min(within, floor)`` (``--floor``, default 2 s): the gateway's own processing does not get
faster with the speed-up, so "alert within 2 s" stays 2 s at any speed. A flood's ``rate`` and
``messages`` are physical properties of the faulty device and are never scaled.

A scenario assumes it is the only thing happening on the site: other presses (``scgw demo``'s
random fleet, real residents) can break a ``no_alert``, and real volunteers answering can stop
an escalation the scenario expects. Run it on a test site, or at a quiet hour with the
volunteers warned.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alerts.models import AlertState, Priority
from devices.durations import parse_duration
from devices.models import DeviceType, EventType
from simulators.fleet import DeviceSpec
from simulators.responders import MODES, Mode

DEFAULT_FLOOR = 2.0
DEFAULT_ANSWER_AFTER = (5.0, 15.0)
TARGETS_HELP = "role:R, responder:ID, contacts or any"


class ScenarioError(Exception):
    """A scenario that cannot be run, phrased for the technician: file, place, reason."""


# -- selecting devices --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Selector:
    devices: tuple[str, ...] = ()
    building: str | None = None
    unit: str | None = None
    types: tuple[DeviceType, ...] = ()
    limit: int | None = None

    def matches(self, spec: DeviceSpec) -> bool:
        return (
            (not self.devices or spec.device_id in self.devices)
            and (self.building is None or spec.building == self.building)
            and (self.unit is None or spec.unit == self.unit)
            and (not self.types or spec.type in self.types)
        )

    def pick(self, specs: Sequence[DeviceSpec]) -> list[DeviceSpec]:
        """Matching devices in registry order (named devices in the order named)."""
        if self.devices:
            by_id = {s.device_id: s for s in specs}
            picked = [by_id[d] for d in self.devices if d in by_id and self.matches(by_id[d])]
        else:
            picked = [s for s in specs if self.matches(s)]
        return picked if self.limit is None else picked[: self.limit]

    def describe(self) -> str:
        parts: list[str] = []
        if self.devices:
            shown = ", ".join(self.devices[:4]) + (" …" if len(self.devices) > 4 else "")
            parts.append(shown)
        if self.building is not None:
            parts.append(f"building {self.building}")
        if self.unit is not None:
            parts.append(f"unit {self.unit}")
        if self.types:
            parts.append("/".join(t.value for t in self.types))
        if self.limit is not None:
            parts.append(f"first {self.limit}")
        return " ".join(parts) or "all devices"


# -- the timeline -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EventStep:
    """Devices report an event (a press, smoke, a fall …) in their own format."""

    t: float
    id: str | None
    kind: EventType
    select: Selector


@dataclass(frozen=True, slots=True)
class PowerStep:
    """Devices lose power (``offline``: their will, the bridge's availability, or silence) or
    get it back (``online``)."""

    t: float
    id: str | None
    on: bool
    select: Selector


@dataclass(frozen=True, slots=True)
class FloodStep:
    """One device sends ``messages`` at ``rate`` per second, ``junk_share`` of them garbage."""

    t: float
    id: str | None
    device: str
    messages: int
    rate: float
    junk_share: float


@dataclass(frozen=True, slots=True)
class RespondersStep:
    """How the simulated volunteers answer from now on."""

    t: float
    id: str | None
    mode: Mode
    answer_after: tuple[float, float]


Step = EventStep | PowerStep | FloodStep | RespondersStep


# -- expectations -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AlertFilter:
    priority: Priority | None = None
    kind: str | None = None
    device: str | None = None
    building: str | None = None
    resident: str | None = None
    state: AlertState | None = None

    def describe(self) -> str:
        parts = [
            self.priority.value if self.priority else None,
            self.kind,
            f"device {self.device}" if self.device else None,
            f"in building {self.building}" if self.building else None,
            f"resident {self.resident}" if self.resident else None,
            f"({self.state.value})" if self.state else None,
        ]
        return " ".join(p for p in parts if p) or "any"


@dataclass(frozen=True, slots=True)
class AlertExpect:
    index: int
    filter: AlertFilter
    after: str | float  # a step id, or scenario seconds
    within: float
    count: int = 1


@dataclass(frozen=True, slots=True)
class NoAlertExpect:
    index: int
    filter: AlertFilter
    after: str | float
    within: float


@dataclass(frozen=True, slots=True)
class EscalationExpect:
    index: int
    target: str  # role:R, responder:ID, contacts, any
    filter: AlertFilter
    after: str | float
    within: float
    not_before: float | None = None


Expectation = AlertExpect | NoAlertExpect | EscalationExpect


@dataclass(frozen=True, slots=True)
class FleetPlan:
    select: Selector
    heartbeat: float = 10.0
    events: bool = False  # the fleet's own random presses would disturb the expectations


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    path: Path
    description: str = ""
    fleet: FleetPlan | None = None
    steps: tuple[Step, ...] = ()
    expects: tuple[Expectation, ...] = ()
    step_ids: frozenset[str] = field(default_factory=frozenset)

    def device_ids(self) -> set[str]:
        """Every device the file names explicitly (must exist in the registry)."""
        ids: set[str] = set()
        selectors = [s.select for s in self.steps if isinstance(s, EventStep | PowerStep)]
        if self.fleet is not None:
            selectors.append(self.fleet.select)
        for sel in selectors:
            ids.update(sel.devices)
        ids.update(s.device for s in self.steps if isinstance(s, FloodStep))
        return ids


@dataclass(frozen=True, slots=True)
class Timing:
    """Scenario time → wall time at ``speed``; see the module doc."""

    speed: float = 1.0
    floor: float = DEFAULT_FLOOR

    def at(self, seconds: float) -> float:
        return seconds / self.speed

    def within(self, seconds: float) -> float:
        return max(seconds / self.speed, min(seconds, self.floor))


# -- parsing ------------------------------------------------------------------------------------
class _Table:
    """A TOML table being read, for messages that say where: ``[[at]] #3: key t: …``."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ScenarioError(f"{where}: expected a table")
        self.data: Mapping[str, Any] = data
        self.where = where
        self.used: set[str] = set()

    def fail(self, key: str, why: str) -> ScenarioError:
        return ScenarioError(f"{self.where}: key {key}: {why}")

    def get(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def has(self, key: str) -> bool:
        return key in self.data

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # building = 3 means "3"
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected text, got {value!r}")
        return value

    def duration(self, key: str, default: float | None = None) -> float | None:
        value = self.get(key)
        if value is None:
            return default
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def number(self, key: str, default: float) -> float:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise self.fail(key, f"expected a number ≥ 0, got {value!r}")
        return float(value)

    def integer(self, key: str, default: int) -> int:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail(key, f"expected a whole number ≥ 1, got {value!r}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ScenarioError(f"{self.where}: unknown key {unknown[0]!r} (check the spelling)")


SELECTOR_KEYS = ("device", "devices", "building", "unit", "type", "types", "limit")


def _selector(table: _Table) -> Selector:
    devices: list[str] = []
    if (one := table.text("device")) is not None:
        devices.append(one)
    many = table.get("devices")
    if many is not None:
        if not isinstance(many, list) or not all(isinstance(d, str) and d for d in many):
            raise table.fail("devices", "expected a list of device ids")
        devices.extend(many)
    names: list[str] = []
    if (one_type := table.text("type")) is not None:
        names.append(one_type)
    types = table.get("types")
    if types is not None:
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise table.fail("types", "expected a list of device types")
        names.extend(types)
    kinds: list[DeviceType] = []
    for name in names:
        try:
            kinds.append(DeviceType(name))
        except ValueError:
            choices = ", ".join(t.value for t in DeviceType)
            raise table.fail("type", f"unknown device type {name!r}; one of {choices}") from None
    limit = table.integer("limit", 0) or None
    return Selector(tuple(devices), table.text("building"), table.text("unit"), tuple(kinds), limit)


def _step_selector(table: _Table) -> Selector:
    if table.has("select"):
        inner = _Table(table.get("select"), f"{table.where} select")
        selector = _selector(inner)
        inner.done()
        return selector
    selector = _selector(table)
    if selector == Selector():
        raise ScenarioError(f"{table.where}: name the devices (device, devices or select)")
    return selector


def _answer_after(table: _Table) -> tuple[float, float]:
    raw = table.get("answer_after")
    if raw is None:
        return DEFAULT_ANSWER_AFTER
    return parse_range(raw, where=f"{table.where}: key answer_after")


def parse_range(raw: object, *, where: str = "range") -> tuple[float, float]:
    """``"5s..20s"`` or ``"5s"`` → (low, high) seconds."""
    try:
        if isinstance(raw, str) and ".." in raw:
            low_text, high_text = raw.split("..", 1)
            low, high = parse_duration(low_text), parse_duration(high_text)
        else:
            low = high = parse_duration(raw)
    except ValueError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    if high < low:
        raise ScenarioError(f"{where}: {raw!r} ends before it starts")
    return low, high


def _step(table: _Table) -> Step:
    t = table.duration("t")
    if t is None:
        raise ScenarioError(f'{table.where}: key t: missing (when it happens, e.g. t = "10s")')
    step_id = table.text("id")
    if step_id is not None:
        _check_id(step_id, table)
    if table.has("responders"):
        text = table.text("responders")
        for mode in MODES:
            if mode == text:
                return RespondersStep(t, step_id, mode, _answer_after(table))
        raise table.fail("responders", f"expected one of {', '.join(MODES)}, got {text!r}")
    action = table.text("action")
    if action is None:
        raise ScenarioError(f"{table.where}: key action: missing (or responders = …)")
    if action in ("offline", "online"):
        return PowerStep(t, step_id, action == "online", _step_selector(table))
    if action == "flood":
        device = table.text("device")
        if device is None:
            raise table.fail("device", "missing: which device floods")
        rate = table.number("rate", 1000.0)
        if rate <= 0:
            raise table.fail("rate", "must be above 0")
        junk = table.number("junk_share", 0.3)
        if junk > 1:
            raise table.fail("junk_share", "a share between 0 and 1")
        return FloodStep(t, step_id, device, table.integer("messages", 5000), rate, junk)
    kind_name = "sos" if action == "press" else action
    try:
        kind = EventType(kind_name)
    except ValueError:
        events = ", ".join(e.value for e in EventType)
        raise table.fail(
            "action", f"unknown action {action!r}: press, {events}, offline, online or flood"
        ) from None
    return EventStep(t, step_id, kind, _step_selector(table))


def _check_id(step_id: str, table: _Table) -> None:
    try:
        parse_duration(step_id)
    except ValueError:
        return
    raise table.fail("id", f"{step_id!r} reads as a time; name steps with words")


def _filter(raw: object, where: str) -> AlertFilter:
    table = _Table(raw, where)
    priority = table.text("priority")
    state = table.text("state")
    try:
        result = AlertFilter(
            Priority(priority) if priority else None,
            table.text("kind"),
            table.text("device"),
            table.text("building"),
            table.text("resident"),
            AlertState(state) if state else None,
        )
    except ValueError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    table.done()
    return result


def _after(table: _Table, step_ids: set[str]) -> str | float:
    raw = table.get("after")
    if raw is None:
        return 0.0
    if isinstance(raw, str) and raw in step_ids:
        return raw
    try:
        return parse_duration(raw)
    except ValueError:
        known = ", ".join(sorted(step_ids)) or "none"
        raise table.fail(
            "after", f'{raw!r} is neither a step id (ids: {known}) nor a time such as "10s"'
        ) from None


def _expect(table: _Table, index: int, step_ids: set[str]) -> Expectation:
    after = _after(table, step_ids)
    within = table.duration("within")
    if within is None:
        raise table.fail("within", 'missing (how long to wait, e.g. within = "2s")')
    kinds = [k for k in ("alert", "no_alert", "escalation") if table.has(k)]
    if table.has("escalation"):
        target = table.text("escalation")
        assert target is not None
        if not (target in ("contacts", "any") or target.startswith(("role:", "responder:"))):
            raise table.fail("escalation", f"expected {TARGETS_HELP}, got {target!r}")
        raw_filter = table.get("alert")
        alert_filter = _filter(raw_filter or {}, f"{table.where} alert")
        not_before = table.duration("not_before")
        return EscalationExpect(index, target, alert_filter, after, within, not_before)
    if len(kinds) != 1:
        raise ScenarioError(f"{table.where}: say exactly one of alert, no_alert or escalation")
    if kinds == ["no_alert"]:
        return NoAlertExpect(index, _filter(table.get("no_alert"), table.where), after, within)
    alert_filter = _filter(table.get("alert"), f"{table.where} alert")
    return AlertExpect(index, alert_filter, after, within, table.integer("count", 1))


def _fleet(raw: object, where: str) -> FleetPlan:
    table = _Table(raw, where)
    selector = _selector(table)
    heartbeat = table.duration("heartbeat", 10.0)
    assert heartbeat is not None
    if heartbeat <= 0:
        raise table.fail("heartbeat", "must be above 0")
    events = table.get("events")
    if events is not None and not isinstance(events, bool):
        raise table.fail("events", "expected true or false")
    table.done()
    return FleetPlan(selector, heartbeat, bool(events))


def parse_scenario(data: Mapping[str, Any], path: Path) -> Scenario:
    top = _Table(data, path.name)
    name = top.text("name", path.stem) or path.stem
    description = top.text("description", "") or ""
    fleet = _fleet(top.get("fleet"), f"{path.name} [fleet]") if top.has("fleet") else None

    raw_steps = top.get("at") or []
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ScenarioError(f"{path.name}: no [[at]] steps: a scenario needs a timeline")
    steps: list[Step] = []
    for number, raw in enumerate(raw_steps, 1):
        table = _Table(raw, f"{path.name} [[at]] #{number}")
        steps.append(_step(table))
        table.done()
    ids = [s.id for s in steps if s.id is not None]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ScenarioError(f"{path.name}: step id {repeated[0]!r} is used twice")

    raw_expects = top.get("expect") or []
    if not isinstance(raw_expects, list) or not raw_expects:
        raise ScenarioError(f"{path.name}: no [[expect]]: a scenario must check something")
    expects: list[Expectation] = []
    for number, raw in enumerate(raw_expects, 1):
        table = _Table(raw, f"{path.name} [[expect]] #{number}")
        expects.append(_expect(table, number, set(ids)))
        table.done()
    top.done()
    steps.sort(key=lambda s: s.t)  # stable: same-time steps keep their order in the file
    return Scenario(name, path, description, fleet, tuple(steps), tuple(expects), frozenset(ids))


def load_scenario(path: Path) -> Scenario:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"{path}: file not found / 文件不存在") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not UTF-8 text") from None
    return parse_scenario(data, path)
