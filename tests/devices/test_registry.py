"""The registry cache asks the store only on a miss, and at most once per recheck interval."""

from __future__ import annotations

from devices.registry import RegistryCache


class FakeLookup:
    """Pure-logic stand-in for the store (the real store is covered by the contract suite)."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.asked: list[str] = []

    async def known_device_ids(self) -> set[str]:
        return set(self.known)

    async def device_exists(self, device_id: str) -> bool:
        self.asked.append(device_id)
        return device_id in self.known


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_known_ids_need_no_lookup() -> None:
    store = FakeLookup({"a"})
    cache = RegistryCache(store, recheck=10, clock=Clock())
    await cache.load()
    assert await cache.is_known("a")
    assert store.asked == []


async def test_unknown_is_rechecked_after_interval_and_then_adopted() -> None:
    store = FakeLookup(set())
    clock = Clock()
    cache = RegistryCache(store, recheck=10, clock=clock)
    await cache.load()
    assert not await cache.is_known("new")
    assert not await cache.is_known("new")
    assert store.asked == ["new"]  # the second answer came from the cache
    store.known.add("new")  # imported by `scgw import` in another process
    clock.now = 11
    assert await cache.is_known("new")
    assert cache.cached("new") is True


async def test_negative_cache_is_bounded() -> None:
    store = FakeLookup(set())
    cache = RegistryCache(store, recheck=10, clock=Clock())
    cache.MAX_NEGATIVE = 5
    for i in range(20):
        await cache.is_known(f"junk-{i}")
    assert cache.cached("junk-0") is None
    assert cache.cached("junk-19") is False
