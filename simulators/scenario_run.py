"""Running a scenario: the fleet and the volunteers it needs, the timeline, the checks, and the
report (``scgw sim scenario FILE --mqtt URL --db URL``).

The runner plays the site: it takes the devices from the gateway's own registry (``--db``),
so a device publishes in the format the gateway expects (native or zigbee2mqtt), and it waits
until the gateway has heard from the fleet before the clock starts, so a slow start never
counts against an expectation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson

from alerts.config import AlertsSettings
from alerts.models import Priority
from gateway.storage.base import Store
from gateway.storage.factory import open_store
from simulators.fleet import (
    CONNECT_TIMEOUT,
    MISC_EVERY,
    DeviceSpec,
    Fleet,
    FleetOptions,
    LoopClient,
    now_iso,
)
from simulators.responders import AutoResponders, ResponderOptions
from simulators.scenario import (
    AlertExpect,
    EscalationExpect,
    EventStep,
    Expectation,
    FloodStep,
    NoAlertExpect,
    PowerStep,
    RespondersStep,
    Scenario,
    ScenarioError,
    Step,
    Timing,
)
from simulators.scenario_check import CLOCK_SLOP, Observer, Outcome, Reference, check

WARMUP_TIMEOUT = 30.0
RESPONDERS_READY = 10.0
FLOOD_INFLIGHT = 1000
FLOOD_DRAIN = 15.0
# Junk a broken device sends: malformed JSON, wrong types, binary noise, an oversize payload —
# on the event topic too, the lane every press goes through.
JUNK: tuple[tuple[str, bytes], ...] = (
    ("event", b'{"type": "sos", "ts": '),
    ("event", b'{"type": 42, "battery": "full"}'),
    ("telemetry", b"\xff\xfe\x00garbage\x01"),
    ("telemetry", b'{"metrics": "hot"}'),
    ("event", b"x" * 70_000),
)


@dataclass(frozen=True, slots=True)
class RunOptions:
    mqtt: str
    db: str
    speed: float = 1.0
    floor: float = 2.0
    prefix: str = "scgw"
    zigbee_prefix: str = "zigbee2mqtt"
    warmup_timeout: float = WARMUP_TIMEOUT

    @property
    def timing(self) -> Timing:
        return Timing(self.speed, self.floor)


@dataclass(frozen=True, slots=True)
class StepRecord:
    at: float  # seconds since the scenario clock started
    text: str


@dataclass(frozen=True, slots=True)
class Report:
    scenario: Scenario
    options: RunOptions
    timeline: tuple[StepRecord, ...]
    outcomes: tuple[Outcome, ...]
    problem: str | None  # the run could not be completed (nothing to do with expectations)
    seconds: float

    @property
    def passed(self) -> bool:
        return self.problem is None and all(o.passed for o in self.outcomes)


@dataclass
class _Run:
    """What one run shares between the timeline and the checks."""

    t0_wall: datetime
    t0_mono: float
    echo: Callable[[str], None]
    records: list[StepRecord] = field(default_factory=list)
    done: dict[str, asyncio.Event] = field(default_factory=dict)
    refs: dict[str, Reference] = field(default_factory=dict)

    def record(self, text: str) -> Reference:
        mono = time.monotonic()
        at = mono - self.t0_mono
        self.records.append(StepRecord(at, text))
        self.echo(f"  {at:+7.2f}s  {text}")
        return Reference(self.t0_wall + timedelta(seconds=at), mono)


# -- flooding ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FloodResult:
    sent: int
    acked: int
    junk: int
    seconds: float


async def flood(url: str, step: FloodStep, prefix: str = "scgw") -> FloodResult:
    """One device publishing as fast as ``step.rate`` allows, QoS 1 like a real uplink, with
    its own connection (a misbehaving device, not the fleet's shared one)."""
    client = LoopClient(
        url, f"scgw-sim-flood-{step.device}-{uuid.uuid4().hex[:6]}"[:64], inflight=FLOOD_INFLIGHT
    )
    client.connect()

    async def misc() -> None:
        while True:
            client.misc()
            await asyncio.sleep(MISC_EVERY)

    keeper = asyncio.create_task(misc())
    try:
        await asyncio.wait_for(client.connected.wait(), CONNECT_TIMEOUT)
        every = round(1 / step.junk_share) if step.junk_share > 0 else 0
        sent = junk = 0
        start = time.monotonic()
        while sent < step.messages:
            due = min(step.messages, int((time.monotonic() - start) * step.rate) + 1)
            while sent < due and client.outstanding < FLOOD_INFLIGHT:
                if every and sent % every == 0:
                    kind, payload = JUNK[junk % len(JUNK)]
                    junk += 1
                else:
                    kind = "telemetry"
                    payload = orjson.dumps(
                        {"ts": now_iso(), "seq": sent, "metrics": {"temperature": 22.0}}
                    )
                client.publish(f"{prefix}/{step.device}/{kind}", payload)
                sent += 1
            await asyncio.sleep(0.005)
        seconds = time.monotonic() - start
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.idle.wait(), FLOOD_DRAIN)
        return FloodResult(sent, client.acked, junk, seconds)
    finally:
        keeper.cancel()
        await client.disconnect()


# -- the run ----------------------------------------------------------------------------------
def _plan_devices(
    scenario: Scenario, registry: Sequence[DeviceSpec]
) -> tuple[list[DeviceSpec], list[DeviceSpec]]:
    """(devices that beat, devices only the steps use). Raises ScenarioError for names the
    registry does not know and for steps that select nothing."""
    known = {s.device_id for s in registry}
    unknown = sorted(scenario.device_ids() - known)
    if unknown:
        shown = ", ".join(unknown[:5])
        raise ScenarioError(
            f"{scenario.path.name}: not in the gateway's registry: {shown} "
            "(import the site's devices.csv first: scgw import FILE)"
        )
    beating = scenario.fleet.select.pick(registry) if scenario.fleet is not None else []
    if scenario.fleet is not None and not beating:
        raise ScenarioError(f"{scenario.path.name} [fleet]: selects no device of the registry")
    beating_ids = {s.device_id for s in beating}
    quiet: dict[str, DeviceSpec] = {}
    for number, step in enumerate(scenario.steps, 1):
        if isinstance(step, EventStep | PowerStep):
            picked = step.select.pick(registry)
            if not picked:
                raise ScenarioError(
                    f"{scenario.path.name}: step {step.id or number} "
                    f"({step.select.describe()}) selects no device of the registry"
                )
            quiet.update({s.device_id: s for s in picked if s.device_id not in beating_ids})
    return beating, list(quiet.values())


async def _wait_seen(
    observer: Observer, ids: list[str], since: datetime, patience: float
) -> str | None:
    deadline = time.monotonic() + patience
    seen = 0
    while time.monotonic() < deadline:
        seen = await observer.seen_online(ids, since)
        if seen >= len(ids):
            return None
        await asyncio.sleep(0.2)
    return (
        f"the gateway heard from {seen} of {len(ids)} fleet devices in {patience:.0f}s: is it "
        "connected to this broker and writing to this database?"
    )


class _Player:
    def __init__(
        self,
        scenario: Scenario,
        options: RunOptions,
        registry: list[DeviceSpec],
        fleet: Fleet | None,
        responders: AutoResponders | None,
        run: _Run,
    ) -> None:
        self.scenario = scenario
        self.options = options
        self.timing = options.timing
        self.registry = registry
        self.fleet = fleet
        self.responders = responders
        self.run = run
        self.background: set[asyncio.Task[None]] = set()

    async def timeline(self) -> None:
        for step in self.scenario.steps:
            await _sleep_to(self.run.t0_mono + self.timing.at(step.t))
            ref = self.run.record(self.do(step))
            if step.id is not None:
                self.run.refs[step.id] = ref
                self.run.done[step.id].set()
        if self.background:
            await asyncio.gather(*self.background)

    def do(self, step: Step) -> str:
        if isinstance(step, RespondersStep):
            low, high = (self.timing.at(s) for s in step.answer_after)
            assert self.responders is not None
            self.responders.set_mode(step.mode, (low, high))
            answer = "" if step.mode == "none" else f", answering after {low:g}–{high:g}s"
            return f"responders / 志愿者: {step.mode}{answer}"
        if isinstance(step, FloodStep):
            task = asyncio.create_task(self._flood(step))
            self.background.add(task)
            return (
                f"flood / 消息洪泛: {step.device} sends {step.messages} messages at "
                f"{step.rate:g}/s ({step.junk_share:.0%} junk)"
            )
        assert self.fleet is not None
        picked = [s.device_id for s in step.select.pick(self.registry)]
        shown = ", ".join(picked[:5]) + (f" … ({len(picked)} devices)" if len(picked) > 5 else "")
        if isinstance(step, PowerStep):
            if step.on:
                self.fleet.power_on(picked)
                return f"power back / 恢复供电: {shown}"
            devices = [self.fleet.devices[d] for d in picked]
            wills = sum(1 for d in devices if d.conn is not None)
            bridge = sum(1 for d in devices if d.spec.zigbee)
            self.fleet.power_off(picked)
            return (
                f"power cut / 断电: {shown} — {wills} wills, {bridge} via the zigbee bridge, "
                f"{len(devices) - wills - bridge} just silent"
            )
        unpowered = [d for d in picked if self.fleet.event(d, step.kind) is None]
        note = f" ({len(unpowered)} without power: nothing sent)" if unpowered else ""
        return f"{step.kind.value}: {shown}{note}"

    async def _flood(self, step: FloodStep) -> None:
        try:
            result = await flood(self.options.mqtt, step, self.options.prefix)
        except (OSError, TimeoutError) as exc:
            # The checks still run: they will show what the missing flood did not cause.
            self.run.record(f"flood failed: cannot reach the broker: {exc or 'no answer'}")
            return
        self.run.record(
            f"flood done: {result.sent} sent ({result.junk} junk), {result.acked} acked by the "
            f"broker, in {result.seconds:.1f}s"
        )

    async def check(self, observer: Observer, expect: Expectation) -> Outcome:
        after = expect.after
        if isinstance(after, str):
            await self.run.done[after].wait()
            ref = self.run.refs[after]
        else:
            offset = self.timing.at(after)
            await _sleep_to(self.run.t0_mono + offset)
            ref = Reference(self.run.t0_wall + timedelta(seconds=offset), self.run.t0_mono + offset)
        not_before = float("-inf")
        if isinstance(expect, EscalationExpect) and expect.not_before is not None:
            not_before = self.timing.at(expect.not_before)
        return await check(observer, expect, ref, self.timing.within(expect.within), not_before)


async def _sleep_to(mono: float) -> None:
    await asyncio.sleep(max(0.0, mono - time.monotonic()))


async def run_scenario(
    scenario: Scenario, options: RunOptions, *, echo: Callable[[str], None] = print
) -> Report:
    """Play the scenario against the gateway behind ``options`` and check it. Raises
    ScenarioError (the file does not fit this site), StoreError, OSError (broker)."""
    started = time.monotonic()
    store = open_store(options.db)
    await store.open()
    try:
        return await _run(scenario, options, store, echo, started)
    finally:
        await store.close()


async def _run(
    scenario: Scenario,
    options: RunOptions,
    store: Store,
    echo: Callable[[str], None],
    started: float,
) -> Report:
    timing = options.timing
    registry = [DeviceSpec.from_record(r) for r in await store.devices()]
    beating, quiet = _plan_devices(scenario, registry)
    observer = Observer(store)
    fleet: Fleet | None = None
    if beating or quiet:
        plan = scenario.fleet
        fleet = Fleet(
            options.mqtt,
            [*beating, *quiet],
            FleetOptions(
                heartbeat=timing.at(plan.heartbeat if plan else 10.0),
                events=plan.events if plan else False,
                prefix=options.prefix,
                zigbee_prefix=options.zigbee_prefix,
                client_prefix="scgw-scenario",
            ),
            quiet=[s.device_id for s in quiet],
        )
    responders: AutoResponders | None = None
    if any(isinstance(s, RespondersStep) for s in scenario.steps):
        responders = AutoResponders(
            ResponderOptions(url=options.mqtt, prefix=options.prefix, mode="none")
        )
    echo(f"scenario / 场景: {scenario.name}  ({scenario.path})")
    if options.speed != 1:
        echo(f"  speed ×{options.speed:g}: scenario times ÷ {options.speed:g}")
    tasks: list[asyncio.Task[None]] = []
    problem: str | None = None
    outcomes: list[Outcome] = []
    run = _Run(datetime.now(UTC), time.monotonic(), echo)
    try:
        if responders is not None:
            await responders.start()
            await asyncio.wait_for(responders.ready.wait(), RESPONDERS_READY)
        if fleet is not None:
            warm_since = datetime.now(UTC) - CLOCK_SLOP
            await fleet.start()
            tasks.append(asyncio.create_task(fleet.run(), name="fleet"))
            if beating:
                echo(f"  waiting for the gateway to hear from {len(beating)} fleet devices …")
                problem = await _wait_seen(
                    observer, [s.device_id for s in beating], warm_since, options.warmup_timeout
                )
        if problem is None:
            run = _Run(datetime.now(UTC), time.monotonic(), echo)
            run.done = {i: asyncio.Event() for i in scenario.step_ids}
            player = _Player(scenario, options, registry, fleet, responders, run)
            echo("timeline / 时间线")
            # One group: should the timeline fail, no check is left waiting for its steps.
            async with asyncio.TaskGroup() as group:
                group.create_task(player.timeline(), name="timeline")
                checks = [group.create_task(player.check(observer, e)) for e in scenario.expects]
            outcomes = [c.result() for c in checks]
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if fleet is not None:
            await fleet.stop()
        if responders is not None:
            await responders.stop()
    return Report(
        scenario,
        options,
        tuple(run.records),
        tuple(outcomes),
        problem,
        time.monotonic() - started,
    )


# -- the report -------------------------------------------------------------------------------
def describe(expect: Expectation, timing: Timing) -> str:
    def when(seconds: float, scaled: float) -> str:
        return f"{seconds:g}s" if abs(scaled - seconds) < 1e-9 else f"{seconds:g}s (→{scaled:g}s)"

    after = expect.after
    since = f'after "{after}"' if isinstance(after, str) else f"after t={after:g}s"
    within = when(expect.within, timing.within(expect.within))
    if isinstance(expect, AlertExpect):
        count = f" ×{expect.count}" if expect.count > 1 else ""
        return f"alert {expect.filter.describe()}{count} within {within} {since}"
    if isinstance(expect, NoAlertExpect):
        return f"no alert {expect.filter.describe()} for {within} {since}"
    assert isinstance(expect, EscalationExpect)
    scope = "" if expect.filter.describe() == "any" else f" ({expect.filter.describe()})"
    window = f"within {within}"
    if expect.not_before is not None:
        window = f"not before {when(expect.not_before, timing.at(expect.not_before))}, {window}"
    return f"escalation to {expect.target}{scope} {window} {since}"


def format_report(report: Report) -> str:
    timing = report.options.timing
    lines = ["", f"report / 报告: {report.scenario.name}"]
    lines.append("expectations / 预期")
    for outcome in report.outcomes:
        mark = "PASS 通过  " if outcome.passed else "FAIL 未通过"
        lines.append(f"  {mark} #{outcome.expect.index} {describe(outcome.expect, timing)}")
        lines.append(f"              {outcome.detail}")
    if report.problem is not None:
        lines.append(f"  could not run / 无法运行: {report.problem}")
    passed = sum(1 for o in report.outcomes if o.passed)
    verdict = "PASS 通过" if report.passed else "FAIL 未通过"
    lines.append(
        f"result / 结果: {verdict} — {passed} of {len(report.scenario.expects)} expectations met "
        f"in {report.seconds:.1f}s"
    )
    return "\n".join(lines)


# -- a gateway that plays at the same speed -----------------------------------------------------
def scaled_gateway_config(speed: float) -> str:
    """The ``[alerts]`` section of a gateway whose policy timers run ``speed`` times faster
    (the default policies' steps and timeouts, offline and cancel timers ÷ speed), for a test
    gateway that plays scenarios at ``--speed``. Thresholds and link lifetimes are unchanged."""
    defaults = AlertsSettings()

    def d(seconds: float) -> str:
        return f'"{seconds / speed:g}s"'

    lines = [
        f"# [alerts] of the default policy with every timer divided by {speed:g}: a test",
        f"# gateway for `scgw sim scenario FILE --speed {speed:g}`.",
        "[alerts]",
        f"cancel_grace = {d(defaults.cancel_grace)}",
        f"offline_check_every = {d(defaults.offline_check_every)}",
        f"welfare_after = {d(defaults.welfare_after)}",
        f"welfare_check_every = {d(defaults.welfare_check_every)}",
        "",
        "[alerts.offline_after]",
    ]
    lines += [f"{kind} = {d(seconds)}" for kind, seconds in defaults.offline_after.items()]
    for priority in Priority:
        policy = defaults.policies[priority]
        lines += ["", f"[alerts.policies.{priority.value}]"]
        lines.append(f"group_wait = {d(policy.group_wait)}")
        for step in policy.steps:
            targets = ", ".join(f'"{t}"' for t in step.targets)
            lines += [
                f"[[alerts.policies.{priority.value}.steps]]",
                f"targets = [{targets}]",
                f"ack_timeout = {d(step.ack_timeout)}",
            ]
    return "\n".join(lines) + "\n"
