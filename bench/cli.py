"""``scgw bench``: the command. ``gateway/cli.py`` calls ``add_bench_command`` to plug it in;
the heavy imports happen when it runs, so ``scgw --help`` stays fast.

Output: the table (or ``--json``: one JSON object) on stdout, progress on stderr. Exit status
0 when every acknowledged message was stored once and every press was notified, 1 when not (or
when the bench could not run), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import time
from typing import Any
from urllib.parse import urlsplit

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
BACKENDS = ("postgres", "sqlite")


def _positive(kind: type[float] | type[int], name: str, *, most: float | None = None) -> Any:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"at most {most:g}, got {text!r}")
        return value

    return parse


def _mqtt_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"expected mqtt://HOST:PORT, got {text!r}")
    try:
        _ = parts.port
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}") from None
    if parts.username or parts.password:
        # the load generator speaks plain anonymous MQTT: a broker with logins needs one
        raise argparse.ArgumentTypeError("a broker with user/password is not supported")
    return text


def _db_url(text: str) -> str:
    if text.startswith("sqlite:///") and len(text) > len("sqlite:///"):
        return text
    if text.startswith(("postgresql://", "postgres://")):
        return text
    raise argparse.ArgumentTypeError(
        f"expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB, got {text!r}"
    )


def add_bench_command(sub: Any) -> None:
    """Add ``bench`` to the ``scgw`` sub-command parsers."""
    bench = sub.add_parser(
        "bench",
        help="benchmark: ingest rate, loss check, press → notification latency",
        description=(
            "Starts mosquitto (config/mosquitto.conf) and PostgreSQL unless --mqtt / --db "
            "are given, runs the gateway as its own process, and measures stored telemetry "
            "per second, loss (stored == sent) and press → first notification latency "
            "idle and under telemetry at 80 % of --rate. "
            "基准测试：入库速率、丢失检查、呼叫→通知延迟。"
        ),
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument(
        "--backend",
        choices=(*BACKENDS, "both"),
        default=None,
        help="database backend(s) to measure (default both; with --db, the URL's)",
    )
    bench.add_argument(
        "--duration",
        type=_positive(float, "--duration", most=24 * 3600),
        default=10.0,
        help="seconds of telemetry per load phase (default 10; longer for a soak run)",
    )
    bench.add_argument(
        "--rate",
        type=_positive(float, "--rate", most=1_000_000),
        default=15000.0,
        help="offered ingest rate, msg/s (default 15000, the SPEC target)",
    )
    bench.add_argument(
        "--presses",
        type=_positive(int, "--presses", most=100_000),
        default=200,
        help="SOS presses timed idle, and at most as many under load (default 200)",
    )
    bench.add_argument(
        "--devices",
        type=_positive(int, "--devices", most=100_000),
        default=1000,
        help="telemetry devices per load phase (default 1000)",
    )
    bench.add_argument(
        "--processes",
        type=_positive(int, "--processes", most=64),
        default=2,
        help="load generator processes (default 2)",
    )
    bench.add_argument("--mqtt", type=_mqtt_url, help="use this broker (mqtt://HOST:PORT)")
    bench.add_argument("--db", type=_db_url, help="use this database (one backend)")
    bench.set_defaults(func=cmd_bench, bench_parser=bench)


def _backends(args: argparse.Namespace) -> tuple[str, ...]:
    parser: argparse.ArgumentParser = args.bench_parser
    if args.db is not None:
        from_url = "sqlite" if args.db.startswith("sqlite:") else "postgres"
        if args.backend not in (None, from_url):
            parser.error(f"--backend {args.backend} does not match --db {args.db}")
        return (from_url,)
    if args.backend in (None, "both"):
        return BACKENDS
    return (str(args.backend),)


def cmd_bench(args: argparse.Namespace) -> int:
    from bench.report import BenchReport, format_table
    from bench.runner import LOADED_SHARE, BenchError, BenchOptions, run_backend

    parser: argparse.ArgumentParser = args.bench_parser
    backends = _backends(args)
    if args.devices < args.processes:
        parser.error(f"--devices {args.devices} is fewer than --processes {args.processes}")
    options = BenchOptions(
        backends=backends,
        duration=args.duration,
        rate=args.rate,
        presses=args.presses,
        devices=args.devices - args.devices % args.processes,  # the same count per process
        processes=args.processes,
        mqtt_url=args.mqtt,
        db_url=args.db,
    )

    def say(text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)

    async def main() -> list[Any]:
        return [await run_backend(b, options, say) for b in backends]

    # scgw's log level is the user's; the readiness polls' request lines are noise here
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("gateway.storage").setLevel(logging.WARNING)
    started = time.monotonic()
    try:
        results = asyncio.run(main())
    except BenchError as exc:
        print(f"scgw bench: {exc}", file=sys.stderr)
        return EXIT_FAILED
    settings = {
        "rate": options.rate,
        "loaded_rate": options.rate * LOADED_SHARE,
        "duration_s": options.duration,
        "presses": options.presses,
        "devices": options.devices,
        "load_processes": options.processes,
        "broker": options.mqtt_url or "own mosquitto, config/mosquitto.conf",
        "database": options.db_url or "own PostgreSQL (fsync on) / SQLite file",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    report = BenchReport(tuple(results), settings)
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        print(format_table(report))
    return EXIT_OK if report.ok else EXIT_FAILED
