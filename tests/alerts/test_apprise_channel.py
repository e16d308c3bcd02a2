"""Apprise channel against a real local webhook (``json://127.0.0.1:PORT/…``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import apprise
import pytest

from alerts.channels import Notifier, Recipient, RetryPolicy, make_notice
from alerts.channels.apprise_channel import AppriseChannel
from alerts.models import Alert, AlertState, Priority
from devices.models import DeviceType
from devices.records import DeviceRecord, ResidentRecord
from tests.harness.ports import free_port
from tests.harness.waiting import wait_for
from tests.harness.webhook import Receiver, running_receiver

T0 = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)
ALERT = Alert(
    id="a-1",
    kind="sos",
    priority=Priority.P1,
    state=AlertState.OPEN,
    opened_at=T0,
    updated_at=T0,
    device_id="btn-1",
    resident_id="r1",
)
RESIDENT = ResidentRecord("r1", "张秀英", phone="13800138000", building="3", unit="1", room="201")
ACCEPT = "https://gw.example/r/AbCdEfGhIjKlMnOpQrStUvWxYz012345"
NOTICE = make_notice(
    ALERT,
    RESIDENT,
    DeviceRecord("btn-1", DeviceType.SOS_BUTTON),
    accept_url=ACCEPT,
    decline_url=None,
)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as rec:
        yield rec


def who(*channels: str) -> Recipient:
    return Recipient("responder:v-1", "王志愿", responder_id="v-1", channels=channels)


async def test_posts_the_notice_to_a_local_webhook(receiver: Receiver) -> None:
    channel = AppriseChannel(timeout=5)
    spec = f"json://127.0.0.1:{receiver.port}/hook"
    assert channel.handles(spec)
    delivery = await channel.send(spec, who(spec), NOTICE)
    assert delivery.ok, delivery
    assert delivery.detail == "JSON: success"
    [req] = receiver.requests
    assert (req.method, req.path) == ("POST", "/hook")
    payload = req.json()
    assert payload["title"] == NOTICE.message.title
    assert payload["message"] == NOTICE.message.body
    assert ACCEPT in payload["message"]
    assert payload["type"] == "failure"  # P1: red in chat apps


async def test_closed_port_fails_and_falls_back(receiver: Receiver) -> None:
    closed = f"json://127.0.0.1:{free_port()}/hook?token=s3cr3t"
    good = f"json://127.0.0.1:{receiver.port}/backup"
    channel = AppriseChannel(timeout=5)
    direct = await channel.send(closed, who(closed), NOTICE)
    assert not direct.ok
    assert direct.retryable
    assert direct.detail == "JSON: failure"

    notifier = Notifier([channel], retry=RetryPolicy(attempts=2, backoff=0.0))
    out = await notifier.notify(who(closed, good), NOTICE)
    assert [d.ok for d in out.attempts] == [False, False, True]
    assert out.delivered is not None
    assert out.delivered.channel == good
    assert "s3cr3t" not in out.attempts[0].channel
    assert [r.path for r in receiver.requests] == ["/backup"]


async def test_http_error_is_a_failure(receiver: Receiver) -> None:
    receiver.status = 500
    spec = f"json://127.0.0.1:{receiver.port}/"
    delivery = await AppriseChannel(timeout=5).send(spec, who(spec), NOTICE)
    assert not delivery.ok
    assert len(receiver.requests) == 1


async def test_slow_provider_times_out(receiver: Receiver) -> None:
    receiver.hold = True
    spec = f"json://127.0.0.1:{receiver.port}/"
    started = time.monotonic()
    delivery = await AppriseChannel(timeout=0.3).send(spec, who(spec), NOTICE)
    assert not delivery.ok
    assert "timeout" in delivery.detail
    assert time.monotonic() - started < 2.0


async def test_unsupported_url_is_not_retried(receiver: Receiver) -> None:
    good = f"json://127.0.0.1:{receiver.port}/"
    notifier = Notifier([AppriseChannel()], retry=RetryPolicy(attempts=3, backoff=0.0))
    out = await notifier.notify(who("nosuchservice://x", good), NOTICE)
    assert [(d.ok, d.detail) for d in out.attempts] == [
        (False, "not a URL Apprise supports"),
        (True, "JSON: success"),
    ]


def test_handles_urls_only() -> None:
    channel = AppriseChannel()
    assert channel.handles("dingtalk://token/")
    assert channel.handles("mailto://u:p@qq.com")
    assert not channel.handles("mqtt")
    assert not channel.handles("just words")


async def test_one_apprise_object_per_url(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []
    real = apprise.Apprise.instantiate

    def counting(url: str, *args: Any, **kwargs: Any) -> Any:
        made.append(url)
        return real(url, *args, **kwargs)

    monkeypatch.setattr(apprise.Apprise, "instantiate", staticmethod(counting))
    channel = AppriseChannel()
    spec = f"json://127.0.0.1:{receiver.port}/"
    for _ in range(3):
        assert (await channel.send(spec, who(spec), NOTICE)).ok
    assert made == [spec]
    await wait_for(lambda: len(receiver.requests) == 3, timeout=5, message="three posts")


async def test_sms_like_services_get_the_short_text(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service without titles and with a small body limit (an SMS gateway) gets
    ``Message.short``: the accept link whole, not a body cut in the middle of it."""
    real = apprise.Apprise.instantiate

    def sms_like(url: str, *args: Any, **kwargs: Any) -> Any:
        plugin = real(url, *args, **kwargs)
        assert plugin is not None
        plugin.title_maxlen = 0
        plugin.body_maxlen = 160
        return plugin

    monkeypatch.setattr(apprise.Apprise, "instantiate", staticmethod(sms_like))
    spec = f"json://127.0.0.1:{receiver.port}/sms"
    assert (await AppriseChannel().send(spec, who(spec), NOTICE)).ok
    [req] = receiver.requests
    assert req.json()["message"] == NOTICE.message.short
    assert req.json()["message"].endswith(ACCEPT)
