"""Which source addresses a registered device is known by: (serial port, addr), zigbee name,
SIA account (+ zone). The runtime's registry (gateway/registry.py) indexes them both ways."""

from __future__ import annotations

from devices.codecs import DeviceAddress
from devices.dc09 import address as sia_address
from devices.records import DeviceRecord
from devices.serial_frame import address as serial_address
from devices.zigbee2mqtt import SOURCE as ZIGBEE_SOURCE


def addresses_of(record: DeviceRecord) -> list[DeviceAddress]:
    out: list[DeviceAddress] = []
    if record.serial_port is not None and record.serial_addr is not None:
        out.append(serial_address(record.serial_port, record.serial_addr))
    if record.zigbee_name is not None:
        out.append(DeviceAddress(ZIGBEE_SOURCE, (record.zigbee_name,)))
    if record.sia_account is not None:
        out.append(sia_address(record.sia_account, record.sia_zone))
    return out
