"""Auto-responding volunteers: they receive alerts on the responder app topic and answer
through the app's reply topic after a human-like delay (accept, or now and then decline)."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

import orjson
import paho.mqtt.client as mqtt

from gateway.mqtt.client import BrokerAddress, new_client

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ResponderOptions:
    url: str
    prefix: str = "scgw"
    min_delay: float = 3.0
    max_delay: float = 20.0
    decline_share: float = 0.2


class AutoResponders:
    def __init__(self, options: ResponderOptions, rng: random.Random | None = None) -> None:
        self.options = options
        self._rng = rng or random.Random()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.answered = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        address = BrokerAddress.parse(self.options.url)
        client = new_client(address, "scgw-sim-responders")
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.connect_async(address.host, address.port)
        client.loop_start()
        self._client = client

    async def stop(self) -> None:
        for task in list(self._pending):
            task.cancel()
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe(f"{self.options.prefix}/responders/+/alerts", qos=1)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        responder_id = msg.topic.split("/")[2]
        try:
            alert_id = str(orjson.loads(msg.payload)["alert_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("simulated responder %s got an unreadable alert", responder_id)
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._schedule, responder_id, alert_id)

    def _schedule(self, responder_id: str, alert_id: str) -> None:
        task = asyncio.create_task(self._answer(responder_id, alert_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _answer(self, responder_id: str, alert_id: str) -> None:
        opts = self.options
        await asyncio.sleep(self._rng.uniform(opts.min_delay, opts.max_delay))  # "reading"
        action = "decline" if self._rng.random() < opts.decline_share else "accept"
        if self._client is None:
            return
        self._client.publish(
            f"{opts.prefix}/responders/{responder_id}/reply",
            orjson.dumps({"alert_id": alert_id, "action": action}),
            qos=1,
        )
        self.answered += 1
        log.info("simulated %s: %s alert %s", responder_id, action, alert_id)
