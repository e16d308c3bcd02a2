"""Words the API hands the dashboard in both languages (alert kinds come from
``alerts.messages``, so a notification and the desk always say the same thing)."""

from __future__ import annotations

from typing import Final

from alerts.messages import KIND_NAMES, PRIORITY_WORDS, format_address, kind_name
from alerts.models import Outcome, Priority
from devices.models import DeviceType
from gateway.http.api.models import Labels

DEVICE_TYPES: Final[dict[str, tuple[str, str]]] = {
    DeviceType.SOS_BUTTON: ("一键呼叫器", "SOS button"),
    DeviceType.PENDANT: ("紧急呼叫挂件", "Pendant"),
    DeviceType.SMOKE_DETECTOR: ("烟雾探测器", "Smoke detector"),
    DeviceType.GAS_DETECTOR: ("燃气探测器", "Gas detector"),
    DeviceType.CO_DETECTOR: ("一氧化碳探测器", "CO detector"),
    DeviceType.WATER_SENSOR: ("水浸传感器", "Water sensor"),
    DeviceType.DOOR_CONTACT: ("门磁", "Door contact"),
    DeviceType.MOTION_SENSOR: ("人体感应器", "Motion sensor"),
    DeviceType.TEMP_HUMIDITY: ("温湿度传感器", "Temperature/humidity"),
    DeviceType.HEALTH_BAND: ("健康手环", "Health band"),
}

OUTCOMES: Final[dict[str, tuple[str, str]]] = {
    Outcome.ASSISTED: ("已协助", "Assisted"),
    Outcome.FALSE_ALARM: ("误报", "False alarm"),
    Outcome.HOSPITAL: ("送医", "Taken to hospital"),
    Outcome.NO_ANSWER: ("无人应答", "No answer"),
    Outcome.OTHER: ("其他", "Other"),
}


def pair(words: tuple[str, str]) -> Labels:
    return Labels(zh=words[0], en=words[1])


def kind_labels(kind: str) -> Labels:
    return Labels(zh=kind_name(kind, "zh"), en=kind_name(kind, "en"))


def priority_labels(priority: Priority) -> Labels:
    return pair(PRIORITY_WORDS[priority])


def device_type_labels(device_type: str) -> Labels:
    words = DEVICE_TYPES.get(device_type)
    return pair(words) if words else Labels(zh=device_type, en=device_type)


def address_labels(building: str | None, unit: str | None, room: str | None) -> Labels:
    return Labels(
        zh=format_address(building, unit, room, "zh"),
        en=format_address(building, unit, room, "en"),
    )


def all_kinds() -> dict[str, Labels]:
    return {k: pair(v) for k, v in KIND_NAMES.items()}


def all_priorities() -> dict[str, Labels]:
    return {p.value: pair(w) for p, w in PRIORITY_WORDS.items()}


def all_outcomes() -> dict[str, Labels]:
    return {str(k): pair(v) for k, v in OUTCOMES.items()}


def all_device_types() -> dict[str, Labels]:
    return {str(k): pair(v) for k, v in DEVICE_TYPES.items()}
