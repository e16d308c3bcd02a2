"""Child processes of the private servers (``scgw bench`` and the test suite): service users,
private folders, process groups, cleanup.

PostgreSQL refuses to run as root and mosquitto started as root drops to its own user, so when
run as root (CI does) the servers run as the system users Debian's packages create
(``postgres``, ``mosquitto``) and their temporary folders belong to those users; otherwise they
run as the current user.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol, Self

from .ports import HOST, free_port

KEEP_DIRS_ENV = "SCGW_TEST_KEEP_DIRS"
"""Set to 1 to keep the servers' temporary folders (data, config, logs) after the tests."""
TMPDIR_ENV = "SCGW_TEST_TMPDIR"
"""Where the servers' temporary folders go (default: /dev/shm when roomy, else the temp dir)."""

_SHM = Path("/dev/shm")
_SHM_MIN_FREE = 1 << 30

_ENV_DROP_PREFIXES = ("PG", "LC_")


class ServiceError(RuntimeError):
    """A private server could not be found, started or stopped; the message says why."""


@dataclass(frozen=True, slots=True)
class ServiceUser:
    """The unprivileged user a server runs as when we run as root."""

    name: str
    uid: int
    gid: int


def running_as_root() -> bool:
    return os.geteuid() == 0


def lookup_user(name: str) -> ServiceUser | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return ServiceUser(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def default_base_dir() -> Path:
    """Parent of the servers' folders: ``$SCGW_TEST_TMPDIR``, else ``/dev/shm`` if it is a
    writable RAM disk with at least 1 GiB free (initdb there takes a third of the time, and a
    SIGKILLed server still finds its data: only an OS crash would lose it), else the temp dir.

    Not pytest's ``tmp_path``: it lives below a root-only folder that a service user cannot
    traverse.
    """
    configured = os.environ.get(TMPDIR_ENV)
    if configured:
        return Path(configured)
    try:
        roomy = shutil.disk_usage(_SHM).free >= _SHM_MIN_FREE and os.access(_SHM, os.W_OK)
    except OSError:
        roomy = False
    return _SHM if roomy else Path(tempfile.gettempdir())


def make_private_dir(prefix: str, owner: ServiceUser | None, base_dir: Path | None) -> Path:
    """Create a 0700 temporary folder that ``owner`` (when given) owns and can reach."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base_dir or default_base_dir()))
    if owner is not None:
        os.chown(path, owner.uid, owner.gid)
    return path


def remove_dir(path: Path) -> None:
    if os.environ.get(KEEP_DIRS_ENV, "") not in ("", "0"):
        return
    shutil.rmtree(path, ignore_errors=True)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a server: ours minus PG*/LC_* variables that would steer it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_DROP_PREFIXES)}
    env["LANG"] = "C"
    env["LC_ALL"] = "C"
    if extra:
        env.update(extra)
    return env


def spawn(
    argv: Sequence[str | Path],
    *,
    user: ServiceUser | None,
    cwd: Path,
    output: IO[bytes],
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server in its own session (its own process group: Ctrl-C does not reach it).

    With ``user`` the child switches to that user and its primary group before ``exec``.
    """
    if user is None:
        return subprocess.Popen(
            [str(a) for a in argv],
            cwd=cwd,
            env=child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return subprocess.Popen(
        [str(a) for a in argv],
        cwd=cwd,
        env=child_env(env),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        user=user.uid,
        group=user.gid,
        extra_groups=[],
    )


def run(
    argv: Sequence[str | Path],
    *,
    user: ServiceUser | None,
    cwd: Path,
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    """Run a helper program to completion (as ``user`` when given), capturing its output."""
    if user is None:
        return subprocess.run(
            [str(a) for a in argv],
            cwd=cwd,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        user=user.uid,
        group=user.gid,
        extra_groups=[],
    )


def _group_members(pgid: int) -> list[int]:
    """PIDs of the live (non-zombie) processes in process group ``pgid``, read from /proc.

    Zombies are skipped: orphans of a killed server are reaped by PID 1, which in a container
    may never happen, and a zombie holds no port, file lock or shared memory.
    """
    members: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        # fields: state ppid pgrp ...
        if len(fields) >= 3 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def group_alive(pgid: int) -> bool:
    if Path("/proc/self/stat").exists():
        return bool(_group_members(pgid))
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_group_gone(pgid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() > deadline:
            raise ServiceError(
                f"processes of group {pgid} still alive {timeout:.0f}s after the kill: "
                f"{_group_members(pgid)}"
            )
        time.sleep(0.01)


def kill_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGKILL a server's whole process group, reap it and wait until every member is gone."""
    pgid = proc.pid  # start_new_session=True: the server leads its own group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=timeout)
    wait_group_gone(pgid, timeout)


def tail(path: Path, limit: int = 6000) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    text = data[-limit:].decode("utf-8", errors="replace")
    return text if len(data) <= limit else f"...{text}"


class _Closable(Protocol):
    def close(self) -> None: ...


_live: dict[int, _Closable] = {}


def track(server: _Closable) -> None:
    """Remember a server so it is shut down if the interpreter exits without closing it."""
    _live[id(server)] = server


def untrack(server: _Closable) -> None:
    _live.pop(id(server), None)


@atexit.register
def _close_leftovers() -> None:
    for server in list(_live.values()):
        with contextlib.suppress(ServiceError, OSError, subprocess.SubprocessError):
            server.close()


class BindFailedError(ServiceError):
    """The port was taken between choosing it and binding it (another xdist worker)."""


class ManagedService:
    """What the broker and the database servers share: restart, close (stop, or kill if it
    will not stop, then delete the folder) and use as a context manager. Subclasses set
    ``_proc``, ``_closed`` and ``_root`` and implement ``start`` and ``stop``."""

    _proc: subprocess.Popen[bytes] | None
    _closed: bool
    _root: Path
    _port: int

    def _set_up(self, prefix: str, owner: ServiceUser | None, base_dir: Path | None) -> None:
        """A private folder and a free port; registered for clean-up at exit."""
        self._root = make_private_dir(prefix, owner, base_dir)
        self._port = free_port()
        self._proc = None
        self._ever_started = False
        self._closed = False
        track(self)

    @property
    def port(self) -> int:
        return self._port

    @property
    def host(self) -> str:
        return HOST

    @property
    def root_dir(self) -> Path:
        return self._root

    _name: str  # for messages: "mosquitto", "PostgreSQL"
    _stop_signal: signal.Signals  # the server's clean (or fast) shutdown

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _prepare(self) -> None:
        """Before every launch attempt (write the config, initdb on first use, ...)."""

    def _launch_and_wait(self) -> None:
        """Spawn the server and return once it answers; BindFailedError if the port was
        taken meanwhile."""
        raise NotImplementedError

    def _after_stop(self, proc: subprocess.Popen[bytes], *, killed: bool) -> None:
        """Once the process has stopped (``killed``: it would not, and was killed)."""

    def start(self) -> None:
        """Start the server and return once it answers. A port taken by someone else in the
        meantime gets a new one — on the first start only: a restart must keep its port."""
        if self._closed:
            raise ServiceError(f"{type(self).__name__} is closed")
        if self.running:
            return
        attempts = 1 if self._ever_started else 3
        for attempt in range(attempts):
            self._prepare()
            try:
                self._launch_and_wait()
            except BindFailedError:
                if attempt == attempts - 1:
                    raise
                self._port = free_port()
                continue
            self._ever_started = True
            return

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the server to shut down (``_stop_signal``); killed if it has not within
        ``timeout`` (then ServiceError)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(self._stop_signal)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                self._proc = None
                self._after_stop(proc, killed=True)
                raise ServiceError(
                    f"{self._name} did not stop within {timeout:.0f}s; killed.\n"
                    f"{tail(self.log_path)}"
                ) from None
        self._after_stop(proc, killed=False)
        self._proc = None

    def restart(self) -> None:
        """Clean stop and start again on the same port with the same data."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server (killing it if it will not stop) and delete its folder."""
        if self._closed:
            return
        try:
            with contextlib.suppress(ServiceError):
                self.stop()
        finally:
            if self._proc is not None:
                kill_group(self._proc)
                self._proc = None
            self._closed = True
            untrack(self)
            remove_dir(self._root)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
