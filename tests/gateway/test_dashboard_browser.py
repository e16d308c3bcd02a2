"""The dashboard in a real browser (Debian's headless Chromium driven by Playwright) against a
real gateway: real mosquitto, SQLite, HTTP on a free port.

A duty user logs in; a button press published over MQTT appears on the open page within 2 s
without a reload, with the P1 alarm (banner, title, chime); the desk acknowledges and resolves
it from the page; the language switch works; the device tab draws a reading chart; the layout
holds on a phone-sized screen. Screenshots are kept under test-artifacts/.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from alerts.models import AlertState, Outcome
from gateway.http.api.console import ApiStore
from gateway.runtime import Gateway
from gateway.storage.factory import open_store
from gateway.users import Role, hash_secret, new_token
from tests.alerts.conftest import alert_settings, seed_community
from tests.gateway.conftest import Publisher
from tests.harness.mosquitto import MosquittoServer
from tests.harness.ports import free_port
from tests.harness.waiting import wait_for
from tests.harness.webhook import Receiver, running_receiver

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LIVE_WITHIN_MS = 2000
STEP_MS = 10_000  # for a page action to show its result (the machine may be busy)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} not found: install Debian's chromium (scripts/test.sh does)",
            pytrace=False,
        )
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def phones() -> AsyncIterator[Receiver]:
    async with running_receiver() as receiver:
        yield receiver


async def _duty_login(db_url: str) -> str:
    store = open_store(db_url)
    await store.open()
    try:
        token = new_token()
        await cast(ApiStore, store).create_user(
            "zhang", Role.DUTY, hash_secret(token), datetime.now(UTC)
        )
        return token
    finally:
        await store.close()


def _shot(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


async def _log_in(page: Page, base: str, token: str) -> None:
    await page.goto(f"{base}/")
    await expect(page).to_have_url(f"{base}/login?lang=zh")
    await page.fill("#name", "zhang")
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    await page.wait_for_selector("body[data-ready='1']", timeout=STEP_MS)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=STEP_MS)


async def test_duty_desk_in_a_real_browser(
    mosquitto: MosquittoServer, sqlite_url: str, phones: Receiver, browser: Browser
) -> None:
    await seed_community(sqlite_url, phones)
    token = await _duty_login(sqlite_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    gateway = Gateway(alert_settings(mosquitto, sqlite_url, port))
    task = asyncio.create_task(gateway.run())
    publisher = Publisher(mosquitto.url)
    store = gateway.alerting.store
    try:
        await wait_for(gateway.ingesting.is_set, timeout=20, message="gateway ingesting")
        # Some temperature history for the chart: one reading every 10 minutes.
        now = datetime.now(UTC)
        for i in range(12):
            stamp = (now - timedelta(minutes=10 * (12 - i))).isoformat()
            value = 21.0 + (i % 5) * 0.4
            publisher.json("scgw/th-1/telemetry", {"ts": stamp, "metrics": {"temperature": value}})
        await publisher.flushed()

        context = await browser.new_context(viewport={"width": 1280, "height": 860})
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await _log_in(page, base, token)
        await expect(page.locator("h1")).to_have_text("社区服务站值班台")
        await expect(page.locator("#queue-empty")).to_be_visible()
        await page.evaluate("window.__sameDocument = true")  # gone if the page reloads

        # -- a press over MQTT reaches the open page within 2 s ----------------------------
        started = time.monotonic()
        publisher.json("scgw/btn-1/event", {"id": "press-1", "seq": 11, "type": "sos"})
        item = page.locator("#queue li.qi.P1")
        await item.wait_for(timeout=LIVE_WITHIN_MS)
        elapsed = time.monotonic() - started
        assert elapsed < LIVE_WITHIN_MS / 1000, elapsed
        assert await page.evaluate("window.__sameDocument === true")
        await expect(item).to_contain_text("紧急呼叫")
        await expect(item).to_contain_text("张秀英")
        await expect(item).to_contain_text("3号楼1单元201")

        # The alarm cannot be missed: banner, flashing title, chime.
        await expect(page.locator("#alarm")).to_be_visible()
        await expect(page.locator("#alarm-text")).to_contain_text("紧急呼叫")
        await expect(page).to_have_title("【紧急】紧急呼叫 · 张秀英 3号楼1单元201", timeout=STEP_MS)
        chimes = await page.evaluate("Number(document.body.dataset.chimes || 0)")
        assert chimes >= 1
        await page.screenshot(path=_shot("dashboard-p1-alarm.png"))

        # -- the resident card, then acknowledge from the page ---------------------------------
        await item.click()
        card = page.locator("#resident-card")
        await expect(card).to_contain_text("张秀英（独居）")
        await expect(card).to_contain_text("13800000000")
        await expect(card).to_contain_text("高血压")
        await expect(card).to_contain_text("儿子")
        await page.click("#btn-ack")
        await expect(page.locator("#detail-state")).to_have_text("处理中", timeout=STEP_MS)
        await expect(page.locator("#alarm")).to_be_hidden(timeout=STEP_MS)
        alert = (await store.list_alerts())[0]
        assert alert.state is AlertState.ACKNOWLEDGED
        assert alert.acked_by == "user:zhang"
        await expect(page.locator("#timeline")).to_contain_text("值班台接警")

        # -- resolve with an outcome and a note ----------------------------------------------------
        await page.select_option("#resolve-outcome", "false_alarm")
        await page.fill("#resolve-note", "老人误按，已电话确认安好")
        await page.click("#btn-resolve")
        await expect(page.locator("#detail-state")).to_have_text("已结束", timeout=STEP_MS)
        await expect(page.locator("#queue li")).to_have_count(0, timeout=STEP_MS)
        await expect(page.locator("#closed li")).to_have_count(1)
        alert = (await store.list_alerts())[0]
        assert alert.state is AlertState.RESOLVED
        assert alert.outcome is Outcome.FALSE_ALARM
        assert alert.note == "老人误按，已电话确认安好"
        await page.screenshot(path=_shot("dashboard-resolved-zh.png"), full_page=True)

        # -- the language switch ------------------------------------------------------------------
        await page.click("#lang")
        await expect(page.locator("h1")).to_have_text("Community duty desk")
        assert await page.evaluate("document.documentElement.lang") == "en"
        await expect(page.locator("#detail-state")).to_have_text("Resolved")
        await expect(page.locator("#closed li").first).to_contain_text("Emergency call")
        await expect(page.locator("#timeline")).to_contain_text("Acknowledged by the desk")
        await page.screenshot(path=_shot("dashboard-resolved-en.png"), full_page=True)
        await page.click("#lang")
        await expect(page.locator("h1")).to_have_text("社区服务站值班台")

        # -- device health and a reading chart ---------------------------------------------
        # btn-1 floods: over its telemetry limit by its own clock (a reading every
        # millisecond), it is badged for the technicians.
        over = gateway.settings.ingest.device_burst + 10
        for i in range(over):
            stamp = (now - timedelta(milliseconds=over - i)).isoformat()
            publisher.json("scgw/btn-1/telemetry", {"ts": stamp, "metrics": {"battery": 90}})
        await publisher.flushed()
        await wait_for(
            lambda: gateway.metrics.value("scgw_devices_rate_limited") == 1,
            timeout=20,
            message="btn-1 flagged for flooding",
        )

        async def flag_saved() -> bool:  # what every instance's API shows (within a second)
            flags = await gateway.store.flood_flags(now - timedelta(hours=1))
            return "btn-1" in flags

        await wait_for(flag_saved, timeout=20, message="the flag in the database")
        await page.click("button[data-tab=devices]")
        await expect(page.locator("#devices tr[data-id='btn-1'] .badge.flood")).to_have_text(
            "消息过多", timeout=STEP_MS
        )
        await expect(page.locator("#devices tr[data-id='th-1'] .badge.flood")).to_have_count(0)
        await page.select_option("#dev-status", "rate_limited")
        await expect(page.locator("#devices tbody tr")).to_have_count(1, timeout=STEP_MS)
        await page.select_option("#dev-status", "")
        await page.locator("#devices tr[data-id='th-1']").click()
        await page.wait_for_selector("#chart svg polyline", timeout=STEP_MS)
        points = await page.get_attribute("#chart svg polyline", "points")
        assert points is not None
        assert len(points.split()) >= 6  # 5-minute buckets over the two hours of readings
        await page.screenshot(path=_shot("dashboard-devices.png"), full_page=True)
        assert errors == [], errors
        await context.close()
    finally:
        publisher.close()
        gateway.request_stop()
        await asyncio.wait_for(task, 20)


async def test_phone_sized_screen(
    mosquitto: MosquittoServer, sqlite_url: str, phones: Receiver, browser: Browser
) -> None:
    """Volunteers and staff on a phone: one column, the alert fills the screen, no sideways
    scrolling."""
    await seed_community(sqlite_url, phones)
    token = await _duty_login(sqlite_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    gateway = Gateway(alert_settings(mosquitto, sqlite_url, port))
    task = asyncio.create_task(gateway.run())
    publisher = Publisher(mosquitto.url)
    try:
        await wait_for(gateway.ingesting.is_set, timeout=20, message="gateway ingesting")
        context = await browser.new_context(
            viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
        )
        page = await context.new_page()
        await _log_in(page, base, token)
        publisher.json("scgw/smoke-1/event", {"id": "smoke-1", "type": "smoke"})
        item = page.locator("#queue li.qi.P1")
        await item.wait_for(timeout=STEP_MS)
        await expect(page.locator("#alarm")).to_be_visible()
        scroll: Any = await page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert scroll[0] <= scroll[1], scroll  # nothing wider than the screen
        await page.screenshot(path=_shot("dashboard-phone-queue.png"))
        await item.click()
        detail = page.locator("#detail")
        await expect(page.locator("#btn-ack")).to_be_visible(timeout=STEP_MS)
        box = await detail.bounding_box()
        assert box is not None
        assert box["width"] >= 380  # the alert takes the screen
        await page.screenshot(path=_shot("dashboard-phone-detail.png"))
        await context.close()
    finally:
        publisher.close()
        gateway.request_stop()
        await asyncio.wait_for(task, 20)
