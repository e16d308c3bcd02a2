"""The ``scgw`` command line. Each sub-command is a thin shell over a library function; every
expected failure (bad config, unreachable service, bad file) ends with one clear line and a
non-zero exit code, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.config import ConfigError, Settings, load_settings
from gateway.storage.base import StoreError

if TYPE_CHECKING:
    from gateway.runtime import Gateway

log = logging.getLogger("scgw")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "db", None):
        overrides["database"] = {"url": args.db}
    config = getattr(args, "config", None)
    return load_settings(Path(config) if config else None, **overrides)


def _run_until_signal(main: Callable[[asyncio.Event], Coroutine[Any, Any, int]]) -> int:
    """Run ``main(stop)``; SIGINT/SIGTERM set ``stop`` so it can shut down in order."""

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await main(stop)

    return asyncio.run(runner())


# -- scgw run ------------------------------------------------------------------------------
async def _calm_once_started(gateway: Gateway) -> None:
    from gateway.runtime import calm_garbage_collector

    await gateway.started.wait()
    calm_garbage_collector()


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.runtime import Gateway

    settings = _settings(args)
    gateway = Gateway(settings)

    async def main(stop: asyncio.Event) -> int:
        runner = asyncio.create_task(gateway.run())
        stopper = asyncio.create_task(stop.wait())
        # The process is the gateway's alone here (not so in tests or the demo's helpers).
        calm = asyncio.create_task(_calm_once_started(gateway))
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            log.info("stopping (signal)")
            gateway.request_stop()
        else:
            stopper.cancel()
        await runner
        calm.cancel()
        return EXIT_OK

    return _run_until_signal(main)


# -- scgw db migrate -------------------------------------------------------------------------
def cmd_db_migrate(args: argparse.Namespace) -> int:
    from gateway.storage.factory import open_store

    settings = _settings(args)

    async def main() -> int:
        store = open_store(settings.database.url)
        await store.open()  # open() migrates
        try:
            version = await store.migrate()
        finally:
            await store.close()
        print(f"schema at version {version} ({store.backend})")
        return EXIT_OK

    return asyncio.run(main())


# -- scgw import -------------------------------------------------------------------------------
def cmd_import(args: argparse.Namespace) -> int:
    from devices.csv_import import CsvImportError, format_report, import_csv
    from gateway.storage.factory import open_store

    settings = _settings(args)
    path = Path(args.file)
    if not path.is_file():
        print(f"scgw import: {path}: file not found / 文件不存在", file=sys.stderr)
        return EXIT_USAGE

    async def main() -> int:
        store = open_store(settings.database.url)
        await store.open()
        try:
            report = await import_csv(store, path)
        except CsvImportError as exc:
            print(f"scgw import: {path}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            await store.close()
        print(format_report(report))
        return EXIT_FAILED if report.errors else EXIT_OK

    return asyncio.run(main())


# -- scgw users -----------------------------------------------------------------------------------
def cmd_users_add(args: argparse.Namespace) -> int:
    import getpass
    from datetime import UTC, datetime
    from typing import cast

    from gateway.audit import AuditAction, Auditor, AuditStore
    from gateway.storage.factory import open_store
    from gateway.users import (
        UserExistsError,
        UserStore,
        check_name,
        hash_secret,
        new_token,
        parse_role,
    )

    try:
        name, role = check_name(args.name), parse_role(args.role)
    except ValueError as exc:
        print(f"scgw users add: {exc}", file=sys.stderr)
        return EXIT_USAGE
    settings = _settings(args)

    async def main() -> int:
        store = open_store(settings.database.url)
        await store.open()
        token = new_token()
        try:
            users = cast(UserStore, store)  # both backends implement the user store
            await users.create_user(name, role, hash_secret(token), datetime.now(UTC))
            # A login made at the console is a human action too: on the record, with the
            # operating-system account that made it.
            await Auditor(cast(AuditStore, store)).record(
                actor=f"os:{getpass.getuser()}",
                role="console",
                action=AuditAction.USER_CREATE,
                target_kind="user",
                target_id=name,
                detail={"role": role.value, "via": "scgw users add"},
            )
        except UserExistsError:
            print(f"scgw users add: user {name!r} exists / 用户已存在", file=sys.stderr)
            return EXIT_FAILED
        finally:
            await store.close()
        print(f"user {name} ({role.value}) created / 已创建")
        print("API token (shown once, keep it safe / 仅显示一次，请妥善保存):")
        print(token)
        return EXIT_OK

    return asyncio.run(main())


def cmd_users_list(args: argparse.Namespace) -> int:
    from typing import cast

    from gateway.storage.factory import open_store
    from gateway.users import UserStore

    settings = _settings(args)

    async def main() -> int:
        store = open_store(settings.database.url)
        await store.open()
        try:
            users = await cast(UserStore, store).list_users()
        finally:
            await store.close()
        for user in users:
            print(f"{user.name}\t{user.role.value}")
        return EXIT_OK

    return asyncio.run(main())


# -- scgw demo -----------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import DemoOptions, run_demo

    options = DemoOptions(http=args.http, mqtt_port=args.mqtt_port, db=Path(args.db))
    return _run_until_signal(lambda stop: run_demo(options, stop))


# -- scgw sim --------------------------------------------------------------------------------------
def cmd_sim_press(args: argparse.Namespace) -> int:
    from simulators.press import press

    return asyncio.run(press(args.mqtt, args.device, args.type, prefix=args.prefix))


def cmd_sim_load(args: argparse.Namespace) -> int:
    from simulators.load import LoadOptions, run_load

    options = LoadOptions(
        url=args.mqtt,
        devices=args.devices,
        rate=args.rate,
        duration=args.duration,
        processes=args.processes,
        prefix=args.prefix,
        id_prefix=args.id_prefix,
    )
    return run_load(options)


def cmd_sim_serial(args: argparse.Namespace) -> int:
    from simulators.serial_device import SimOptions, run_serial_sim

    options = SimOptions(
        listen=args.listen,
        devices=args.devices,
        addr_start=args.addr_start,
        interval=args.interval,
        press=args.press,
        duration=args.duration,
    )
    return _run_until_signal(lambda stop: run_serial_sim(options, stop))


def _int_any_base(text: str) -> int:
    return int(text, 0)  # 4097 or 0x1001


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scgw", description="Smart Community Gateway / 智慧社区网关"
    )
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the production gateway from a TOML config")
    run.add_argument("-c", "--config", required=True, help="TOML config file")
    run.set_defaults(func=cmd_run)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    migrate = db_sub.add_parser("migrate", help="create or upgrade the schema")
    migrate.add_argument("-c", "--config", help="TOML config file")
    migrate.add_argument("--db", help="database URL (overrides the config)")
    migrate.set_defaults(func=cmd_db_migrate)

    imp = sub.add_parser("import", help="import residents / devices / responders from CSV")
    imp.add_argument("file", help="CSV file (UTF-8, UTF-8 with BOM, or GB18030)")
    imp.add_argument("-c", "--config", help="TOML config file")
    imp.add_argument("--db", help="database URL (overrides the config)")
    imp.set_defaults(func=cmd_import)

    users = sub.add_parser("users", help="logins of the duty-desk API and dashboard")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    users_add = users_sub.add_parser("add", help="create a login; prints its API token once")
    users_add.add_argument("name")
    users_add.add_argument(
        "--role", required=True, help="admin, duty, responder, technician or viewer"
    )
    users_add.add_argument("-c", "--config", help="TOML config file")
    users_add.add_argument("--db", help="database URL (overrides the config)")
    users_add.set_defaults(func=cmd_users_add)
    users_list = users_sub.add_parser("list", help="list logins and their roles")
    users_list.add_argument("-c", "--config", help="TOML config file")
    users_list.add_argument("--db", help="database URL (overrides the config)")
    users_list.set_defaults(func=cmd_users_list)

    demo = sub.add_parser("demo", help="everything embedded: broker, database, fleet, dashboard")
    demo.add_argument("--http", help="dashboard HOST:PORT (default 127.0.0.1:8080)")
    demo.add_argument("--mqtt-port", type=int, help="embedded broker port (default 1883)")
    demo.add_argument("--db", default="scgw-demo.db", help="SQLite file")
    demo.set_defaults(func=cmd_demo)

    sim = sub.add_parser("sim", help="simulators")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    press = sim_sub.add_parser("press", help="press a device's button once")
    press.add_argument("device")
    press.add_argument("--type", default="sos", help="event type (default sos)")
    press.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    press.add_argument("--prefix", default="scgw")
    press.set_defaults(func=cmd_sim_press)
    load = sim_sub.add_parser("load", help="rate-controlled telemetry publishers")
    load.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    load.add_argument("--devices", type=int, default=100)
    load.add_argument("--rate", type=float, default=1000.0, help="messages per second in all")
    load.add_argument("--duration", type=float, default=10.0, help="seconds")
    load.add_argument("--processes", type=int, default=1)
    load.add_argument("--prefix", default="scgw")
    load.add_argument("--id-prefix", default="load", help="device ids are ID_PREFIX-N")
    load.set_defaults(func=cmd_sim_load)
    ser = sim_sub.add_parser("serial", help="virtual serial devices on a pty or TCP serial server")
    where = ser.add_mutually_exclusive_group()
    where.add_argument("--pty", action="store_true", help="a pseudo-terminal (default)")
    where.add_argument("--listen", metavar="HOST:PORT", help="a TCP serial server (socket://)")
    ser.add_argument("--devices", type=int, default=4)
    ser.add_argument("--addr-start", type=_int_any_base, default=0x1001, help="first ADDR")
    ser.add_argument("--interval", type=float, default=10.0, help="seconds between heartbeats")
    ser.add_argument("--press", type=_int_any_base, metavar="ADDR", help="press once, until acked")
    ser.add_argument("--duration", type=float, help="stop after this many seconds")
    ser.set_defaults(func=cmd_sim_serial)
    from simulators.cli_sim import add_sim_commands  # sim fleet, responders, scenario

    add_sim_commands(sim_sub)
    from bench.cli import add_bench_command  # scgw bench

    add_bench_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_level)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"scgw: database not reachable / 数据库无法连接: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
