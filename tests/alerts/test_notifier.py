"""The notifier: channels in order, retries with backoff, first success wins, secrets hidden."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from alerts.channels import (
    Delivery,
    Notice,
    Notifier,
    Recipient,
    RetryPolicy,
    make_notice,
    redact_spec,
)
from alerts.models import Alert, AlertState, Priority
from devices.models import DeviceType
from devices.records import Contact, DeviceRecord, ResidentRecord, ResponderRecord

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
RESIDENT = ResidentRecord(
    "r1", "张秀英", phone="13800138000", building="3", unit="1", room="201",
    contacts=(Contact("李明", "13900139000"),),
)  # fmt: skip
DEVICE = DeviceRecord("btn-1", DeviceType.SOS_BUTTON)
NOTICE = make_notice(ALERT, RESIDENT, DEVICE, accept_url="https://x/r/tok", decline_url=None)
FAST = RetryPolicy(attempts=2, backoff=0.0, timeout=2.0)


@dataclass
class FakeChannel:
    """Handles specs starting with ``scheme``; fails the first ``failures`` sends per spec."""

    scheme: str
    failures: int = 0
    retryable: bool = True
    sent: list[str] = field(default_factory=list)
    hang: bool = False
    raises: type[Exception] | None = None

    def handles(self, spec: str) -> bool:
        return spec.startswith(self.scheme)

    async def send(self, spec: str, recipient: Recipient, notice: Notice) -> Delivery:
        self.sent.append(spec)
        if self.hang:
            await asyncio.Event().wait()
        if self.raises is not None:
            raise self.raises(f"boom at {spec}")
        if self.sent.count(spec) <= self.failures:
            return Delivery(False, spec, "provider said no", retryable=self.retryable)
        return Delivery(True, spec, "ok")


def recipient(*channels: str) -> Recipient:
    return Recipient(
        key="responder:v-1", name="王志愿", responder_id="v-1", channels=tuple(channels)
    )


async def test_first_success_stops() -> None:
    a, b = FakeChannel("a://"), FakeChannel("b://")
    out = await Notifier([a, b], retry=FAST).notify(recipient("a://1", "b://2"), NOTICE)
    assert out.reached
    assert out.delivered is not None
    assert out.delivered.channel == "a://1"
    assert len(out.attempts) == 1
    assert b.sent == []


async def test_falls_back_to_next_channel_after_retries() -> None:
    a, b = FakeChannel("a://", failures=99), FakeChannel("b://")
    out = await Notifier([a, b], retry=FAST).notify(recipient("a://1", "b://2"), NOTICE)
    assert [(d.channel, d.ok, d.attempt) for d in out.attempts] == [
        ("a://1", False, 1),
        ("a://1", False, 2),
        ("b://2", True, 1),
    ]
    assert out.delivered == out.attempts[-1]


async def test_a_retry_can_succeed() -> None:
    a = FakeChannel("a://", failures=1)
    out = await Notifier([a], retry=FAST).notify(recipient("a://1"), NOTICE)
    assert out.reached
    assert [d.ok for d in out.attempts] == [False, True]


async def test_backoff_doubles() -> None:
    waits: list[float] = []

    async def record(delay: float) -> None:
        waits.append(delay)

    a = FakeChannel("a://", failures=99)
    policy = RetryPolicy(attempts=4, backoff=0.2, multiplier=2.0)
    out = await Notifier([a], retry=policy, sleep=record).notify(recipient("a://1"), NOTICE)
    assert len(out.attempts) == 4
    assert waits == pytest.approx([0.2, 0.4, 0.8])  # none after the last try


async def test_not_retryable_moves_on_at_once() -> None:
    a, b = FakeChannel("a://", failures=99, retryable=False), FakeChannel("b://")
    out = await Notifier([a, b], retry=FAST).notify(recipient("a://1", "b://2"), NOTICE)
    assert [d.channel for d in out.attempts] == ["a://1", "b://2"]


async def test_nobody_reached() -> None:
    a = FakeChannel("a://", failures=99)
    out = await Notifier([a], retry=FAST).notify(recipient("a://1", "zz://unknown"), NOTICE)
    assert not out.reached
    assert out.delivered is None
    assert out.attempts[-1].detail == "no channel handles this spec"
    empty = await Notifier([a], retry=FAST).notify(recipient(), NOTICE)
    assert empty.attempts == ()
    assert empty.delivered is None


async def test_a_hanging_channel_is_cut_off_and_falls_back() -> None:
    a, b = FakeChannel("a://", hang=True), FakeChannel("b://")
    policy = RetryPolicy(attempts=1, backoff=0.0, timeout=0.05)
    out = await Notifier([a, b], retry=policy).notify(recipient("a://1", "b://2"), NOTICE)
    assert "no answer within" in out.attempts[0].detail
    assert out.reached
    assert out.delivered is not None
    assert out.delivered.channel == "b://2"


async def test_io_errors_from_a_channel_fall_back() -> None:
    a, b = FakeChannel("a://", raises=ConnectionRefusedError), FakeChannel("b://")
    out = await Notifier([a, b], retry=FAST).notify(recipient("a://1", "b://2"), NOTICE)
    assert out.attempts[0].detail == "error: ConnectionRefusedError"
    assert out.reached


async def test_notify_many_runs_everyone_concurrently() -> None:
    gate = asyncio.Event()
    started: list[str] = []

    class Gated(FakeChannel):
        async def send(self, spec: str, recipient: Recipient, notice: Notice) -> Delivery:
            started.append(recipient.key)
            if len(started) == 2:
                gate.set()
            await gate.wait()  # only returns if both are in flight at once
            return Delivery(True, spec)

    n = Notifier([Gated("a://")], retry=FAST)
    r1 = Recipient("responder:v-1", "甲", channels=("a://1",))
    r2 = Recipient("responder:v-2", "乙", channels=("a://2",))
    outcomes = await asyncio.wait_for(n.notify_many([(r1, NOTICE), (r2, NOTICE)]), 5)
    assert [o.recipient.key for o in outcomes] == ["responder:v-1", "responder:v-2"]
    assert all(o.reached for o in outcomes)


SECRET_SPECS = [
    ("json://user:hunter2@10.0.0.5:8080/hook?token=s3cr3t", "hunter2", "s3cr3t"),
    ("mailto://duty:Pa55word@qq.com?to=desk@example.cn", "Pa55word", "desk@example.cn"),
    (
        "dingtalk://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef/",
        "0123456789abcdef0123456789abcdef",
        None,
    ),
    ("wecombot://693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa", "693a91f6-7xxx-4bc4-97a0", None),
    ("feishu://abcd1234efgh5678ijkl/SECRETsecret999", "abcd1234efgh5678ijkl", "SECRETsecret999"),
    ("tgram://123456789:AAH-AbCdEfGhIjKlMnOpQrStUvWxYz/12345", "AbCdEfGhIjKlMnOp", None),
    ("json://sms-gw.local/send?to=13900139000&key=abc", "13900139000", "abc"),
    (
        "dingtalk://SECabcdef0123456789abcdef@tok0123456789abcdef/13800138000",
        "13800138000",
        "SECabcdef0123",
    ),
]


@pytest.mark.parametrize(("spec", "secret", "secret2"), SECRET_SPECS)
def test_redaction_hides_secrets(spec: str, secret: str, secret2: str | None) -> None:
    shown = redact_spec(spec)
    assert secret not in shown
    if secret2:
        assert secret2 not in shown
    assert shown.split("://")[0] == spec.split("://")[0]  # the kind of channel stays visible


def test_redaction_keeps_what_is_harmless() -> None:
    assert redact_spec("mqtt") == "mqtt"
    assert redact_spec("json://127.0.0.1:8080/alerts") == "json://127.0.0.1:8080/alerts"
    assert redact_spec("mailto://duty:pw@qq.com") == "mailto://duty:***@qq.com"


async def test_secrets_never_reach_delivery_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    spec = "json://user:hunter2@127.0.0.1:9/hook?token=s3cr3t"
    a = FakeChannel("json://", failures=99)
    caplog.set_level(logging.DEBUG)
    out = await Notifier([a], retry=FAST).notify(recipient(spec, "nope://x?k=topsecret"), NOTICE)
    assert a.sent == [spec, spec]  # the channel itself gets the real spec
    everything = " ".join(f"{d.channel} {d.detail}" for d in out.attempts) + caplog.text
    for secret in ("hunter2", "s3cr3t", "topsecret"):
        assert secret not in everything


def test_recipients() -> None:
    responder = ResponderRecord(
        "v-1", "王志愿", "volunteer", phone="13600136000", channels=("mqtt", " json://x/ ", "")
    )
    r = Recipient.for_responder(responder)
    assert r.key == "responder:v-1"
    assert r.responder_id == "v-1"
    assert r.channels == ("mqtt", "json://x/")
    assert r.lang == "zh"
    english = ResponderRecord("v-2", "Tom", "volunteer", attributes=(("lang", "en"),))
    assert Recipient.for_responder(english).lang == "en"

    c = Recipient.for_contact(
        "r1",
        0,
        Contact("李 明", "+86 139"),
        channel_templates=["json://sms.local/send?to={phone}&n={name}"],
    )
    assert c.key == "contact:r1:0"
    assert c.responder_id is None
    assert c.role == "family"
    assert c.channels == ("json://sms.local/send?to=+86%20139&n=%E6%9D%8E%20%E6%98%8E",)
    assert (
        Recipient.for_contact("r1", 1, Contact("无号码", ""), channel_templates=["x"]).channels
        == ()
    )


def test_notice_data_is_json() -> None:
    data = json.loads(json.dumps(NOTICE.data, ensure_ascii=False))
    assert data["alert_id"] == "a-1"
    assert data["priority"] == "P1"
    assert data["opened_at"] == "2026-03-14T09:26:53+00:00"
    assert data["opened_at_local"] == "2026-03-14 17:26:53"
    assert data["resident"]["address"] == "3号楼1单元201"
    assert data["resident"]["contacts"] == [{"name": "李明", "phone": "13900139000"}]
    assert data["device"] == {"id": "btn-1", "name": None, "type": "sos_button"}
    assert data["accept_url"] == "https://x/r/tok"


def test_retry_policy_is_checked() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
