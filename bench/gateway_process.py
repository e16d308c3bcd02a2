"""The gateway as a separate process (``python -m gateway run -c FILE``): ``scgw bench`` runs
and measures it this way, and tests SIGKILL it and start it again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import ClassVar


class GatewayProcess:
    # Every process started and not yet reaped: whoever started them (a test's finalizer,
    # the bench's cleanup) ends what is left with ``end_all`` — none outlives its starter.
    running: ClassVar[set[GatewayProcess]] = set()

    def __init__(self, config: Path, log: Path, http_port: int) -> None:
        self.config = config
        self.log = log
        self.http_port = http_port
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def end_all(cls) -> list[int]:
        """Kill every process still running; returns their pids (empty: nothing was left)."""
        left = []
        for gateway in list(cls.running):
            proc = gateway.proc
            if proc is not None and proc.poll() is None:
                left.append(proc.pid)
                proc.kill()
                proc.wait(timeout=10)
            cls.running.discard(gateway)
        return left

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "-c", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        GatewayProcess.running.add(self)

    def ready(self) -> bool:
        """/readyz says 200: subscribed on both lanes, database reachable."""
        # The standard library, not httpx: `scgw bench` must run after the plain install,
        # where test extras are absent.
        url = f"http://127.0.0.1:{self.http_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):  # HTTPError (503) is a URLError
            return False

    def exited(self) -> int | None:
        """The exit status once the process has ended, else None."""
        return self.proc.poll() if self.proc is not None else None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        GatewayProcess.running.discard(self)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            code = self.proc.wait(timeout=20)
        else:
            code = self.proc.returncode
        GatewayProcess.running.discard(self)
        return code
