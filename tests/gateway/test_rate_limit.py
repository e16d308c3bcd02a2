"""Per-device token bucket: a flood is cut at the burst, other devices are untouched."""

from __future__ import annotations

from gateway.rate_limit import DeviceRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_flood_is_cut_and_others_pass() -> None:
    clock = Clock()
    limiter = DeviceRateLimiter(rate=10, burst=50, clock=clock)
    allowed = sum(limiter.allow("flooder") for _ in range(1000))
    assert allowed == 50
    assert limiter.allow("neighbour")
    assert limiter.flagged == {"flooder"}


def test_tokens_refill_at_rate() -> None:
    clock = Clock()
    limiter = DeviceRateLimiter(rate=10, burst=5, clock=clock)
    assert sum(limiter.allow("d") for _ in range(10)) == 5
    clock.now = 0.5  # 5 tokens back
    assert sum(limiter.allow("d") for _ in range(10)) == 5
