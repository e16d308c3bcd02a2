"""Who is told, what they are told, and the notifier that tries their channels in order.

A recipient's channels are specs as staff wrote them: ``mqtt`` (the responder app) or any
Apprise URL. The notifier tries them in order, retrying each a few times with backoff, and
stops at the first success. "Success" means delivered to the broker or provider, never that a
person saw it: only an accept says that, and escalation runs on accepts, not on deliveries.

Specs carry secrets (webhook tokens, SMTP passwords, a contact's phone number in an SMS gateway
URL); everything that leaves this module (``Delivery.channel``, logs) carries the redacted form.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Protocol, TypeAlias
from urllib.parse import quote

from alerts.messages import (
    Lang,
    Message,
    address_of,
    format_time,
    kind_name,
    priority_word,
    render,
)
from alerts.models import Alert, Priority
from devices.records import Contact, DeviceRecord, ResidentRecord, ResponderRecord

log = logging.getLogger(__name__)

JsonValue: TypeAlias = str | int | float | bool | list["JsonValue"] | dict[str, "JsonValue"] | None


# -- redaction -------------------------------------------------------------------------------
_SCHEME = re.compile(r"\A([A-Za-z][A-Za-z0-9+.\-]*)://(.*)\Z", re.DOTALL)
_MASK = "***"


def _looks_secret(text: str) -> bool:
    """Webhook tokens, bot keys and app secrets (long, usually with digits), and phone
    numbers (a DingTalk URL may name whom to @). A false positive only hides a harmless path
    part; a false negative would leak a credential."""
    digits = sum(c.isdigit() for c in text)
    return len(text) >= 24 or (len(text) >= 12 and digits > 0) or (digits >= 7)


def _mask(text: str) -> str:
    # A few leading characters tell two long tokens apart in a timeline without revealing
    # anything usable (a 32+ character token minus 4 characters is still unguessable).
    return text[:4] + _MASK if len(text) >= 16 else _MASK


def _is_hostname(host: str) -> bool:
    return host == "localhost" or "." in host or host.startswith("[")


def redact_spec(spec: str) -> str:
    """A channel spec safe to log and show: passwords, query values and token-like hosts and
    path parts masked. ``json://u:pw@10.0.0.5:8080/hook?token=abc`` →
    ``json://u:***@10.0.0.5:8080/hook?token=***``; ``dingtalk://TOKEN/`` → ``dingtalk://TOKE***/``.
    """
    match = _SCHEME.match(spec.strip())
    if match is None:
        # Not a URL ("mqtt"): a bare word, nothing secret in it. Anything long is hidden.
        return spec if not _looks_secret(spec) else _mask(spec)
    scheme, rest = match.groups()
    rest = rest.split("#", 1)[0]
    rest, qmark, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")

    userinfo, at, hostport = netloc.rpartition("@")
    out = f"{scheme}://"
    if at:
        user, colon, _password = userinfo.partition(":")
        out += (_mask(user) if _looks_secret(user) else user) + (f":{_MASK}" if colon else "")
        out += "@"
    host, colon, port = hostport.rpartition(":") if not hostport.endswith("]") else ("", "", "")
    if not colon:
        host, port = hostport, ""
    if port and not port.isdigit():
        # "123456:ABC-def…" is a bot token, not host:port.
        out += _mask(hostport)
    else:
        out += host if _is_hostname(host) or not _looks_secret(host) else _mask(host)
        out += f":{port}" if colon else ""
    if slash:
        parts = path.split("/")
        out += "/" + "/".join(_mask(p) if _looks_secret(p) else p for p in parts)
    if qmark:
        keys = [item.split("=", 1)[0] for item in query.split("&") if item]
        out += "?" + "&".join(f"{k}={_MASK}" for k in keys)
    return out


# -- who and what ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Recipient:
    """One person to notify, with their channels in the order they are tried."""

    key: str  # "responder:v-1", "contact:r1:0"
    name: str
    phone: str | None = None
    role: str = "volunteer"
    responder_id: str | None = None  # None for family contacts (no app, no app topic)
    channels: tuple[str, ...] = ()
    lang: Lang = "zh"

    @classmethod
    def for_responder(cls, responder: ResponderRecord, *, lang: Lang = "zh") -> Recipient:
        """A responder. ``lang`` is the configured language (``[alerts] lang``); a responder
        whose record names their own (attribute ``lang`` = ``en``/``zh``) gets that one."""
        chosen: Lang = lang
        attr = dict(responder.attributes).get("lang", "").strip().lower()
        if attr.startswith("en"):
            chosen = "en"
        elif attr.startswith("zh"):
            chosen = "zh"
        return cls(
            key=f"responder:{responder.responder_id}",
            name=responder.name,
            phone=responder.phone,
            role=responder.role,
            responder_id=responder.responder_id,
            channels=tuple(c.strip() for c in responder.channels if c.strip()),
            lang=chosen,
        )

    @classmethod
    def for_contact(
        cls,
        resident_id: str,
        index: int,
        contact: Contact,
        *,
        channel_templates: Sequence[str] = (),
        lang: Lang = "zh",
    ) -> Recipient:
        """A resident's family contact. They have no app; ``channel_templates`` such as
        ``json://sms-gw.local/send?to={phone}`` (``[alerts] contact_channels``) reach their
        phone, with ``{phone}`` and ``{name}`` URL-encoded. No templates, or no phone: no
        channel, and the engine shows the contact to the duty desk instead."""
        channels: tuple[str, ...] = ()
        if contact.phone:
            channels = tuple(
                t.replace("{phone}", quote(contact.phone, safe="+")).replace(
                    "{name}", quote(contact.name, safe="")
                )
                for t in channel_templates
                if t.strip()
            )
        return cls(
            key=f"contact:{resident_id}:{index}",
            name=contact.name,
            phone=contact.phone or None,
            role="family",
            responder_id=None,
            channels=channels,
            lang=lang,
        )


@dataclass(frozen=True, slots=True)
class Notice:
    """What to send one recipient: the words, the links, and a JSON form for app channels."""

    alert_id: str
    kind: str
    priority: Priority
    message: Message
    accept_url: str | None = None
    decline_url: str | None = None
    data: Mapping[str, JsonValue] = field(default_factory=dict)


def resident_summary(
    resident: ResidentRecord | None, device: DeviceRecord | None, lang: Lang = "zh"
) -> dict[str, JsonValue] | None:
    """The resident as the app and the accept page show them; None when there is none."""
    if resident is None:
        return None
    contacts: list[JsonValue] = [{"name": c.name, "phone": c.phone} for c in resident.contacts]
    return {
        "id": resident.resident_id,
        "name": resident.name,
        "phone": resident.phone,
        "address": address_of(resident, device, lang),
        "building": resident.building,
        "unit": resident.unit,
        "room": resident.room,
        "lives_alone": resident.lives_alone,
        "medical_notes": resident.medical_notes,
        "contacts": contacts,
    }


def make_notice(
    alert: Alert,
    resident: ResidentRecord | None,
    device: DeviceRecord | None,
    *,
    lang: Lang = "zh",
    accept_url: str | None = None,
    decline_url: str | None = None,
) -> Notice:
    """Render ``alert`` for one recipient (their language, their own accept link)."""
    message = render(
        alert, resident, device, lang=lang, accept_url=accept_url, decline_url=decline_url
    )
    device_data: JsonValue = None
    if device is not None:
        device_data = {"id": device.device_id, "name": device.name, "type": device.type.value}
    elif alert.device_id:
        device_data = {"id": alert.device_id, "name": None, "type": None}
    opened = alert.opened_at
    if opened.tzinfo is None:
        opened = opened.replace(tzinfo=UTC)
    data: dict[str, JsonValue] = {
        "alert_id": alert.id,
        "kind": alert.kind,
        "kind_label": kind_name(alert.kind, lang),
        "priority": alert.priority.value,
        "priority_label": priority_word(alert.priority, lang),
        "state": alert.state.value,
        "count": alert.count,
        "opened_at": opened.astimezone(UTC).isoformat(),
        "opened_at_local": format_time(alert.opened_at),
        "lang": lang,
        "title": message.title,
        "body": message.body,
        "short": message.short,
        "address": address_of(resident, device, lang),
        "resident": resident_summary(resident, device, lang),
        "device": device_data,
        "accept_url": accept_url,
        "decline_url": decline_url,
    }
    return Notice(
        alert_id=alert.id,
        kind=alert.kind,
        priority=alert.priority,
        message=message,
        accept_url=accept_url,
        decline_url=decline_url,
        data=data,
    )


# -- delivery --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt on one channel. ``channel`` is the redacted spec."""

    ok: bool
    channel: str
    detail: str = ""
    attempt: int = 1  # 1-based try number on this channel
    # False when trying the same spec again cannot help (an unsupported URL, a recipient the
    # channel cannot address): the notifier moves on to the next channel at once.
    retryable: bool = True


class Channel(Protocol):
    def handles(self, spec: str) -> bool:
        """Whether this channel sends to ``spec`` (cheap; no I/O)."""

    async def send(self, spec: str, recipient: Recipient, notice: Notice) -> Delivery:
        """One attempt. Returns a failed Delivery for delivery problems; never logs ``spec``."""


@dataclass(frozen=True, slots=True)
class NotifyOutcome:
    recipient: Recipient
    attempts: tuple[Delivery, ...]
    delivered: Delivery | None  # the successful attempt; None: nobody was reached this way

    @property
    def reached(self) -> bool:
        return self.delivered is not None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Per channel: ``attempts`` tries (first one included), waits ``backoff`` ×
    ``multiplier``ⁿ between them; each try is cut off after ``timeout`` seconds."""

    attempts: int = 2
    backoff: float = 0.2
    multiplier: float = 2.0
    timeout: float = 15.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.backoff < 0 or self.multiplier < 1 or self.timeout <= 0:
            raise ValueError("RetryPolicy: backoff >= 0, multiplier >= 1, timeout > 0")

    def delay(self, failed_attempt: int) -> float:
        """The wait after try number ``failed_attempt`` (1-based) failed."""
        return self.backoff * self.multiplier ** (failed_attempt - 1)


class Notifier:
    """Tries a recipient's channels in order; retries each with backoff; first success wins."""

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._channels = tuple(channels)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep

    def channel_for(self, spec: str) -> Channel | None:
        for channel in self._channels:
            if channel.handles(spec):
                return channel
        return None

    async def notify(self, recipient: Recipient, notice: Notice) -> NotifyOutcome:
        attempts: list[Delivery] = []
        for spec in recipient.channels:
            channel = self.channel_for(spec)
            if channel is None:
                attempts.append(
                    Delivery(False, redact_spec(spec), "no channel handles this spec", 1, False)
                )
                log.warning(
                    "alert %s → %s: no channel for %s",
                    notice.alert_id,
                    recipient.key,
                    redact_spec(spec),
                )
                continue
            for attempt in range(1, self.retry.attempts + 1):
                delivery = await self._attempt(channel, spec, recipient, notice, attempt)
                attempts.append(delivery)
                log.log(
                    logging.INFO if delivery.ok else logging.WARNING,
                    "alert %s → %s via %s (try %d): %s %s",
                    notice.alert_id,
                    recipient.key,
                    delivery.channel,
                    attempt,
                    "delivered" if delivery.ok else "failed",
                    delivery.detail,
                )
                if delivery.ok:
                    return NotifyOutcome(recipient, tuple(attempts), delivery)
                if not delivery.retryable or attempt == self.retry.attempts:
                    break
                await self._sleep(self.retry.delay(attempt))
        if not recipient.channels:
            log.warning("alert %s → %s: no channels", notice.alert_id, recipient.key)
        return NotifyOutcome(recipient, tuple(attempts), None)

    async def notify_many(self, items: Sequence[tuple[Recipient, Notice]]) -> list[NotifyOutcome]:
        """Everyone at once (one slow provider must not delay the next volunteer), outcomes in
        the order given."""
        return list(await asyncio.gather(*(self.notify(r, n) for r, n in items)))

    async def _attempt(
        self, channel: Channel, spec: str, recipient: Recipient, notice: Notice, attempt: int
    ) -> Delivery:
        redacted = redact_spec(spec)
        try:
            async with asyncio.timeout(self.retry.timeout):
                delivery = await channel.send(spec, recipient, notice)
        except TimeoutError:
            # The channel's own timeout should fire first; this bounds a channel that hangs.
            return Delivery(False, redacted, f"no answer within {self.retry.timeout:g}s", attempt)
        except (OSError, ValueError, RuntimeError) as exc:
            # Channels report delivery problems as a failed Delivery; these are the I/O and
            # setup errors one may still let through. A failed channel must fall back to the
            # next one, never end the step. The message is left out: it may quote the spec.
            log.warning("channel %s raised %s", redacted, type(exc).__name__)
            return Delivery(False, redacted, f"error: {type(exc).__name__}", attempt)
        # The channel numbers nothing itself; the notifier knows which try this was.
        return Delivery(delivery.ok, redacted, delivery.detail, attempt, delivery.retryable)
