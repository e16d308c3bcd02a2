"""LiveRegistry: one view of devices, residents and responders, fresh at the next message.

Against the real stores (both backends): a change committed by another connection (as
``scgw import`` does, in another process) moves the registry version, and the next check
sees it; while the database is away the last snapshot keeps answering."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.services.postgres import PostgresServer
from devices.codecs import DeviceAddress
from devices.dc09 import address as sia_address
from devices.models import DeviceType
from devices.records import DeviceRecord, ResidentRecord, ResponderRecord
from devices.serial_frame import address as serial_address
from gateway.registry import LiveRegistry
from gateway.storage.base import Store
from gateway.storage.factory import open_store


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Store, Store]]:
    """The gateway's store and a second one on the same database (the importer's)."""
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    ours, theirs = open_store(url), open_store(url)
    await ours.open()
    await theirs.open()
    yield ours, theirs
    await theirs.close()
    await ours.close()


async def test_a_change_committed_elsewhere_is_seen_at_the_next_check(
    stores: tuple[Store, Store],
) -> None:
    ours, theirs = stores
    registry = LiveRegistry(ours)
    await registry.load()
    assert registry.device("btn-1") is None

    await theirs.upsert_residents([ResidentRecord("r-1", "王阿姨", responders=("v-1",))])
    await theirs.upsert_responders([ResponderRecord("v-1", "李志愿", "volunteer")])
    await theirs.upsert_devices([DeviceRecord("btn-1", DeviceType.SOS_BUTTON, resident_id="r-1")])
    assert await registry.check()
    assert registry.known("btn-1")
    resident = registry.resident_of("btn-1")
    assert resident is not None
    assert resident.responders == ("v-1",)
    assert "v-1" in registry.responders

    # An assignment changed (no new row anywhere): seen too.
    await theirs.upsert_devices([DeviceRecord("btn-1", DeviceType.SOS_BUTTON, resident_id=None)])
    assert await registry.check()
    assert registry.resident_of("btn-1") is None


async def test_nothing_changed_means_no_reload(stores: tuple[Store, Store]) -> None:
    ours, _ = stores
    registry = LiveRegistry(ours)
    await registry.load()
    loads = registry.reloads
    for _ in range(5):
        assert await registry.check()
    assert registry.reloads == loads


async def test_check_after_reads_once_per_burst(stores: tuple[Store, Store]) -> None:
    ours, theirs = stores
    registry = LiveRegistry(ours)
    await registry.load()
    arrived = time.monotonic()
    await theirs.upsert_devices([DeviceRecord("btn-2", DeviceType.SOS_BUTTON)])
    assert await registry.check_after(arrived)
    assert registry.known("btn-2")
    # A later message that arrived before that check began needs no read of its own; one
    # that arrived after it does (it might follow another change).
    assert registry.checked_since >= arrived


async def test_source_addresses_resolve_both_ways(stores: tuple[Store, Store]) -> None:
    ours, theirs = stores
    await theirs.upsert_devices(
        [
            DeviceRecord("bus-btn", DeviceType.SOS_BUTTON, serial_port="bus1", serial_addr=0x1001),
            DeviceRecord("panel", DeviceType.SMOKE_DETECTOR, sia_account="1234"),
            DeviceRecord("zone-7", DeviceType.SMOKE_DETECTOR, sia_account="1234", sia_zone="7"),
            DeviceRecord("z-smoke", DeviceType.SMOKE_DETECTOR, zigbee_name="kitchen_smoke"),
        ]
    )
    registry = LiveRegistry(ours)
    await registry.load()
    assert registry.device_at(serial_address("bus1", 0x1001)) == "bus-btn"
    assert registry.device_at(DeviceAddress("zigbee2mqtt", ("kitchen_smoke",))) == "z-smoke"
    assert registry.device_at(sia_address("1234", "007")) == "zone-7"
    # A zone with no device of its own belongs to the account's device.
    assert registry.device_at(sia_address("1234", "3")) == "panel"
    assert registry.device_at(sia_address("9999", "3")) is None
    assert registry.device_at(DeviceAddress("mqtt", ("bus-btn",))) == "bus-btn"
    assert registry.device_at(DeviceAddress("mqtt", ("nobody",))) is None
    assert registry.address_of("bus-btn", "serial") == serial_address("bus1", 0x1001)
    # What the spool drain binds: a provisional id back to the device registered there.
    assert registry.registered_as(serial_address("bus1", 0x1001).pending_id()) == "bus-btn"
    assert registry.registered_as("bus-btn") == "bus-btn"
    assert registry.registered_as(serial_address("bus9", 1).pending_id()) is None


async def test_while_the_database_is_away_the_last_snapshot_answers(
    pg_owned_server: PostgresServer, tmp_path: Path
) -> None:
    url = await asyncio.to_thread(pg_owned_server.create_database, "registry_outage")
    store = open_store(url)
    await store.open()
    try:
        await store.upsert_devices([DeviceRecord("btn-1", DeviceType.SOS_BUTTON)])
        registry = LiveRegistry(store, check_timeout=1.0, retry_after=60.0)
        await registry.load()
        await asyncio.to_thread(pg_owned_server.stop)
        assert not await registry.check()
        assert not registry.current  # a miss now means "cannot tell"
        assert registry.known("btn-1")  # a known button still raises its alarm from memory
        # Not asked again until retry_after: an outage costs one failed read per interval.
        assert not await registry.check()
        await asyncio.to_thread(pg_owned_server.start)
    finally:
        await store.close()
