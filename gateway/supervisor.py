"""Supervised background tasks: a failing task is logged with its traceback, counted and
restarted with backoff, so one fault never stops the gateway and a crash loop is visible."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(slots=True)
class TaskHealth:
    name: str
    restarts: int = 0
    last_error: str | None = None
    running: bool = False


async def supervise(
    health: TaskHealth,
    run: Callable[[], Awaitable[None]],
    metrics: Metrics,
    *,
    first_delay: float = 0.2,
    max_delay: float = 30.0,
) -> None:
    delay = first_delay
    while True:
        started = time.monotonic()
        health.running = True
        try:
            await run()
            health.last_error = "returned unexpectedly"
            log.error("task %s returned; restarting", health.name)
        except Exception as exc:  # logged with traceback, counted, restarted: never hidden
            health.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("task %s failed; restarting in %.1fs", health.name, delay)
        finally:
            health.running = False
        health.restarts += 1
        metrics.task_restarts.labels(task=health.name).inc()
        if time.monotonic() - started > 60.0:
            delay = first_delay  # it ran a good while: not a crash loop
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)
