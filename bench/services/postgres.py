"""A private PostgreSQL server (tests, ``scgw bench``): ``initdb`` into a temporary folder, run
``postgres`` as a child process on a free 127.0.0.1 port, stop / SIGKILL / restart it at will.

Speed over durability *against OS crashes* only: ``fsync=off`` and ``full_page_writes=off``
(a killed server still has every committed write in the OS page cache, so kill -9 + restart
loses nothing). ``synchronous_commit`` stays ``on``: with it off a commit returns before its WAL
leaves shared memory and a SIGKILL of the server would lose acknowledged commits, which is
exactly what the no-loss tests must be able to rule out.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from .ports import HOST
from .process import (
    BindFailedError,
    ManagedService,
    ServiceError,
    ServiceUser,
    default_base_dir,
    kill_group,
    lookup_user,
    make_private_dir,
    run,
    running_as_root,
    spawn,
    tail,
)

SUPERUSER = "postgres"
DEFAULT_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "64MB",
    "max_wal_size": "1GB",
    # dynamic shared memory as files in the data dir, not /dev/shm: a killed server that is
    # never restarted leaves nothing behind outside its folder
    "dynamic_shared_memory_type": "mmap",
}
_DEBIAN_GLOB = "/usr/lib/postgresql/*/bin"
_BIND_FAILURE = re.compile(r"could not bind|Address already in use|could not create any TCP/IP")


@dataclass(frozen=True, slots=True)
class PostgresBinaries:
    bindir: Path

    @property
    def initdb(self) -> Path:
        return self.bindir / "initdb"

    @property
    def postgres(self) -> Path:
        return self.bindir / "postgres"


def _version_key(bindir: Path) -> tuple[int, ...]:
    digits = re.findall(r"\d+", bindir.parent.name)
    return tuple(int(d) for d in digits)


def find_postgres_binaries() -> PostgresBinaries:
    """``initdb`` + ``postgres`` from one folder: PATH first, else the newest Debian version."""
    on_path = shutil.which("initdb")
    if on_path is not None:
        bindir = Path(on_path).resolve().parent
        if (bindir / "postgres").is_file():
            return PostgresBinaries(bindir)
    debian = sorted(
        (p for p in Path("/").glob(_DEBIAN_GLOB.lstrip("/")) if (p / "initdb").is_file()),
        key=_version_key,
        reverse=True,
    )
    for bindir in debian:
        if (bindir / "postgres").is_file():
            return PostgresBinaries(bindir)
    raise ServiceError(
        "PostgreSQL server binaries not found: need `initdb` and `postgres` on PATH or in "
        f"{_DEBIAN_GLOB}. Install them (Debian: `apt-get install postgresql`; "
        "scripts/test.sh does this when run as root)."
    )


def _server_user() -> ServiceUser | None:
    if not running_as_root():
        return None
    user = lookup_user(SUPERUSER)
    if user is None:
        raise ServiceError(
            "the tests run as root and PostgreSQL refuses to run as root, but there is no "
            f"'{SUPERUSER}' system user to run it as. Install Debian's postgresql package "
            f"(it creates the user) or `useradd --system --user-group {SUPERUSER}`."
        )
    return user


class PostgresServer(ManagedService):
    """One throwaway PostgreSQL cluster; connect as ``postgres`` (trust auth) to ``url()``."""

    def __init__(
        self,
        *,
        base_dir: Path | None = None,
        settings: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
        binaries: PostgresBinaries | None = None,
    ) -> None:
        self._binaries = binaries or find_postgres_binaries()
        self._user = _server_user()
        self._settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self._start_timeout = start_timeout
        self._set_up("scgw-pg-", self._user, base_dir)

    # ---------------------------------------------------------------- properties
    @property
    def data_dir(self) -> Path:
        return self._root / "data"

    @property
    def socket_dir(self) -> Path:
        return self._root

    @property
    def log_path(self) -> Path:
        return self._root / "server.log"

    @property
    def pid(self) -> int | None:
        """PID of the postmaster while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{HOST}:{self._port}/{dbname}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # ---------------------------------------------------------------- lifecycle
    # start(): initdb on first use, returns once it accepts connections. stop(): SIGINT is
    # PostgreSQL's "fast" shutdown — abort transactions, write a checkpoint, exit.
    _name = "PostgreSQL"
    _stop_signal = signal.SIGINT

    def _prepare(self) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()

    def _after_stop(self, proc: subprocess.Popen[bytes], *, killed: bool) -> None:
        if killed:
            self._remove_stale_locks()
        else:
            kill_group(proc)  # backends normally exit with the postmaster; make sure

    def kill(self) -> None:
        """SIGKILL the postmaster and all its backends (crash); ``start()`` recovers."""
        proc = self._proc
        if proc is None:
            return
        kill_group(proc)
        self._proc = None
        self._remove_stale_locks()

    # ---------------------------------------------------------------- databases
    def connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection (caller closes it)."""
        return psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=5)

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its URL."""
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, terminating connections still open to it."""
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    # ---------------------------------------------------------------- internals
    def _initdb(self) -> None:
        """Copy this process's template cluster (``initdb`` runs once per process)."""
        template = _template_cluster(self._binaries, self._user, self._start_timeout)
        result = run(
            ["cp", "-a", template, self.data_dir],
            user=self._user,
            cwd=self._root,
            timeout=self._start_timeout,
        )
        if result.returncode != 0:
            raise ServiceError(
                f"copying template cluster {template} failed: {result.stdout}{result.stderr}"
            )

    def _argv(self) -> list[str | Path]:
        settings = {
            **self._settings,
            "listen_addresses": HOST,
            "unix_socket_directories": str(self.socket_dir),
        }
        argv: list[str | Path] = [
            self._binaries.postgres,
            "-D",
            self.data_dir,
            "-p",
            str(self._port),
        ]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def _launch_and_wait(self) -> None:
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self._proc = spawn(self._argv(), user=self._user, cwd=self._root, output=log)
        deadline = time.monotonic() + self._start_timeout
        last_error = "not tried"
        while True:
            proc = self._proc
            if proc.poll() is not None:
                self._proc = None
                new_log = self._log_since(log_offset)
                if _BIND_FAILURE.search(new_log):
                    raise BindFailedError(new_log)
                raise ServiceError(
                    f"PostgreSQL exited with {proc.returncode} during start on port "
                    f"{self._port}; log {self.log_path}:\n{tail(self.log_path)}"
                )
            try:
                with psycopg.connect(self.url(), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last_error = str(exc).strip()
            if time.monotonic() > deadline:
                kill_group(proc)
                self._proc = None
                self._remove_stale_locks()
                raise ServiceError(
                    f"PostgreSQL did not accept connections on port {self._port} within "
                    f"{self._start_timeout:.0f}s (last error: {last_error}); "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            time.sleep(0.05)

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _remove_stale_locks(self) -> None:
        """After a kill nothing of the old server is alive: drop its lock files (its PID may
        already belong to another ``postgres``-owned process, which would block a restart)
        and its System V shared memory segment (unattached now; a never-restarted server
        would otherwise leak it)."""
        lock = self.data_dir / "postmaster.pid"
        _remove_sysv_segment(lock)
        for path in [lock, *self.socket_dir.glob(".s.PGSQL.*.lock")]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


_IPC_RMID = 0


def _remove_sysv_segment(lock_file: Path) -> None:
    """IPC_RMID the segment named on line 7 of postmaster.pid ("key shmid"), if any."""
    try:
        lines = lock_file.read_text().splitlines()
        shmid = int(lines[6].split()[1])
    except (OSError, IndexError, ValueError):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmctl(ctypes.c_int(shmid), ctypes.c_int(_IPC_RMID), None)  # ignore failure


_TEMPLATE_PREFIX = "scgw-pg-template-"
_templates: dict[Path, Path] = {}
_templates_lock = threading.Lock()


@atexit.register
def remove_template_clusters() -> None:
    """Delete this process's template clusters (conftest calls it at session end: pytest-xdist
    workers may exit without running atexit handlers)."""
    with _templates_lock:
        for data in _templates.values():
            shutil.rmtree(data.parent, ignore_errors=True)
        _templates.clear()


def _sweep_orphan_templates() -> None:
    """Delete template clusters left by test processes that died without cleaning up."""
    for path in default_base_dir().glob(f"{_TEMPLATE_PREFIX}*-*"):
        pid_text = path.name[len(_TEMPLATE_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


def _template_cluster(binaries: PostgresBinaries, user: ServiceUser | None, timeout: float) -> Path:
    """A freshly ``initdb``-ed, never started data dir, made once per process and copied for
    every server (a copy takes a fraction of an ``initdb``)."""
    with _templates_lock:
        cached = _templates.get(binaries.bindir)
        if cached is not None and (cached / "PG_VERSION").exists():
            return cached
        _sweep_orphan_templates()
        root = make_private_dir(f"{_TEMPLATE_PREFIX}{os.getpid()}-", user, None)
        data = root / "data"
        result = run(
            [
                binaries.initdb,
                "-D",
                data,
                "-A",
                "trust",
                "-U",
                SUPERUSER,
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            user=user,
            cwd=root,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise ServiceError(
                f"initdb failed (exit {result.returncode}) in {data}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        _templates[binaries.bindir] = data
        return data
