"""Auto-responding volunteers: they receive alerts on the responder app topic and answer
through the app's reply topic (or the notification's one-tap link) after a human-like delay.

Modes: ``mixed`` (accept, now and then decline), ``accept``, ``decline``, and ``none`` — the
phones still receive every alert (the broker sees an app subscribed, so the gateway counts them
as reached) but nobody answers, which is what makes an alert escalate to the duty desk.
"""

from __future__ import annotations

import asyncio
import logging
import random
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from typing import Literal

import orjson
import paho.mqtt.client as mqtt

from gateway.mqtt.address import BrokerAddress
from simulators.mqtt_client import new_client

log = logging.getLogger(__name__)

Mode = Literal["mixed", "accept", "decline", "none"]
Via = Literal["mqtt", "link"]
MODES: tuple[Mode, ...] = ("mixed", "accept", "decline", "none")
LINK_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class ResponderOptions:
    url: str
    prefix: str = "scgw"
    min_delay: float = 3.0
    max_delay: float = 20.0
    decline_share: float = 0.2
    mode: Mode = "mixed"
    via: Via = "mqtt"
    client_id: str | None = None  # default: unique per run (two simulators must not collide)


class AutoResponders:
    def __init__(self, options: ResponderOptions, rng: random.Random | None = None) -> None:
        self.options = options
        self._rng = rng or random.Random()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.ready = asyncio.Event()  # subscribed: from now on every alert is seen
        self.received = 0
        self.answered = 0
        self.actions: Counter[str] = Counter()

    def set_mode(
        self,
        mode: Mode,
        delays: tuple[float, float] | None = None,
        decline_share: float | None = None,
    ) -> None:
        """Change how alerts still to come (and those still being "read") are answered."""
        opts = replace(self.options, mode=mode)
        if delays is not None:
            opts = replace(opts, min_delay=delays[0], max_delay=delays[1])
        if decline_share is not None:
            opts = replace(opts, decline_share=decline_share)
        self.options = opts

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        address = BrokerAddress.parse(self.options.url)
        client_id = self.options.client_id or f"scgw-sim-responders-{uuid.uuid4().hex[:8]}"
        client = new_client(address, client_id)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
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

    def _on_subscribe(self, *_: object) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.ready.set)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        if (
            len(parts) != 4
            or parts[0] != self.options.prefix
            or parts[1:4:2]
            != [
                "responders",
                "alerts",
            ]
        ):
            # The demo's embedded broker (amqtt) has been seen handing this subscription the
            # devices' retained status messages; only the app topic is an alert.
            log.debug("simulated responders: ignored a message on %s", msg.topic)
            return
        responder_id = parts[2]
        try:
            data = orjson.loads(msg.payload)
            alert_id = str(data["alert_id"])
            link = data.get("accept_url")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            log.warning("simulated responder %s: unreadable alert on %s", responder_id, msg.topic)
            return
        link = link if isinstance(link, str) else None
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._schedule, responder_id, alert_id, link)

    def _schedule(self, responder_id: str, alert_id: str, link: str | None) -> None:
        self.received += 1
        task = asyncio.create_task(self._answer(responder_id, alert_id, link))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _choose(self) -> str | None:
        mode = self.options.mode
        if mode == "none":
            return None
        if mode == "mixed":
            return "decline" if self._rng.random() < self.options.decline_share else "accept"
        return mode

    async def _answer(self, responder_id: str, alert_id: str, link: str | None) -> None:
        opts = self.options
        if opts.mode == "none":
            return  # read, never answered
        await asyncio.sleep(self._rng.uniform(opts.min_delay, opts.max_delay))  # "reading"
        action = self._choose()  # the mode may have changed while reading
        if action is None or self._client is None:
            return
        if self.options.via == "link" and link is not None:
            status = await asyncio.to_thread(_post_link, link, action)
            log.info(
                "simulated %s: %s alert %s by link (%s)", responder_id, action, alert_id, status
            )
        else:
            self._client.publish(
                f"{opts.prefix}/responders/{responder_id}/reply",
                orjson.dumps({"alert_id": alert_id, "action": action}),
                qos=1,
            )
            log.info("simulated %s: %s alert %s", responder_id, action, alert_id)
        self.answered += 1
        self.actions[action] += 1


def _post_link(url: str, action: str) -> int | str:
    """POST the one-tap link as the phone's browser would (a form with ``action``)."""
    body = urllib.parse.urlencode({"action": action}).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=LINK_TIMEOUT) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:  # 409 taken / used, 410 expired: a real outcome
        return exc.code
    except (urllib.error.URLError, OSError) as exc:
        return f"unreachable: {exc}"
