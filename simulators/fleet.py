"""A simulated fleet: devices of every type with retained status, heartbeats carrying
random-walk telemetry, battery drain and occasional events, published as real devices do
(QoS 1 uplinks) — in the native ``scgw/{id}/…`` format or as zigbee2mqtt would publish them.

Connections. A real native device holds its own MQTT connection with a will (``status`` =
offline, retained), so the broker announces its death. That needs one connection per device;
those are cheap here (every paho client is driven by the asyncio loop, no thread each), but a
site-sized fleet of thousands would still be thousands of sockets on the broker. So the devices
whose silence matters most — SOS buttons and pendants by default (``FleetOptions.wills``), up
to ``max_wills`` — get their own connection and will; the rest publish through one shared
connection, like devices behind a concentrator, with a plain retained status. Zigbee devices
never talk MQTT themselves: the zigbee2mqtt bridge publishes their state and
``…/availability``, so they go through the shared connection too.

Power cut (``power_off``): a device with its own connection loses it without a DISCONNECT
(the broker publishes its will); a zigbee device is reported offline by the bridge; a device on
the shared connection just falls silent, and only its age tells the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from devices.models import DeviceType, EventType
from devices.records import DeviceRecord
from gateway.mqtt.address import BrokerAddress
from simulators.mqtt_client import new_client

log = logging.getLogger(__name__)

# What each kind of device measures, with a starting value and a random-walk step.
METRICS: dict[DeviceType, tuple[tuple[str, float, float], ...]] = {
    DeviceType.TEMP_HUMIDITY: (("temperature", 22.0, 0.2), ("humidity", 45.0, 1.0)),
    DeviceType.GAS_DETECTOR: (("gas_ppm", 3.0, 0.5),),
    DeviceType.CO_DETECTOR: (("co_ppm", 1.0, 0.3),),
    DeviceType.HEALTH_BAND: (("heart_rate", 72.0, 2.0),),
    DeviceType.SMOKE_DETECTOR: (("temperature", 21.0, 0.1),),
}
# Random walks stay in a plausible band: a simulated room must not drift into an alarm.
BOUNDS: dict[str, tuple[float, float]] = {
    "temperature": (16.0, 30.0),
    "humidity": (25.0, 70.0),
    "gas_ppm": (0.0, 10.0),
    "co_ppm": (0.0, 8.0),
    "heart_rate": (55.0, 100.0),
}
# Occasional events per device type (the demo's "life" in the building).
EVENTS: dict[DeviceType, EventType] = {
    DeviceType.SOS_BUTTON: EventType.SOS,
    DeviceType.PENDANT: EventType.SOS,
    DeviceType.DOOR_CONTACT: EventType.DOOR_OPEN,
    DeviceType.MOTION_SENSOR: EventType.MOTION,
}
# Device types that exist as Zigbee products (smoke, water, door… sensors and SOS buttons).
ZIGBEE_TYPES = frozenset(
    {
        DeviceType.SOS_BUTTON,
        DeviceType.SMOKE_DETECTOR,
        DeviceType.GAS_DETECTOR,
        DeviceType.CO_DETECTOR,
        DeviceType.WATER_SENSOR,
        DeviceType.DOOR_CONTACT,
        DeviceType.MOTION_SENSOR,
        DeviceType.TEMP_HUMIDITY,
    }
)
# zigbee2mqtt keeps these alarm keys in every state message while the alarm lasts.
ZIGBEE_ALARM_KEYS: dict[EventType, str] = {
    EventType.SMOKE: "smoke",
    EventType.GAS: "gas",
    EventType.CO: "carbon_monoxide",
    EventType.WATER_LEAK: "water_leak",
    EventType.TAMPER: "tamper",
    EventType.LOW_BATTERY: "battery_low",
}
ZIGBEE_IDLE_STATE: dict[DeviceType, dict[str, object]] = {
    DeviceType.SMOKE_DETECTOR: {"smoke": False, "tamper": False},
    DeviceType.GAS_DETECTOR: {"gas": False},
    DeviceType.CO_DETECTOR: {"carbon_monoxide": False},
    DeviceType.WATER_SENSOR: {"water_leak": False},
    DeviceType.DOOR_CONTACT: {"contact": True},
    DeviceType.MOTION_SENSOR: {"occupancy": False},
}
DEFAULT_WILLS = frozenset({DeviceType.SOS_BUTTON, DeviceType.PENDANT})
LOW_BATTERY = 15.0
CONNECT_TIMEOUT = 20.0
MISC_EVERY = 1.0  # keepalive pings and reconnects of every connection


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


# -- one paho client driven by the asyncio loop -------------------------------------------------
class LoopClient:
    """A paho client whose socket is watched by the asyncio loop (paho's external-loop API),
    so a fleet of connections needs no thread per connection. ``misc()`` must be called about
    once a second (keepalive, reconnect)."""

    def __init__(
        self,
        url: str,
        client_id: str,
        *,
        will: tuple[str, bytes] | None = None,
        inflight: int = 100,
        keepalive: int = 30,
        on_connect: Callable[[LoopClient], None] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._address = BrokerAddress.parse(url)
        self._keepalive = keepalive
        self._on_connect_cb = on_connect
        client = new_client(self._address, client_id)
        client.max_inflight_messages_set(inflight)
        client.max_queued_messages_set(0)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_publish = self._published
        self.client = client
        self.client_id = client_id
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self.wanted = False  # should be connected: reconnect when the connection drops
        self.sent = 0
        self.acked = 0
        self.idle = asyncio.Event()  # everything published so far is acknowledged
        self.idle.set()
        self._next_try = 0.0
        self._backoff = 1.0

    # paho's socket callbacks (called on the loop thread: every paho call happens there)
    def _socket_open(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._loop.add_reader(sock, self.client.loop_read)

    def _socket_close(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)

    def _register_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._loop.add_writer(sock, self.client.loop_write)

    def _unregister_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._loop.remove_writer(sock)

    def _connected(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("%s: broker refused the connection: %s", self.client_id, reason)
            return
        self._backoff = 1.0
        self.closed.clear()
        self.connected.set()
        if self._on_connect_cb is not None:
            self._on_connect_cb(self)

    def _disconnected(self, _c: mqtt.Client, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
        self.connected.clear()
        self.closed.set()

    def _published(self, *_: Any) -> None:
        self.acked += 1
        if self.acked >= self.sent:
            self.idle.set()

    # control
    def connect(self) -> None:
        """Start connecting. The TCP connect itself blocks the loop briefly: paho's external
        loop API has no asynchronous connect, and hopping to a thread would put the socket
        callbacks on that thread. Raises OSError when the broker is unreachable."""
        self.wanted = True
        self.client.connect(self._address.host, self._address.port, keepalive=self._keepalive)

    def misc(self) -> None:
        if self.client.socket() is not None:
            self.client.loop_misc()
            return
        if not self.wanted or time.monotonic() < self._next_try:
            return
        self._next_try = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, 10.0)
        try:
            self.client.reconnect()
        except OSError as exc:
            log.debug("%s: reconnect failed: %s", self.client_id, exc)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """QoS 1, as every uplink (on_publish then means the broker's PUBACK)."""
        self.sent += 1
        self.idle.clear()
        self.client.publish(topic, payload, qos=1, retain=retain)

    @property
    def outstanding(self) -> int:
        return self.sent - self.acked

    async def disconnect(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - bounded wait
        """A clean DISCONNECT: the broker discards the will."""
        self.wanted = False
        if self.client.socket() is None:
            return
        # Let the broker acknowledge what is in flight first: a DISCONNECT sent right after
        # a publish would leave it unacknowledged (and the summary would say so).
        if self.outstanding > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), timeout)
        self.client.disconnect()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closed.wait(), timeout)

    def drop(self) -> None:
        """Lose the connection the way a device losing power does: no DISCONNECT, so the
        broker publishes the will."""
        self.wanted = False
        sock = self.client.socket()
        if not isinstance(sock, socket.socket):  # not connected (or a websocket: not used)
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        # paho sees the end of the stream on its next read and closes its side.


# -- devices --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A device as the registry knows it."""

    device_id: str
    type: DeviceType
    zigbee_name: str | None = None
    building: str | None = None
    unit: str | None = None
    room: str | None = None

    @classmethod
    def from_record(cls, record: DeviceRecord) -> DeviceSpec:
        return cls(
            record.device_id,
            record.type,
            record.zigbee_name,
            record.building,
            record.unit,
            record.room,
        )

    @property
    def zigbee(self) -> bool:
        return self.zigbee_name is not None


@dataclass(slots=True)
class SimDevice:
    spec: DeviceSpec
    battery: float = 100.0
    seq: int = 0
    values: dict[str, float] = field(default_factory=dict)
    alarms: set[str] = field(default_factory=set)  # zigbee alarm keys currently true
    contact_closed: bool = True
    powered: bool = True
    heartbeats: bool = True  # False: a device a scenario only uses for its actions
    low_battery_sent: bool = False
    conn: LoopClient | None = None  # its own connection (with a will), if it has one

    @property
    def device_id(self) -> str:
        return self.spec.device_id

    @property
    def type(self) -> DeviceType:
        return self.spec.type


@dataclass(frozen=True, slots=True)
class FleetOptions:
    heartbeat: float = 10.0
    # Mean seconds between events for one device; SOS is rare, motion frequent. events=False
    # keeps the fleet quiet (scenarios make their own events).
    events: bool = True
    sos_every: float = 1800.0
    activity_every: float = 120.0
    battery_drain: float = 0.01  # mean % per heartbeat
    prefix: str = "scgw"
    zigbee_prefix: str = "zigbee2mqtt"
    wills: frozenset[DeviceType] = DEFAULT_WILLS
    max_wills: int = 1000
    client_prefix: str = "scgw-sim"


@dataclass(frozen=True, slots=True)
class FleetStats:
    devices: int
    powered: int
    own_connections: int
    connected: int
    zigbee: int
    sent: int
    acked: int
    events: int


class Fleet:
    def __init__(
        self,
        url: str,
        devices: Sequence[DeviceSpec],
        options: FleetOptions,
        *,
        quiet: Iterable[str] = (),
        rng: random.Random | None = None,
    ) -> None:
        """``quiet``: ids of devices that send no heartbeats or status (a scenario only
        uses them for its actions)."""
        self.url = url
        self.options = options
        self._rng = rng or random.Random()
        silent = set(quiet)
        self.devices: dict[str, SimDevice] = {}
        for spec in devices:
            self.devices[spec.device_id] = SimDevice(spec, heartbeats=spec.device_id not in silent)
        self.events = 0
        self._run_id = uuid.uuid4().hex[:6]
        self._shared: LoopClient | None = None
        self._misc: asyncio.Task[None] | None = None
        self._started = False

    # -- connections ------------------------------------------------------------------------
    def _wants_own_connection(self, device: SimDevice) -> bool:
        spec = device.spec
        return device.heartbeats and not spec.zigbee and spec.type in self.options.wills

    async def start(self) -> None:
        """Connect (shared connection, then each device's own), announce every device."""
        if self._started:
            return
        self._started = True
        opts = self.options
        self._shared = LoopClient(
            self.url,
            f"{opts.client_prefix}-fleet-{self._run_id}",
            inflight=1000,
            on_connect=lambda _c: self._announce_shared(),
        )
        self._shared.connect()
        own = [d for d in self.devices.values() if self._wants_own_connection(d)]
        for device in own[: opts.max_wills]:
            device.conn = self._device_client(device)
            device.conn.connect()
        self._misc = asyncio.create_task(self._misc_loop(), name="fleet-mqtt")
        clients = self.clients()
        await asyncio.wait_for(
            asyncio.gather(*(c.connected.wait() for c in clients)), CONNECT_TIMEOUT
        )

    def _device_client(self, device: SimDevice) -> LoopClient:
        opts = self.options
        will = (
            self._topic(device, "status"),
            orjson.dumps({"state": "offline"}),
        )
        return LoopClient(
            self.url,
            f"{opts.client_prefix}-{device.device_id}-{self._run_id}"[:64],
            will=will,
            keepalive=30,
            on_connect=partial(self._announce_own, device),
        )

    def _announce_own(self, device: SimDevice, _client: LoopClient) -> None:
        if device.powered:
            self._announce(device)

    def clients(self) -> list[LoopClient]:
        own = [d.conn for d in self.devices.values() if d.conn is not None]
        return ([self._shared] if self._shared is not None else []) + own

    async def _misc_loop(self) -> None:
        while True:
            for client in self.clients():
                client.misc()
            await asyncio.sleep(MISC_EVERY)

    async def stop(self) -> None:
        """Clean disconnects: no wills (the simulator stopped; the devices did not fail)."""
        if self._misc is not None:
            self._misc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._misc
            self._misc = None
        await asyncio.gather(*(c.disconnect() for c in self.clients()))

    # -- publishing -------------------------------------------------------------------------
    def _topic(self, device: SimDevice, kind: str) -> str:
        return f"{self.options.prefix}/{device.device_id}/{kind}"

    def _zigbee_topic(self, device: SimDevice, suffix: str = "") -> str:
        assert device.spec.zigbee_name is not None
        return f"{self.options.zigbee_prefix}/{device.spec.zigbee_name}{suffix}"

    def _client_of(self, device: SimDevice) -> LoopClient:
        if device.conn is not None:
            return device.conn
        assert self._shared is not None, "start() the fleet first"
        return self._shared

    def _announce_shared(self) -> None:
        for device in self.devices.values():
            if device.conn is None and device.heartbeats and device.powered:
                self._announce(device)

    def _announce(self, device: SimDevice) -> None:
        """Retained "online" (native) or availability (zigbee2mqtt bridge)."""
        client = self._client_of(device)
        if device.spec.zigbee:
            client.publish(
                self._zigbee_topic(device, "/availability"),
                orjson.dumps({"state": "online"}),
                retain=True,
            )
            return
        client.publish(
            self._topic(device, "status"),
            orjson.dumps({"state": "online", "fw": "1.0.0", "battery": round(device.battery)}),
            retain=True,
        )

    def _walk(self, device: SimDevice) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for name, start, step in METRICS.get(device.type, ()):
            low, high = BOUNDS.get(name, (float("-inf"), float("inf")))
            value = device.values.get(name, start) + self._rng.gauss(0.0, step)
            value = min(high, max(low, value))
            device.values[name] = value
            metrics[name] = round(value, 1)
        return metrics

    def heartbeat(self, device: SimDevice) -> None:
        if not device.powered:
            return
        device.seq += 1
        device.battery = max(
            0.0, device.battery - self._rng.uniform(0.0, 2 * self.options.battery_drain)
        )
        metrics = self._walk(device)
        if device.spec.zigbee:
            self._zigbee_state(device, metrics)
        else:
            body = {
                "battery": round(device.battery),
                "rssi": self._rng.randint(-90, -50),
                **metrics,
            }
            self._client_of(device).publish(
                self._topic(device, "telemetry"),
                orjson.dumps({"ts": now_iso(), "seq": device.seq, "metrics": body}),
            )
        if device.battery < LOW_BATTERY and not device.low_battery_sent:
            device.low_battery_sent = True
            self.event(device.device_id, EventType.LOW_BATTERY)

    def _zigbee_state(
        self, device: SimDevice, metrics: dict[str, float], extra: dict[str, object] | None = None
    ) -> None:
        """zigbee2mqtt publishes the whole cached state on every change or report."""
        state: dict[str, object] = dict(ZIGBEE_IDLE_STATE.get(device.type, {}))
        for key in device.alarms:
            state[key] = True
        if device.type is DeviceType.DOOR_CONTACT:
            state["contact"] = device.contact_closed
        state.update(
            {
                "battery": round(device.battery),
                "battery_low": device.battery < LOW_BATTERY,
                "linkquality": self._rng.randint(40, 200),
            }
        )
        for name in ("temperature", "humidity"):
            if name in metrics:
                state[name] = metrics[name]
        if extra:
            state.update(extra)
        self._client_of(device).publish(self._zigbee_topic(device), orjson.dumps(state))

    def maybe_event(self, device: SimDevice, dt: float) -> None:
        kind = EVENTS.get(device.type)
        if kind is None or not self.options.events or not device.powered:
            return
        mean = self.options.sos_every if kind is EventType.SOS else self.options.activity_every
        if self._rng.random() < dt / mean:
            if kind is EventType.DOOR_OPEN and not device.contact_closed:
                kind = EventType.DOOR_CLOSE
            self.event(device.device_id, kind)

    def event(self, device_id: str, kind: EventType, *, event_id: str | None = None) -> str | None:
        """Publish one event in the device's own format; returns its event id, or None when
        the device has no power (it cannot say anything)."""
        device = self.devices[device_id]
        if not device.powered:
            return None
        device.seq += 1
        self.events += 1
        event_id = event_id or uuid.uuid4().hex
        if device.spec.zigbee:
            self._zigbee_event(device, kind)
            return event_id
        self._client_of(device).publish(
            self._topic(device, "event"),
            orjson.dumps(
                {
                    "id": event_id,
                    "seq": device.seq,
                    "ts": now_iso(),
                    "type": kind.value,
                    "battery": round(device.battery),
                }
            ),
        )
        return event_id

    def _zigbee_event(self, device: SimDevice, kind: EventType) -> None:
        extra: dict[str, object] = {}
        if kind in (EventType.SOS, EventType.FALL):
            extra["action"] = "emergency"  # a press is not state: zigbee2mqtt sends it once
        elif kind in ZIGBEE_ALARM_KEYS:
            device.alarms.add(ZIGBEE_ALARM_KEYS[kind])
        elif kind is EventType.RESTORE:
            device.alarms.clear()
        elif kind in (EventType.DOOR_OPEN, EventType.DOOR_CLOSE):
            device.contact_closed = kind is EventType.DOOR_CLOSE
        elif kind is EventType.MOTION:
            extra["occupancy"] = True
        else:
            log.warning("%s: zigbee2mqtt has no way to say %s", device.device_id, kind.value)
            return
        self._zigbee_state(device, self._walk(device), extra)

    # -- power ------------------------------------------------------------------------------
    def power_off(self, device_ids: Iterable[str]) -> None:
        for device_id in device_ids:
            device = self.devices[device_id]
            if not device.powered:
                continue
            device.powered = False
            if device.conn is not None:
                device.conn.drop()  # the broker publishes the will
            elif device.spec.zigbee:
                # The bridge notices the device is gone and says so.
                self._client_of(device).publish(
                    self._zigbee_topic(device, "/availability"),
                    orjson.dumps({"state": "offline"}),
                    retain=True,
                )
            # else: on the shared connection, a dead device just says nothing any more.

    def power_on(self, device_ids: Iterable[str]) -> None:
        for device_id in device_ids:
            device = self.devices[device_id]
            if device.powered:
                continue
            device.powered = True
            if device.conn is not None:
                device.conn.wanted = True  # misc() reconnects; on_connect announces it
            else:
                self._announce(device)

    # -- running ----------------------------------------------------------------------------
    def stats(self) -> FleetStats:
        clients = self.clients()
        return FleetStats(
            devices=len(self.devices),
            powered=sum(1 for d in self.devices.values() if d.powered),
            own_connections=sum(1 for d in self.devices.values() if d.conn is not None),
            connected=sum(1 for c in clients if c.connected.is_set()),
            zigbee=sum(1 for d in self.devices.values() if d.spec.zigbee),
            sent=sum(c.sent for c in clients),
            acked=sum(c.acked for c in clients),
            events=self.events,
        )

    async def run(self) -> None:
        """Connect, then spread heartbeats evenly over the interval, forever."""
        await self.start()
        beating = [d for d in self.devices.values() if d.heartbeats]
        self._rng.shuffle(beating)  # every type shows up early, not in registry order
        if not beating:
            await asyncio.Event().wait()  # nothing periodic; stay until cancelled
        tick = self.options.heartbeat / len(beating)
        while True:
            for device in beating:
                self.heartbeat(device)
                self.maybe_event(device, self.options.heartbeat)
                await asyncio.sleep(tick)


# -- a synthetic fleet (no registry) ----------------------------------------------------------
# Shares of each type in a synthetic fleet, roughly those of the example community.
SYNTHETIC_MIX: tuple[tuple[DeviceType, float], ...] = (
    (DeviceType.SOS_BUTTON, 0.35),
    (DeviceType.SMOKE_DETECTOR, 0.25),
    (DeviceType.GAS_DETECTOR, 0.07),
    (DeviceType.CO_DETECTOR, 0.04),
    (DeviceType.WATER_SENSOR, 0.05),
    (DeviceType.DOOR_CONTACT, 0.06),
    (DeviceType.MOTION_SENSOR, 0.06),
    (DeviceType.TEMP_HUMIDITY, 0.05),
    (DeviceType.PENDANT, 0.04),
    (DeviceType.HEALTH_BAND, 0.03),
)
SHORT_NAMES: dict[DeviceType, str] = {
    DeviceType.SOS_BUTTON: "btn",
    DeviceType.PENDANT: "pendant",
    DeviceType.SMOKE_DETECTOR: "smoke",
    DeviceType.GAS_DETECTOR: "gas",
    DeviceType.CO_DETECTOR: "co",
    DeviceType.WATER_SENSOR: "water",
    DeviceType.DOOR_CONTACT: "door",
    DeviceType.MOTION_SENSOR: "motion",
    DeviceType.TEMP_HUMIDITY: "th",
    DeviceType.HEALTH_BAND: "band",
}
DEVICES_PER_BUILDING = 60


def synthetic_devices(
    count: int, *, zigbee_share: float = 0.2, id_prefix: str = "sim", seed: int = 1
) -> list[DeviceSpec]:
    """``count`` devices of every type (at least one of each when count allows), spread over
    buildings; ``zigbee_share`` of the Zigbee-capable ones are zigbee2mqtt devices."""
    rng = random.Random(seed)
    types: list[DeviceType] = [t for t, _ in SYNTHETIC_MIX][: max(0, count)]
    weights = [w for _, w in SYNTHETIC_MIX]
    while len(types) < count:
        types.append(rng.choices([t for t, _ in SYNTHETIC_MIX], weights)[0])
    specs = []
    for index, kind in enumerate(types):
        device_id = f"{id_prefix}-{SHORT_NAMES[kind]}-{index + 1:05d}"
        zigbee = kind in ZIGBEE_TYPES and rng.random() < zigbee_share
        building = str(index // DEVICES_PER_BUILDING + 1)
        specs.append(
            DeviceSpec(
                device_id,
                kind,
                zigbee_name=f"z2m_{device_id}" if zigbee else None,
                building=building,
                unit="1",
                room=str(101 + index % DEVICES_PER_BUILDING),
            )
        )
    return specs


def devices_csv(specs: Sequence[DeviceSpec]) -> str:
    """A devices sheet ``scgw import`` takes, so the gateway knows the synthetic fleet."""
    lines = ["device_id,type,name,resident_id,building,unit,room,zigbee_name"]
    for s in specs:
        lines.append(
            ",".join(
                (
                    s.device_id,
                    s.type.value,
                    f"simulated {s.type.value}",
                    "",
                    s.building or "",
                    s.unit or "",
                    s.room or "",
                    s.zigbee_name or "",
                )
            )
        )
    return "\n".join(lines) + "\n"
