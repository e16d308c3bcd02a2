"""The words of a notification: what a volunteer reads on a phone lock screen.

Chinese (zh-CN) by default, English on request. Three sizes: ``title`` (a chat card's
heading), ``body`` (everything a helper needs before walking over: who, where, phone, health
notes, family, when, the link) and ``short`` (an SMS-sized line whose accept link is never cut).
Times are shown in Asia/Shanghai local time, whatever zone the alert was stored in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alerts.models import Alert, Priority
from devices.records import DeviceRecord, ResidentRecord

Lang = Literal["zh", "en"]

try:
    LOCAL_TZ: timezone | ZoneInfo = ZoneInfo("Asia/Shanghai")
except ZoneInfoNotFoundError:  # a slim container without tzdata: China has no DST, so +8 is exact
    LOCAL_TZ = timezone(timedelta(hours=8), "CST")

# The text part of ``short`` (everything but the link). One GSM-7/UCS-2 SMS holds 70 Chinese
# characters; with the link an SMS gateway splits into two or three parts, which is acceptable,
# but the text must stay a glance.
SHORT_TEXT_MAX = 60

KIND_NAMES: dict[str, tuple[str, str]] = {
    "sos": ("紧急呼叫", "Emergency call"),
    "fall": ("跌倒", "Fall detected"),
    "smoke": ("烟雾报警", "Smoke alarm"),
    "gas": ("燃气泄漏", "Gas leak"),
    "co": ("一氧化碳", "Carbon monoxide"),
    "water_leak": ("漏水", "Water leak"),
    "high_temp": ("高温", "High temperature"),
    "welfare_check": ("关怀探访：长时间无活动", "Welfare check: no activity"),
    "device_offline": ("设备离线", "Device offline"),
    "low_battery": ("低电量", "Low battery"),
    "tamper": ("防拆报警", "Tamper"),
    "abnormal_heart_rate": ("心率异常", "Abnormal heart rate"),
    "door_open": ("门已打开", "Door open"),
    "motion": ("有活动", "Motion"),
    "unknown_device_sos": ("未登记设备呼叫", "SOS from an unregistered device"),
    "unregistered_device": ("未登记设备报警", "Alarm from an unregistered device"),
}

PRIORITY_WORDS: dict[Priority, tuple[str, str]] = {
    Priority.P1: ("紧急", "EMERGENCY"),
    Priority.P2: ("重要", "URGENT"),
    Priority.P3: ("维护", "Maintenance"),
}

_LABELS: dict[str, tuple[str, str]] = {
    "resident": ("居民", "Resident"),
    "address": ("地址", "Address"),
    "phone": ("电话", "Phone"),
    "medical": ("健康备注", "Medical notes"),
    "contacts": ("紧急联系人", "Emergency contacts"),
    "device": ("设备", "Device"),
    "time": ("时间", "Time"),
    "reading": ("读数", "Reading"),
    "alert": ("告警编号", "Alert"),
    "accept": ("一键接单", "Accept"),
    "decline": ("无法前往", "Decline"),
    "lives_alone": ("独居", "lives alone"),
    "repeats": ("已呼叫{n}次", "{n} calls"),
    "unknown_resident": ("未登记居民", "no resident on record"),
}


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    body: str
    short: str
    lang: Lang = "zh"


def _pick(pair: tuple[str, str], lang: Lang) -> str:
    return pair[1] if lang == "en" else pair[0]


def label(key: str, lang: Lang) -> str:
    return _pick(_LABELS[key], lang)


def kind_name(kind: str, lang: Lang = "zh") -> str:
    """The kind in words; an unknown kind is shown as it is (never hidden)."""
    pair = KIND_NAMES.get(kind)
    return _pick(pair, lang) if pair else kind


def priority_word(priority: Priority, lang: Lang = "zh") -> str:
    return _pick(PRIORITY_WORDS[priority], lang)


def local_time(at: datetime) -> datetime:
    """``at`` in Asia/Shanghai; a naive time is taken as UTC (how the stores keep time)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(LOCAL_TZ)


def format_time(at: datetime, *, with_date: bool = True) -> str:
    local = local_time(at)
    return local.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M")


def format_address(
    building: str | None, unit: str | None, room: str | None, lang: Lang = "zh"
) -> str:
    """``3号楼1单元201`` (zh) or ``Bldg 3, Unit 1, Room 201`` (en); staff's own words (``A座``,
    ``东区7栋``) are kept as written."""
    b, u, r = (part.strip() if part else "" for part in (building, unit, room))
    if lang == "en":
        parts = [f"Bldg {b}" if b else "", f"Unit {u}" if u else "", f"Room {r}" if r else ""]
        return ", ".join(p for p in parts if p)
    return (f"{b}号楼" if b.isdigit() else b) + (f"{u}单元" if u.isdigit() else u) + r


def address_of(
    resident: ResidentRecord | None, device: DeviceRecord | None, lang: Lang = "zh"
) -> str:
    """The resident's home; the device's own place when it has no resident (a corridor
    detector) or the resident's record lacks it."""
    r, d = resident, device
    return format_address(
        (r.building if r else None) or (d.building if d else None),
        (r.unit if r else None) or (d.unit if d else None),
        (r.room if r else None) or (d.room if d else None),
        lang,
    )


def _reading(alert: Alert) -> str | None:
    """``gas_ppm 62`` when the alert was opened by a reading over a threshold."""
    try:
        detail = json.loads(alert.detail)
    except ValueError:
        return None
    if not isinstance(detail, dict):
        return None
    metric, value = detail.get("metric"), detail.get("value")
    if isinstance(metric, str) and isinstance(value, int | float) and not isinstance(value, bool):
        return f"{metric} {value:g}"
    return None


def _device_text(device: DeviceRecord | None, alert: Alert) -> str | None:
    if device is not None:
        return f"{device.name} ({device.device_id})" if device.name else device.device_id
    return alert.device_id


def headline(alert: Alert, lang: Lang = "zh") -> str:
    """``【紧急】紧急呼叫`` / ``[EMERGENCY] Emergency call``."""
    word = priority_word(alert.priority, lang)
    kind = kind_name(alert.kind, lang)
    return f"[{word}] {kind}" if lang == "en" else f"【{word}】{kind}"


def render(
    alert: Alert,
    resident: ResidentRecord | None,
    device: DeviceRecord | None,
    *,
    lang: Lang = "zh",
    accept_url: str | None,
    decline_url: str | None,
) -> Message:
    """The notification text of ``alert`` for one recipient."""
    sep = ": " if lang == "en" else "："
    head = headline(alert, lang)
    address = address_of(resident, device, lang)
    who = resident.name if resident else None
    place = " ".join(p for p in (who, address) if p)
    title = f"{head} · {place}" if place else head

    lines = [head]
    if alert.count > 1:
        lines[0] += f" ({label('repeats', lang).format(n=alert.count)})"
    if resident is not None:
        name = resident.name
        if resident.lives_alone:
            name += f" ({label('lives_alone', lang)})" if lang == "en" else "（独居）"
        lines.append(f"{label('resident', lang)}{sep}{name}")
    else:
        lines.append(f"{label('resident', lang)}{sep}{label('unknown_resident', lang)}")
    if address:
        lines.append(f"{label('address', lang)}{sep}{address}")
    if resident is not None and resident.phone:
        lines.append(f"{label('phone', lang)}{sep}{resident.phone}")
    if resident is not None and resident.medical_notes:
        lines.append(f"{label('medical', lang)}{sep}{resident.medical_notes}")
    if resident is not None and resident.contacts:
        joiner = "; " if lang == "en" else "；"
        contacts = joiner.join(f"{c.name} {c.phone}".strip() for c in resident.contacts)
        lines.append(f"{label('contacts', lang)}{sep}{contacts}")
    device_text = _device_text(device, alert)
    if device_text:
        lines.append(f"{label('device', lang)}{sep}{device_text}")
    reading = _reading(alert)
    if reading:
        lines.append(f"{label('reading', lang)}{sep}{reading}")
    lines.append(f"{label('time', lang)}{sep}{format_time(alert.opened_at)}")
    lines.append(f"{label('alert', lang)}{sep}{alert.id}")
    if accept_url:
        lines.append(f"{label('accept', lang)}{sep}{accept_url}")
    if decline_url and decline_url != accept_url:
        lines.append(f"{label('decline', lang)}{sep}{decline_url}")

    return Message(
        title=title,
        body="\n".join(lines),
        short=_short(alert, resident, address, lang, accept_url),
        lang=lang,
    )


def _clip(text: str, room: int) -> str:
    if room <= 0:
        return ""
    return text if len(text) <= room else text[: max(room - 1, 0)] + "…"


def _short(
    alert: Alert,
    resident: ResidentRecord | None,
    address: str,
    lang: Lang,
    accept_url: str | None,
) -> str:
    """Headline, then name, address, phone and time as far as ``SHORT_TEXT_MAX`` allows (the
    most useful first); the accept link is always whole."""
    text = headline(alert, lang)
    optional = [
        resident.name if resident else "",
        address,
        resident.phone if resident and resident.phone else "",
        format_time(alert.opened_at, with_date=False),
    ]
    for index, part in enumerate(optional):
        if not part:
            continue
        room = SHORT_TEXT_MAX - len(text) - 1
        if len(part) <= room:
            text += " " + part
        elif index == 1 and room >= 6:
            # An address cut short still says the building; a cut phone number says nothing.
            text += " " + _clip(part, room)
    text = _clip(text, SHORT_TEXT_MAX)
    if accept_url:
        text += (" Tap: " if lang == "en" else " 接单：") + accept_url
    return text


# -- what happened since the page -------------------------------------------------------------
UPDATE_WORDS: dict[str, tuple[str, str]] = {
    "assigned": ("已指派给您", "ASSIGNED TO YOU"),
    "taken": ("已有人接单", "TAKEN"),
    "resolved": ("已处理完毕", "RESOLVED"),
    "cancelled": ("已取消", "CANCELLED"),
}
_UPDATE_LINES: dict[str, tuple[str, str]] = {
    "assigned": (
        "值班台已将此告警指派给您，请尽快前往。",
        "The desk assigned this alert to you; please go now.",
    ),
    "taken": ("{who} 已接单，您无需前往。", "Taken by {who}; you need not go."),
    "resolved": ("此告警已处理完毕，无需再前往。", "This alert is closed; no need to go."),
    "cancelled": ("此告警已取消，无需前往。", "This alert was cancelled; no need to go."),
}
OUTCOME_WORDS: dict[str, tuple[str, str]] = {
    "assisted": ("已协助", "assisted"),
    "false_alarm": ("误报", "false alarm"),
    "hospital": ("已送医", "taken to hospital"),
    "no_answer": ("无人应答", "no answer"),
    "other": ("其他", "other"),
}


def render_update(
    alert: Alert,
    resident: ResidentRecord | None,
    device: DeviceRecord | None,
    update: str,
    *,
    lang: Lang = "zh",
    who: str | None = None,
) -> Message:
    """A short follow-up to a page: ``assigned`` (with everything a helper needs, like a
    page), ``taken`` (by ``who``), ``resolved`` or ``cancelled``."""
    word = _pick(UPDATE_WORDS[update], lang)
    sep = ": " if lang == "en" else "："
    kind = kind_name(alert.kind, lang)
    address = address_of(resident, device, lang)
    place = " ".join(p for p in ((resident.name if resident else None), address) if p)
    head = f"[{word}] {kind}" if lang == "en" else f"【{word}】{kind}"
    title = f"{head} · {place}" if place else head
    line = _pick(_UPDATE_LINES[update], lang).format(
        who=who or ("someone" if lang == "en" else "其他人")
    )
    if update == "resolved" and alert.outcome is not None:
        outcome = _pick(
            OUTCOME_WORDS.get(alert.outcome.value, (alert.outcome, alert.outcome)), lang
        )
        line += f" ({outcome})" if lang == "en" else f"（{outcome}）"
    if update == "assigned":
        page = render(alert, resident, device, lang=lang, accept_url=None, decline_url=None)
        body = f"{head}\n{line}\n" + "\n".join(page.body.split("\n")[1:])
    else:
        body = "\n".join(
            [head, line, f"{label('alert', lang)}{sep}{alert.id}"]
            + ([f"{label('address', lang)}{sep}{address}"] if address else [])
        )
    short = _clip(f"{head} {place} {line}".strip(), SHORT_TEXT_MAX + 20)
    return Message(title=title, body=body, short=short, lang=lang)
