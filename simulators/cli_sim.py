"""``scgw sim fleet | responders | scenario``: the simulators technicians run against a site.

``gateway/cli.py`` calls ``add_sim_commands`` to plug these in; everything heavy is imported
inside the command functions so ``scgw --help`` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulators.fleet import DeviceSpec, Fleet

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
STATUS_EVERY = 10.0  # seconds between plain status lines when the output is not a terminal


def _duration(text: str) -> float:
    from devices.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _delay_range(text: str) -> tuple[float, float]:
    from simulators.scenario import ScenarioError, parse_range

    try:
        return parse_range(text, where=text)
    except ScenarioError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a share between 0 and 1, got {text!r}"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text!r}")
    return value


def _until_signal(
    main: Callable[[asyncio.Event], Coroutine[Any, Any, int]],
) -> int:
    """Run ``main(stop)``; SIGINT/SIGTERM set ``stop`` so it can shut down in order."""

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await main(stop)

    return asyncio.run(runner())


async def _race(work: Coroutine[Any, Any, int], stop: asyncio.Event) -> int | None:
    """``work``'s result, or None when ``stop`` came first (``work`` is then cancelled and has
    run its cleanup)."""
    task = asyncio.create_task(work)
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        stopper.cancel()
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


# -- scgw sim fleet --------------------------------------------------------------------------
async def _registry_devices(db: str) -> list[DeviceSpec]:
    from gateway.storage.factory import open_store
    from simulators.fleet import DeviceSpec

    store = open_store(db)
    await store.open()
    try:
        return [DeviceSpec.from_record(r) for r in await store.devices()]
    finally:
        await store.close()


def _status_text(fleet: Fleet, rate: float) -> str:
    """The live line: short enough for an 80-column terminal."""
    s = fleet.stats()
    off = f", {s.devices - s.powered} off" if s.powered < s.devices else ""
    return (
        f"{s.devices} dev ({s.own_connections} wills, {s.zigbee} zb{off}) · "
        f"conn {s.connected}/{s.own_connections + 1} · sent {s.sent} ack {s.acked} · "
        f"{rate:.0f}/s · ev {s.events}"
    )


def _summary_text(fleet: Fleet) -> str:
    s = fleet.stats()
    return (
        f"fleet / 设备: {s.devices} devices ({s.own_connections} own connections with a will, "
        f"{s.zigbee} zigbee2mqtt) · sent {s.sent} · acked {s.acked} · events {s.events}"
    )


async def _show_status(fleet: Fleet) -> None:
    """One live status line on a terminal (rich), a plain line every 10 s otherwise."""
    import time

    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = Console(stderr=True)
    last_sent, last_at = 0, time.monotonic()
    rate = 0.0

    def sample() -> str:
        nonlocal last_sent, last_at, rate
        now, sent = time.monotonic(), fleet.stats().sent
        if now - last_at >= 0.5:  # a rate over a blink of time means nothing
            rate = (sent - last_sent) / (now - last_at)
            last_sent, last_at = sent, now
        return _status_text(fleet, rate)

    if not console.is_terminal:
        while True:
            await asyncio.sleep(STATUS_EVERY)
            print(sample(), flush=True)

    def line() -> Text:
        return Text(sample(), no_wrap=True, overflow="ellipsis")

    with Live(line(), console=console, refresh_per_second=2, transient=True) as live:
        while True:
            await asyncio.sleep(1.0)
            live.update(line())


def cmd_sim_fleet(args: argparse.Namespace) -> int:
    from devices.models import DeviceType
    from simulators.fleet import (
        DEFAULT_WILLS,
        Fleet,
        FleetOptions,
        devices_csv,
        synthetic_devices,
    )

    wills = {
        "buttons": DEFAULT_WILLS,
        "all": frozenset(DeviceType),
        "none": frozenset(),
    }[args.wills]

    async def main(stop: asyncio.Event) -> int:
        if args.db:
            specs = await _registry_devices(args.db)
            if not specs:
                print(f"no devices in the registry at {args.db}", file=sys.stderr)
                return EXIT_FAILED
        else:
            specs = synthetic_devices(
                args.devices, zigbee_share=args.zigbee_share, id_prefix=args.id_prefix
            )
        if args.write_csv:
            sheet = devices_csv(specs)
            await asyncio.to_thread(Path(args.write_csv).write_text, sheet, encoding="utf-8")
            print(f"wrote {len(specs)} devices to {args.write_csv}: scgw import {args.write_csv}")
        options = FleetOptions(
            heartbeat=args.heartbeat,
            events=not args.no_events,
            prefix=args.prefix,
            zigbee_prefix=args.zigbee_prefix,
            wills=wills,
            max_wills=args.max_wills,
        )
        fleet = Fleet(args.mqtt, specs, options)
        if args.duration is not None:
            asyncio.get_running_loop().call_later(args.duration, stop.set)
        status: asyncio.Task[None] | None = None
        try:
            await fleet.start()
            status = asyncio.create_task(_show_status(fleet))
            await _race(_forever(fleet), stop)
        finally:
            if status is not None:
                status.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await status
            await fleet.stop()
        print(_summary_text(fleet))
        return EXIT_OK

    try:
        return _until_signal(main)
    except (OSError, TimeoutError) as exc:
        print(f"cannot reach the broker {args.mqtt}: {exc or 'no answer'}", file=sys.stderr)
        return EXIT_FAILED


async def _forever(fleet: Fleet) -> int:
    await fleet.run()
    return EXIT_OK


# -- scgw sim responders ---------------------------------------------------------------------
def cmd_sim_responders(args: argparse.Namespace) -> int:
    from simulators.responders import AutoResponders, ResponderOptions

    low, high = args.accept_after
    options = ResponderOptions(
        url=args.mqtt,
        prefix=args.prefix,
        min_delay=low,
        max_delay=high,
        decline_share=args.decline_share,
        mode="none" if args.none else "mixed",
        via=args.via,
    )

    async def main(stop: asyncio.Event) -> int:
        volunteers = AutoResponders(options)
        await volunteers.start()
        try:
            try:
                await asyncio.wait_for(volunteers.ready.wait(), 10.0)
            except TimeoutError:
                print(f"cannot reach the broker {args.mqtt}", file=sys.stderr)
                return EXIT_FAILED
            answer = (
                "nobody answers / 无人应答"
                if args.none
                else f"answering after {low:g}–{high:g}s, {args.decline_share:.0%} decline, "
                f"via {args.via}"
            )
            print(f"volunteers listening on {args.prefix}/responders/+/alerts: {answer}")
            if args.duration is not None:
                asyncio.get_running_loop().call_later(args.duration, stop.set)
            await stop.wait()
        finally:
            await volunteers.stop()
        actions = ", ".join(f"{k} {v}" for k, v in sorted(volunteers.actions.items())) or "none"
        print(f"alerts received {volunteers.received}; answered {volunteers.answered} ({actions})")
        return EXIT_OK

    return _until_signal(main)


# -- scgw sim scenario -----------------------------------------------------------------------
def cmd_sim_scenario(args: argparse.Namespace) -> int:
    from gateway.storage.base import StoreError
    from simulators.scenario import ScenarioError, load_scenario
    from simulators.scenario_run import (
        RunOptions,
        format_report,
        run_scenario,
        scaled_gateway_config,
    )

    if args.speed <= 0:
        print("--speed must be above 0", file=sys.stderr)
        return EXIT_USAGE
    if args.gateway_config:
        print(scaled_gateway_config(args.speed), end="")
        return EXIT_OK
    if args.file is None or args.db is None:
        print("scgw sim scenario: FILE and --db URL are required", file=sys.stderr)
        return EXIT_USAGE
    try:
        scenario = load_scenario(Path(args.file))
    except ScenarioError as exc:
        print(f"scgw sim scenario: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # Each simulated answer is logged at INFO; the timeline and the report say enough.
        logging.getLogger("simulators.responders").setLevel(logging.WARNING)
    options = RunOptions(
        mqtt=args.mqtt,
        db=args.db,
        speed=args.speed,
        floor=args.floor,
        prefix=args.prefix,
        zigbee_prefix=args.zigbee_prefix,
    )

    async def play() -> int:
        report = await run_scenario(scenario, options, echo=lambda line: print(line, flush=True))
        print(format_report(report), flush=True)
        return EXIT_OK if report.passed else EXIT_FAILED

    async def main(stop: asyncio.Event) -> int:
        result = await _race(play(), stop)
        if result is None:
            print("interrupted / 已中断: the scenario did not finish", file=sys.stderr)
            return EXIT_INTERRUPTED
        return result

    try:
        return _until_signal(main)
    except ScenarioError as exc:
        print(f"scgw sim scenario: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError:
        raise  # gateway/cli.py says "database not reachable"
    except (OSError, TimeoutError) as exc:
        print(f"scgw sim scenario: cannot reach the broker {args.mqtt}: {exc}", file=sys.stderr)
        return EXIT_FAILED


# -- the parsers -----------------------------------------------------------------------------
def add_sim_commands(sim_sub: Any) -> None:
    """Add ``fleet``, ``responders`` and ``scenario`` to ``scgw sim``'s sub-parsers."""
    fleet = sim_sub.add_parser(
        "fleet", help="simulated devices: heartbeats, status + wills, telemetry, events"
    )
    fleet.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    source = fleet.add_mutually_exclusive_group()
    source.add_argument("--devices", type=int, default=100, help="synthetic devices (default 100)")
    source.add_argument("--db", help="take the devices from this registry (database URL)")
    fleet.add_argument(
        "--zigbee-share",
        type=_share,
        default=0.2,
        help="share of synthetic Zigbee-capable devices published as zigbee2mqtt (default 0.2)",
    )
    fleet.add_argument("--heartbeat", type=_duration, default=10.0, help="default 10s")
    fleet.add_argument(
        "--wills",
        choices=("buttons", "all", "none"),
        default="buttons",
        help="which native devices get their own connection with a will (default: SOS "
        "buttons and pendants; the rest share one connection)",
    )
    fleet.add_argument("--max-wills", type=int, default=1000, help="cap on own connections")
    fleet.add_argument("--no-events", action="store_true", help="no random presses / activity")
    fleet.add_argument("--write-csv", metavar="FILE", help="write the synthetic devices sheet")
    fleet.add_argument("--id-prefix", default="sim", help="synthetic ids are ID_PREFIX-TYPE-N")
    fleet.add_argument("--duration", type=_duration, help="stop after this long")
    fleet.add_argument("--prefix", default="scgw")
    fleet.add_argument("--zigbee-prefix", default="zigbee2mqtt")
    fleet.set_defaults(func=cmd_sim_fleet)

    resp = sim_sub.add_parser("responders", help="auto-answering volunteers (accept / decline)")
    resp.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    resp.add_argument(
        "--accept-after",
        type=_delay_range,
        default=(5.0, 20.0),
        metavar="MIN..MAX",
        help="answer after a random delay in this range (default 5s..20s)",
    )
    resp.add_argument("--decline-share", type=_share, default=0.2, help="default 0.2")
    resp.add_argument("--none", action="store_true", help="receive alerts, never answer")
    resp.add_argument(
        "--via",
        choices=("mqtt", "link"),
        default="mqtt",
        help="answer on the app's reply topic, or by POSTing the one-tap link",
    )
    resp.add_argument("--duration", type=_duration, help="stop after this long")
    resp.add_argument("--prefix", default="scgw")
    resp.set_defaults(func=cmd_sim_responders)

    scen = sim_sub.add_parser(
        "scenario", help="play a TOML timeline and check the gateway's reaction (exit 0/1)"
    )
    scen.add_argument("file", nargs="?", help="scenario file (config/scenarios/*.toml)")
    scen.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    scen.add_argument("--db", help="the gateway's database URL (read to check expectations)")
    scen.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="divide scenario times by this (the gateway's timers must match: see "
        "--gateway-config)",
    )
    scen.add_argument(
        "--floor",
        type=_duration,
        default=2.0,
        help="a 'within' is never cut below min(within, FLOOR) by --speed (default 2s)",
    )
    scen.add_argument(
        "--gateway-config",
        action="store_true",
        help="print the [alerts] timers of a gateway that runs at --speed, and exit",
    )
    scen.add_argument("--prefix", default="scgw")
    scen.add_argument("--zigbee-prefix", default="zigbee2mqtt")
    scen.set_defaults(func=cmd_sim_scenario)
