"""Device health (last seen, battery, online) derived from what a device sends."""

from __future__ import annotations

from devices.models import DeviceHealth, DeviceState, Event, Status, Telemetry


def health_of(message: Event | Telemetry | Status) -> DeviceHealth:
    """What one message says about its device. Anything a device sends proves it online,
    except its own offline status (its will, published by the broker)."""
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
            last_seen=message.ts,
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
        last_seen=message.ts,
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
