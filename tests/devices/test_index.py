"""AddressIndex: reloads on a schedule and on a miss; while the registry cannot be read it
answers from memory and asks again only after ``recheck`` (a fake registry and clock)."""

from __future__ import annotations

import pytest

from devices.codecs import DeviceAddress
from devices.index import AddressIndex
from devices.models import DeviceType
from devices.records import DeviceRecord
from devices.zigbee2mqtt import SOURCE
from gateway.storage.base import StoreError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Registry:
    """The store's ``devices()``; ``down`` makes it fail like a stopped database."""

    def __init__(self, *names: str) -> None:
        self.records = [self.record(n) for n in names]
        self.down = False
        self.reads = 0

    @staticmethod
    def record(name: str) -> DeviceRecord:
        device_id = "dev-" + name.replace("/", "-").replace(" ", "-")
        return DeviceRecord(device_id, DeviceType.SMOKE_DETECTOR, zigbee_name=name)

    async def devices(self) -> list[DeviceRecord]:
        self.reads += 1
        if self.down:
            raise StoreError("database unavailable")
        return list(self.records)


def z(name: str) -> DeviceAddress:
    return DeviceAddress(SOURCE, (name,))


async def loaded(registry: Registry) -> tuple[AddressIndex, Clock]:
    clock = Clock()
    index = AddressIndex(registry, refresh=60, recheck=10, clock=clock)
    await index.load()
    return index, clock


async def test_known_address_needs_no_read_until_the_refresh() -> None:
    registry = Registry("kitchen")
    index, clock = await loaded(registry)
    assert not index.needs_load(z("kitchen"))
    assert await index.resolve(z("kitchen")) == "dev-kitchen"
    clock.now = 60
    assert index.needs_load(z("kitchen"))
    assert await index.resolve(z("kitchen")) == "dev-kitchen"
    assert registry.reads == 2


async def test_miss_reads_again_at_most_once_per_recheck() -> None:
    registry = Registry("kitchen")
    index, clock = await loaded(registry)
    clock.now = 5
    assert not index.needs_load(z("new"))  # read 5 s ago: a miss is "not registered"
    assert await index.resolve(z("new")) is None
    registry.records.append(Registry.record("new"))
    clock.now = 10
    assert await index.resolve(z("new")) == "dev-new"
    assert index.current


async def test_failed_read_keeps_memory_and_waits_recheck_before_trying_again() -> None:
    registry = Registry("kitchen")
    index, clock = await loaded(registry)
    registry.down = True
    clock.now = 60  # the periodic refresh is due
    assert index.needs_load(z("kitchen"))
    with pytest.raises(StoreError):
        await index.load()
    index.load_failed()
    assert not index.current  # a miss now means "cannot tell"
    assert index.cached(z("kitchen")) == "dev-kitchen"
    clock.now = 69
    assert not index.needs_load(z("kitchen"))
    assert not index.needs_load(z("unknown"))
    clock.now = 70
    assert index.needs_load(z("unknown"))
    registry.down = False
    await index.load()
    assert index.current
    assert not index.needs_load(z("kitchen"))


async def test_registered_as_finds_the_device_behind_a_provisional_id() -> None:
    registry = Registry("kitchen", "floor1/bath leak")
    index, clock = await loaded(registry)
    assert await index.registered_as(z("kitchen").pending_id()) == "dev-kitchen"
    assert await index.registered_as(z("floor1/bath leak").pending_id()) == "dev-floor1-bath-leak"
    assert await index.registered_as(z("stray").pending_id()) is None
    assert registry.reads == 1  # the read at start is recent enough
    registry.records.append(Registry.record("late"))
    clock.now = 10
    assert await index.registered_as(z("late").pending_id()) == "dev-late"
    registry.down = True
    clock.now = 20
    with pytest.raises(StoreError):  # the drain retries when the database answers
        await index.registered_as(z("late").pending_id())
