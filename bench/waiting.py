"""Wait on conditions with deadlines, never with fixed sleeps.

``wait_for`` (async) and ``wait_until`` (sync) poll a predicate until it returns something
truthy and return that value. On timeout they raise ``WaitTimeout`` carrying the message and
the predicate's last value, so a failing test (or ``scgw bench``) says what it was waiting for
and what it saw. ``WaitTimeout`` is an ``AssertionError``: in a test a timeout is a failure.
Exceptions raised by the predicate propagate at once (a broken probe is not a slow condition).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition was not true before its deadline."""


def _timeout_error(message: str, timeout: float, attempts: int, last: object) -> WaitTimeout:
    return WaitTimeout(
        f"{message} (not true after {timeout:.2f}s, {attempts} checks; last value: {last!r})"
    )


@overload
async def wait_for(
    predicate: Callable[[], Awaitable[T]],
    *,
    timeout: float,  # noqa: ASYNC109 - a deadline for the whole poll, not an I/O timeout
    interval: float = 0.02,
    message: str,
) -> T: ...


@overload
async def wait_for(
    predicate: Callable[[], T],
    *,
    timeout: float,  # noqa: ASYNC109 - a deadline for the whole poll, not an I/O timeout
    interval: float = 0.02,
    message: str,
) -> T: ...


async def wait_for(
    predicate: Callable[[], object],
    *,
    timeout: float,  # noqa: ASYNC109 - a deadline for the whole poll, not an I/O timeout
    interval: float = 0.02,
    message: str,
) -> object:
    """Await until ``predicate()`` (sync, or async returning an awaitable) is truthy.

    Returns the truthy value. The predicate is always checked at least once, and once more at
    the deadline, so a condition that became true during the last interval is not missed.
    """
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        attempts += 1
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timeout_error(message, timeout, attempts, value)
        await asyncio.sleep(min(interval, remaining))


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.02,
    message: str,
) -> T:
    """Block until ``predicate()`` is truthy and return its value (sync twin of ``wait_for``)."""
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        value = predicate()
        attempts += 1
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timeout_error(message, timeout, attempts, value)
        time.sleep(min(interval, remaining))
