"""A private mosquitto broker (tests, ``scgw bench``), configured from the shipped
``config/mosquitto.conf``.

The generated config keeps every global option of the shipped file (persistence, queue limits,
in-flight window, packet size, $SYS interval, ...) and replaces only what must differ in a
test: one listener on a free 127.0.0.1 port, persistence and log files in a private temporary
folder, anonymous access, and the user to run as. ``extra_config`` lines override the shipped
options of the same name (``["sys_interval 1"]``); ``base_config=None`` starts from mosquitto's
built-in defaults instead (to compare against them).

Started as root, mosquitto drops privileges to the ``mosquitto`` user before it opens its log
and persistence files, so the folder belongs to that user (``user root`` would also be
accepted, with a warning, but would not test what production runs).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from .ports import HOST
from .process import (
    BindFailedError,
    ManagedService,
    ServiceError,
    ServiceUser,
    kill_group,
    lookup_user,
    running_as_root,
    spawn,
    tail,
)

# The shipped broker config lives in the source tree (config/), next to the packages.
REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO_ROOT / "config" / "mosquitto.conf"
BROKER_USER = "mosquitto"

# Options the harness always sets itself (or must not inherit from a production file).
_REPLACED = frozenset(
    {
        "listener",
        "port",
        "bind_address",
        "persistence_location",
        "persistence_file",
        "log_dest",
        "pid_file",
        "user",
        "allow_anonymous",
        "password_file",
        "acl_file",
        "psk_file",
        "include_dir",
        "plugin",
        "auth_plugin",
    }
)
_SBIN_CANDIDATES = (Path("/usr/sbin/mosquitto"), Path("/usr/local/sbin/mosquitto"))


def find_mosquitto() -> Path:
    """The mosquitto binary: PATH first, then /usr/sbin (not on a non-root PATH on Debian)."""
    on_path = shutil.which("mosquitto")
    if on_path is not None:
        return Path(on_path)
    for candidate in _SBIN_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise ServiceError(
        "mosquitto not found on PATH or in /usr/sbin. Install it (Debian: "
        "`apt-get install mosquitto`; scripts/test.sh does this when run as root)."
    )


def _option(line: str) -> str | None:
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    return stripped.split(None, 1)[0]


def global_options(config_text: str) -> list[str]:
    """The option lines of a mosquitto config above its first ``listener`` (comments dropped)."""
    lines: list[str] = []
    for line in config_text.splitlines():
        option = _option(line)
        if option is None:
            continue
        if option == "listener":
            break
        lines.append(line.strip())
    return lines


def _probe(port: int, timeout: float) -> bool:
    """True when the broker answers an MQTT 3.1.1 CONNECT with a successful CONNACK."""
    client_id = b"scgw-harness-probe"
    variable = b"\x00\x04MQTT\x04\x02\x00\x0a"  # protocol 4, clean session, keepalive 10 s
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = variable + payload
    connect = b"\x10" + bytes([len(body)]) + body
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(connect)
            connack = b""
            while len(connack) < 4:
                chunk = sock.recv(4 - len(connack))
                if not chunk:
                    return False
                connack += chunk
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")  # DISCONNECT
    except OSError:
        return False
    return connack[0] == 0x20 and connack[3] == 0


class MosquittoServer(ManagedService):
    """One throwaway mosquitto broker on ``127.0.0.1:port``; ``url`` is ``mqtt://127.0.0.1:PORT``."""

    def __init__(
        self,
        *,
        base_config: Path | None = SHIPPED_CONFIG,
        extra_config: Sequence[str] = (),
        base_dir: Path | None = None,
        start_timeout: float = 15.0,
        binary: Path | None = None,
    ) -> None:
        self._binary = binary or find_mosquitto()
        self._base_config = base_config
        self._extra_config = [line.strip() for line in extra_config if line.strip()]
        self._start_timeout = start_timeout
        self._user = self._drop_user()
        self._set_up("scgw-mosq-", self._user, base_dir)

    # ---------------------------------------------------------------- properties
    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self._port}"

    @property
    def config_path(self) -> Path:
        return self._root / "mosquitto.conf"

    @property
    def persistence_path(self) -> Path:
        return self._root / "mosquitto.db"

    @property
    def log_path(self) -> Path:
        return self._root / "mosquitto.log"

    @property
    def output_path(self) -> Path:
        """stdout/stderr of the process: errors mosquitto prints before its log is open."""
        return self._root / "mosquitto.out"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # ---------------------------------------------------------------- lifecycle
    # start(): returns once the broker answers an MQTT CONNECT. stop(): SIGTERM is a clean
    # shutdown — mosquitto saves its persistence file, then exits.
    _name = "mosquitto"
    _stop_signal = signal.SIGTERM

    def _prepare(self) -> None:
        self._write_config()

    def kill(self) -> None:
        """SIGKILL (crash): whatever changed since the last autosave is lost."""
        proc = self._proc
        if proc is None:
            return
        kill_group(proc)
        self._proc = None

    # ---------------------------------------------------------------- internals
    @staticmethod
    def _drop_user() -> ServiceUser | None:
        if not running_as_root():
            return None
        return lookup_user(BROKER_USER)  # None: no such user, run with `user root`

    def config_text(self) -> str:
        """The configuration the broker runs with."""
        overridden = {_option(line) for line in self._extra_config}
        base: list[str] = []
        if self._base_config is not None:
            try:
                text = self._base_config.read_text()
            except OSError as exc:
                raise ServiceError(f"cannot read mosquitto base config: {exc}") from exc
            base = [
                line
                for line in global_options(text)
                if _option(line) not in _REPLACED and _option(line) not in overridden
            ]
        if running_as_root():
            user_line = f"user {BROKER_USER}" if self._user is not None else "user root"
        else:
            user_line = None
        source = self._base_config or "mosquitto built-in defaults"
        lines = [
            f"# generated by bench/services/mosquitto.py from {source}",
            *base,
            "# --- test broker ---",
            *([user_line] if user_line else []),
            f"persistence_location {self._root}/",
            "persistence_file mosquitto.db",
            f"log_dest file {self.log_path}",
            "allow_anonymous true",
            *self._extra_config,
            f"listener {self._port} {HOST}",
        ]
        return "\n".join(lines) + "\n"

    def _write_config(self) -> None:
        self.config_path.write_text(self.config_text())
        self.config_path.chmod(0o644)  # re-read after the privilege drop on SIGHUP

    def _launch_and_wait(self) -> None:
        out_offset = self.output_path.stat().st_size if self.output_path.exists() else 0
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.output_path.open("ab") as out:
            self._proc = spawn(
                [self._binary, "-c", self.config_path], user=None, cwd=self._root, output=out
            )
        proc = self._proc
        deadline = time.monotonic() + self._start_timeout
        while True:
            if proc.poll() is not None:
                self._proc = None
                output = _read_from(self.output_path, out_offset) + _read_from(
                    self.log_path, log_offset
                )
                if "Address already in use" in output:
                    raise BindFailedError(output)
                raise ServiceError(
                    f"mosquitto exited with {proc.returncode} during start on port "
                    f"{self._port}:\n{output}\nconfig {self.config_path}:\n{self.config_text()}"
                )
            if _probe(self._port, timeout=1.0):
                return
            if time.monotonic() > deadline:
                kill_group(proc)
                self._proc = None
                raise ServiceError(
                    f"mosquitto did not accept MQTT connections on port {self._port} within "
                    f"{self._start_timeout:.0f}s; log {self.log_path}:\n{tail(self.log_path)}\n"
                    f"output:\n{tail(self.output_path)}"
                )
            time.sleep(0.02)


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
