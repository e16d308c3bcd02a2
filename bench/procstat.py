"""CPU time and peak memory of a process, read from Linux ``/proc`` (no psutil dependency).

``cpu_seconds`` is user + system time (fields 14 and 15 of ``/proc/PID/stat``, in clock
ticks); ``peak_rss_bytes`` is ``VmHWM`` of ``/proc/PID/status``, the resident set's high-water
mark since the process started.
"""

from __future__ import annotations

import os
from pathlib import Path

_PROC = Path("/proc")


class ProcStatError(RuntimeError):
    """The process is gone, or this is not Linux."""


def parse_stat_cpu(stat: str, ticks_per_second: int) -> float:
    """User + system seconds from the text of ``/proc/PID/stat``."""
    # The command name (field 2) is in parentheses and may contain spaces or ')': split
    # after the last ')'. What follows starts at field 3 (state).
    fields = stat[stat.rfind(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / ticks_per_second


def parse_status_kib(status: str, key: str) -> int:
    """A ``kB`` value of ``/proc/PID/status`` (``VmHWM``, ``VmRSS``) in KiB."""
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    raise ProcStatError(f"{key} not in /proc status")


def cpu_seconds(pid: int) -> float:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError as exc:
        raise ProcStatError(f"cannot read /proc/{pid}/stat: {exc}") from exc
    return parse_stat_cpu(stat, os.sysconf("SC_CLK_TCK"))


def peak_rss_bytes(pid: int) -> int:
    try:
        status = (_PROC / str(pid) / "status").read_text()
    except OSError as exc:
        raise ProcStatError(f"cannot read /proc/{pid}/status: {exc}") from exc
    return parse_status_kib(status, "VmHWM") * 1024
