"""CPU time and peak memory read from /proc."""

from __future__ import annotations

import os

import pytest

from bench.procstat import (
    ProcStatError,
    cpu_seconds,
    parse_stat_cpu,
    parse_status_kib,
    peak_rss_bytes,
)


def test_parse_stat_cpu_survives_spaces_and_parens_in_the_name() -> None:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    stat = "4242 (python (gw) x) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 3 0"
    assert parse_stat_cpu(stat, 100) == pytest.approx(3.0)


def test_parse_status_reads_kib_and_names_a_missing_key() -> None:
    status = "Name:\tpython\nVmHWM:\t  102400 kB\nVmRSS:\t   51200 kB\n"
    assert parse_status_kib(status, "VmHWM") == 102400
    assert parse_status_kib(status, "VmRSS") == 51200
    with pytest.raises(ProcStatError, match="VmSwap"):
        parse_status_kib(status, "VmSwap")


def test_this_process_has_cpu_time_and_a_peak_rss() -> None:
    pid = os.getpid()
    assert cpu_seconds(pid) > 0
    assert peak_rss_bytes(pid) > 1 << 20


def test_a_gone_process_is_an_error() -> None:
    with pytest.raises(ProcStatError, match="/proc/"):
        cpu_seconds(2**22 + 1)  # above pid_max's default: never a live process
    with pytest.raises(ProcStatError, match="/proc/"):
        peak_rss_bytes(2**22 + 1)
