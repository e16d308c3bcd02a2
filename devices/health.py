"""Device health (last seen, battery, online) derived from what a device sends."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from devices.models import DeviceHealth, DeviceState, Event, Status, Telemetry


def health_of(message: Event | Telemetry | Status) -> DeviceHealth:
    """What one message says about its device. Anything a device sends proves it online,
    except its own offline status (its will, published by the broker).

    ``last_seen`` is the gateway's receive time, never the device's clock (SPEC, Time): a
    device whose clock runs fast must not stay "seen" in the future, and a backlog replayed
    later must not make a device look silent."""
    if isinstance(message, Status):
        return DeviceHealth(
            device_id=message.device_id,
            last_seen=message.ts,
            battery=message.battery,
            online=message.state is DeviceState.ONLINE,
            fw=message.fw,
        )
    if isinstance(message, Event):
        return DeviceHealth(
            device_id=message.device_id,
            last_seen=message.received_at,
            battery=message.battery,
            online=True,
        )
    battery: int | None = None
    rssi: float | None = None
    for reading in message.readings:
        if reading.metric == "battery":
            battery = max(0, min(100, round(reading.value)))
        elif reading.metric == "rssi":
            rssi = reading.value
    return DeviceHealth(
        device_id=message.device_id,
        last_seen=message.received_at,
        battery=battery,
        online=True,
        rssi=rssi,
    )


def merge(old: DeviceHealth, new: DeviceHealth) -> DeviceHealth:
    """Combine two observations of one device: the newer one wins field by field."""
    if new.last_seen < old.last_seen:
        old, new = new, old
    return DeviceHealth(
        device_id=new.device_id,
        last_seen=new.last_seen,
        battery=new.battery if new.battery is not None else old.battery,
        online=new.online if new.online is not None else old.online,
        fw=new.fw if new.fw is not None else old.fw,
        rssi=new.rssi if new.rssi is not None else old.rssi,
    )


class HealthThrottle:
    """Which device-health updates are worth a database write.

    Every telemetry message refreshes its device's health; at the ingest target (15k msg/s
    from a few thousand devices) writing each one would be an upsert per message for a
    ``last_seen`` nobody reads at sub-second precision. A device's health is written when
    something a technician acts on changed (battery, online, firmware) at once, and otherwise
    at most every ``min_interval`` seconds — far below any offline timeout.
    """

    def __init__(
        self,
        min_interval: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_devices: int = 200_000,
    ) -> None:
        self._min_interval = min_interval
        self._clock = clock
        self._max_devices = max_devices
        self._written: dict[str, tuple[float, tuple[int | None, bool | None, str | None]]] = {}

    @staticmethod
    def _signature(h: DeviceHealth) -> tuple[int | None, bool | None, str | None]:
        return (h.battery, h.online, h.fw)

    def select(self, health: Iterable[DeviceHealth]) -> list[DeviceHealth]:
        now = self._clock()
        due = []
        for h in health:
            last = self._written.get(h.device_id)
            if last is None or now - last[0] >= self._min_interval or last[1] != self._signature(h):
                due.append(h)
        return due

    def written(self, health: Iterable[DeviceHealth]) -> None:
        """Record what was committed (call only after the write succeeded)."""
        if len(self._written) >= self._max_devices:
            self._written.clear()  # bounded; forgetting only means one early write each
        now = self._clock()
        for h in health:
            self._written[h.device_id] = (now, self._signature(h))
