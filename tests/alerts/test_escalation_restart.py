"""Escalation timers live in the database: SIGKILL the gateway between two steps, start it
again, and the next step runs on time, once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.models import Alert
from gateway.storage.factory import open_store
from tests.alerts.conftest import seed_community
from tests.gateway.conftest import Publisher
from tests.harness.gateway_process import GatewayProcess
from tests.harness.mosquitto import MosquittoServer
from tests.harness.ports import free_port
from tests.harness.waiting import wait_for
from tests.harness.webhook import Receiver


@pytest.fixture
def gateway_process(
    mosquitto: MosquittoServer, db_url: str, tmp_path: Path
) -> Iterator[GatewayProcess]:
    port = free_port()
    config = tmp_path / "scgw.toml"
    config.write_text(
        f'[mqtt]\nurl = "{mosquitto.url}"\nclient_id = "gw-escalate"\n'
        f'[database]\nurl = "{db_url}"\n'
        f'[http]\nbind = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n'
        '[[alerts.policies.P1.steps]]\ntargets = ["assigned"]\nack_timeout = "3s"\n'
        '[[alerts.policies.P1.steps]]\ntargets = ["role:duty"]\nack_timeout = "10m"\n',
        encoding="utf-8",
    )
    proc = GatewayProcess(config, tmp_path / "gateway.log", port)
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.kill()


@pytest.mark.fault(
    "Gateway SIGKILLed between two escalation steps",
    checks="after restart the next step runs once: none lost, none doubled",
)
async def test_sigkill_between_steps_neither_loses_nor_doubles_the_escalation(
    mosquitto: MosquittoServer, db_url: str, phones: Receiver, gateway_process: GatewayProcess
) -> None:
    await seed_community(db_url, phones)
    observer = open_store(db_url)
    await observer.open()
    publisher = Publisher(mosquitto.url)
    try:
        gateway_process.start()
        await wait_for(gateway_process.ready, timeout=30, message="gateway ready")
        publisher.json("scgw/btn-1/event", {"id": "night-1", "type": "sos"})
        await wait_for(lambda: phones.to("/v-1"), timeout=20, message="step 1: volunteer")

        async def first_step_done() -> Alert | None:
            alerts = await observer.list_alerts()  # type: ignore[attr-defined]
            return alerts[0] if alerts and alerts[0].step_index == 1 else None

        alert = await wait_for(first_step_done, timeout=10, message="step 1 finished")
        gateway_process.kill()  # the volunteer has not answered; the desk is next
        gateway_process.start()

        await wait_for(lambda: phones.to("/duty"), timeout=30, message="step 2: duty desk")

        async def second_step_done() -> Alert | None:
            got = await observer.get_alert(alert.id)  # type: ignore[attr-defined]
            return got if got is not None and got.step_index == 2 else None

        await wait_for(second_step_done, timeout=10, message="step 2 finished")
        timeline = await observer.timeline(alert.id)  # type: ignore[attr-defined]
        steps = [json.loads(e.detail)["step"] for e in timeline if e.action == "step"]
        assert steps == [0, 1]
        assert len(phones.to("/v-1")) == 1
        assert len(phones.to("/duty")) == 1
        assert gateway_process.stop() == 0
    finally:
        publisher.close()
        await observer.close()
