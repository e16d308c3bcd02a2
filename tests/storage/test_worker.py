"""PriorityWorker: calls made during urgent (event-path) work overtake queued bulk calls."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.priority import UrgentGate
from gateway.storage.worker import PriorityWorker


async def test_urgent_calls_overtake_queued_bulk_calls() -> None:
    worker = PriorityWorker("test-worker")
    loop = asyncio.get_running_loop()
    started = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def blocking() -> None:
        started.set()
        release.wait(5)
        order.append("running bulk")

    def record(name: str) -> None:
        order.append(name)

    try:
        running = loop.run_in_executor(worker, blocking)
        await asyncio.to_thread(started.wait, 5)
        bulk = [loop.run_in_executor(worker, record, f"bulk {n}") for n in range(3)]
        with UrgentGate().urgent():
            press = loop.run_in_executor(worker, record, "press")
        release.set()
        await asyncio.gather(running, press, *bulk)
    finally:
        worker.shutdown()
    # The call already running finishes; then the press, then bulk in its own order.
    assert order == ["running bulk", "press", "bulk 0", "bulk 1", "bulk 2"]


async def test_errors_reach_the_caller_and_shutdown_runs_what_was_queued() -> None:
    worker = PriorityWorker("test-worker")
    loop = asyncio.get_running_loop()

    def fail() -> None:
        raise ValueError("bad statement")

    done: list[int] = []
    with pytest.raises(ValueError, match="bad statement"):
        await loop.run_in_executor(worker, fail)
    futures = [worker.submit(done.append, n) for n in range(5)]
    worker.shutdown(wait=True)
    assert done == [0, 1, 2, 3, 4]
    assert all(f.done() for f in futures)
    with pytest.raises(RuntimeError):
        worker.submit(done.append, 6)
