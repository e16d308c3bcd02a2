"""FairQueue: devices served in turn, each device's own order kept."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.ingest.fair import FairQueue, device_key
from gateway.mqtt.lane import Inbound

T0 = datetime(2026, 11, 27, tzinfo=UTC)


def msg(device: str, n: int) -> Inbound:
    return Inbound(f"scgw/{device}/event", str(n).encode(), 1, n, 1, T0, 0.0)


def served(queue: FairQueue) -> list[tuple[str, int]]:
    out = []
    while (m := queue.pop()) is not None:
        out.append((device_key(m.topic), int(m.payload)))
    return out


def test_a_flooder_cannot_hold_up_another_device() -> None:
    queue = FairQueue()
    queue.extend(msg("flood", n) for n in range(1000))
    queue.extend([msg("btn-1", 1)])  # the press arrives behind a thousand flood events
    assert len(queue) == 1001
    first_two = [queue.pop(), queue.pop()]
    assert [device_key(m.topic) for m in first_two if m] == ["flood", "btn-1"]


def test_each_devices_order_is_kept_and_nothing_is_lost() -> None:
    queue = FairQueue()
    queue.extend([msg("a", 1), msg("a", 2), msg("b", 1), msg("a", 3), msg("b", 2)])
    assert served(queue) == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3)]
    assert len(queue) == 0


def test_push_front_retries_first_and_drain_returns_everything() -> None:
    queue = FairQueue()
    queue.extend([msg("a", 1), msg("b", 1), msg("b", 2)])
    first = queue.pop()
    assert first is not None
    queue.push_front(first)  # its handler failed: it goes first again
    assert queue.pop() == first
    assert [int(m.payload) for m in queue.drain()] == [1, 2]
    assert queue.pop() is None


def test_device_key_of_odd_topics() -> None:
    assert device_key("scgw/btn-1/event") == "btn-1"
    assert device_key("scgw/responders/v-1/reply") == "responders"
    assert device_key("weird") == "weird"
