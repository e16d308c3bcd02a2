"""UrgentGate: bulk work steps aside while event-path work is in progress."""

from __future__ import annotations

import asyncio

from gateway.priority import UrgentGate


async def test_bulk_waits_while_urgent_work_runs() -> None:
    gate = UrgentGate()
    changes: list[bool] = []
    gate.on_change(changes.append)
    order: list[str] = []
    release = asyncio.Event()

    async def press() -> None:
        with gate.urgent():
            order.append("press starts")
            await release.wait()
            order.append("press done")

    async def bulk() -> None:
        for n in range(3):
            await gate.step_aside()
            order.append(f"bulk {n}")

    presser = asyncio.create_task(press())
    await asyncio.sleep(0)  # the press begins first
    bulker = asyncio.create_task(bulk())
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == ["press starts"]  # bulk is parked, not spinning
    release.set()
    await asyncio.gather(presser, bulker)
    assert order == ["press starts", "press done", "bulk 0", "bulk 1", "bulk 2"]
    assert changes == [True, False]


async def test_nested_urgent_work_releases_once_all_done() -> None:
    gate = UrgentGate()
    changes: list[bool] = []
    gate.on_change(changes.append)
    with gate.urgent():
        with gate.urgent():
            assert gate.active
        assert gate.active
    assert not gate.active
    assert changes == [True, False]
    assert gate.entered == 2


async def test_urgent_work_that_fails_still_releases() -> None:
    gate = UrgentGate()
    try:
        with gate.urgent():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert not gate.active
    await asyncio.wait_for(gate.step_aside(), 1)
