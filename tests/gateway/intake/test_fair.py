"""FairQueue: devices served in turn, alarms first, each device's own order kept."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.intake.fair import FairQueue


@dataclass(frozen=True)
class Item:
    device: str
    n: int
    alarm: bool = False


def queue() -> FairQueue[Item]:
    return FairQueue(lambda i: i.device, lambda i: i.alarm)


def served(q: FairQueue[Item]) -> list[tuple[str, int]]:
    out = []
    while (item := q.pop()) is not None:
        out.append((item.device, item.n))
    return out


def test_a_flooder_cannot_hold_up_another_device() -> None:
    q = queue()
    q.extend(Item("flood", n) for n in range(1000))
    q.push(Item("btn-1", 1))  # the press arrives behind a thousand flood events
    assert len(q) == 1001
    first_two = [q.pop(), q.pop()]
    assert [i.device for i in first_two if i] == ["flood", "btn-1"]


def test_an_alarm_goes_before_every_device_whose_next_input_is_no_alarm() -> None:
    q = queue()
    q.extend(Item(f"door-{n}", 1) for n in range(500))  # chatter from 500 door contacts
    q.push(Item("smoke-1", 1, alarm=True))
    first = q.pop()
    assert first is not None
    assert first.device == "smoke-1"


def test_alarms_take_turns_among_themselves() -> None:
    q = queue()
    q.extend(Item("pendant-flood", n, alarm=True) for n in range(100))
    q.push(Item("btn-1", 1, alarm=True))
    assert [q.pop(), q.pop()] == [Item("pendant-flood", 0, True), Item("btn-1", 1, True)]


def test_each_devices_order_is_kept_even_when_a_later_input_is_an_alarm() -> None:
    q = queue()
    q.extend([Item("a", 1), Item("a", 2, alarm=True), Item("b", 1, alarm=True)])
    # b's head is an alarm and goes first; a's alarm stays behind a's own earlier input.
    assert served(q) == [("b", 1), ("a", 1), ("a", 2)]
    q.extend([Item("a", 1), Item("a", 2), Item("b", 1), Item("a", 3), Item("b", 2)])
    assert served(q) == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3)]
    assert len(q) == 0
    assert not q


def test_push_front_retries_first_and_drain_returns_everything() -> None:
    q = queue()
    q.extend([Item("a", 1), Item("b", 1), Item("b", 2)])
    first = q.pop()
    assert first is not None
    q.push_front(first)  # its handler failed: it goes first again
    assert q.pop() == first
    assert [i.n for i in q.drain()] == [1, 2]
    assert q.pop() is None
