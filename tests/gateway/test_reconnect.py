from __future__ import annotations

from gateway.reconnect import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_delays_grow_to_the_maximum_with_jitter_below_the_step() -> None:
    backoff = Backoff(first=1.0, maximum=8.0, clock=Clock())
    delays = [backoff.next_delay() for _ in range(6)]
    steps = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    for delay, step in zip(delays, steps, strict=True):
        assert step * 0.5 <= delay <= step


def test_a_connection_that_stayed_up_starts_again_from_the_first_delay() -> None:
    clock = Clock()
    backoff = Backoff(first=1.0, maximum=8.0, stable_after=10.0, clock=clock)
    for _ in range(4):
        backoff.next_delay()
    backoff.opened()
    clock.now += 11.0
    assert backoff.next_delay() <= 1.0


def test_a_connection_that_drops_at_once_keeps_backing_off() -> None:
    clock = Clock()
    backoff = Backoff(first=1.0, maximum=8.0, stable_after=10.0, clock=clock)
    for _ in range(3):
        backoff.next_delay()
    backoff.opened()
    clock.now += 1.0
    assert backoff.next_delay() >= 4.0
