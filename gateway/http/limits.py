"""Rate limits of the HTTP surface (login, accept links) and their Prometheus counter.

A token bucket per key (a client address, a user name) that can be looked at before it is
spent: the login checks both buckets first and spends the user's only on a failed attempt,
so a user who types the token right is not slowed by someone guessing at the same name from
elsewhere until that someone has used up the name's allowance.
"""

from __future__ import annotations

import math
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from prometheus_client import Counter

from gateway.metrics import Metrics

MAX_KEYS: Final = 100_000  # oldest keys are forgotten first; bounds memory under a flood


class KeyedBucket:
    """``burst`` tries per key, refilled at ``per_minute`` a minute."""

    def __init__(
        self, *, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be > 0 and burst >= 1")
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _tokens(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (self._burst, now))
        return min(self._burst, tokens + (now - last) * self._rate)

    def retry_after(self, key: str) -> int:
        """0 when ``key`` may try now, else whole seconds until it may."""
        tokens = self._tokens(key, self._clock())
        if tokens >= 1.0:
            return 0
        return max(1, math.ceil((1.0 - tokens) / self._rate))

    def spend(self, key: str) -> None:
        now = self._clock()
        self._buckets[key] = (max(0.0, self._tokens(key, now) - 1.0), now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > MAX_KEYS:
            self._buckets.popitem(last=False)

    def take(self, key: str) -> int:
        """Spend one try if there is one: 0, or the seconds to wait (nothing spent)."""
        wait = self.retry_after(key)
        if wait == 0:
            self.spend(key)
        return wait


_COUNTERS: weakref.WeakKeyDictionary[Metrics, Counter] = weakref.WeakKeyDictionary()


def limited_counter(metrics: Metrics) -> Counter:
    """``scgw_http_rate_limited_total{route, by}``: requests answered 429, on the gateway's
    own registry (one counter per registry, however many apps are built on it)."""
    counter = _COUNTERS.get(metrics)
    if counter is None:
        counter = Counter(
            "scgw_http_rate_limited",
            "HTTP requests refused with 429, by route and by what was limited",
            ["route", "by"],
            registry=metrics.registry,
        )
        for route, by in (("login", "ip"), ("login", "user"), ("accept_link", "ip")):
            counter.labels(route=route, by=by)
        _COUNTERS[metrics] = counter
    return counter
