"""The console in Chromium when things happen around it: a reload and a server restart during a
job, a refusal that keeps the inputs, and the phone layout of the popover, menus and tables."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser, expect

from tests.helpers import png
from tests.test_web_browser import (
    DESKTOP,
    PHONE,
    drop_file,
    fresh,
    imagine,
    no_sideways_scroll,
    open_page,
    pytestmark,
    shared_chromium,
    shot,
)
from tests.test_web_harness import TOKEN, Factory, running_console
from tests.test_web_live import serve

__all__ = ["pytestmark", "shared_chromium"]
SLOW = {"providers": {"demo": {"api": "demo", "demo_delay_seconds": 4.0}}}


async def test_reload_during_a_job_shows_it_pending_then_its_result(
        shared_chromium: Browser, settings_factory: Factory, tmp_path: Path) -> None:
    async with running_console(settings_factory, **SLOW) as run, fresh(shared_chromium) as browser:
        page = await open_page(browser, run.url, **DESKTOP)
        await page.fill("#prompt", "a kite over the dunes")
        await page.press("#prompt", "Enter")
        await expect(page.locator(".msg.bot.pending .status")).to_contain_text("Generating")
        await page.reload()
        pending = page.locator("article.pending[data-job]")
        await expect(pending).to_have_count(1)
        await expect(page.locator(".msg.me").last).to_contain_text("a kite over the dunes")
        status = pending.locator(".status")
        await expect(status).to_have_text(re.compile(r"Generating… [0-9] s"))
        await expect(status).not_to_have_text(await status.inner_text())  # the seconds count
        await shot(page, tmp_path, "playground-pending.png")
        card = page.locator("article.result")
        await expect(card.locator("img")).to_be_visible()
        await expect(pending).to_have_count(0)
        await expect(card.locator(".caption")).to_contain_text("a kite over the dunes")
        await expect(page.locator("#quota .left")).to_have_text("96 credits")
        assert page.errors == []  # type: ignore[attr-defined]


async def test_a_result_that_lands_while_the_server_restarts_appears(
        shared_chromium: Browser, settings_factory: Factory) -> None:
    settings = settings_factory(**SLOW)
    async with fresh(shared_chromium) as browser:
        async with serve(settings) as (console, stop):
            port = int(console.url.rpartition(":")[2])
            page = await open_page(browser, console.url, **PHONE)
            await page.fill("#prompt", "a snow globe on a windowsill")
            await page.press("#prompt", "Enter")
            await expect(page.locator(".msg.bot.pending .status")).to_contain_text("Generating")
            stop.set()  # the job finishes in the shutdown grace, with no page listening
        await expect(page.locator("body.offline")).to_have_count(1)
        assert await page.locator("article.result").count() == 0
        async with serve(settings, port):
            card = page.locator("article.result")
            await expect(card.locator("img")).to_be_visible()
            await expect(card.locator(".caption")).to_contain_text("a snow globe on a windowsill")
            await expect(page.locator("article.pending")).to_have_count(0)
            await expect(page.locator("body.offline")).to_have_count(0)
            await expect(page.locator("#quota .left")).to_have_text("96 credits")
    unexpected = [e for e in page.errors  # type: ignore[attr-defined]
                  if "Failed to load resource" not in e and "ERR_CONNECTION_REFUSED" not in e]
    assert unexpected == []


async def test_a_refusal_keeps_the_prompt_and_the_references(
        shared_chromium: Browser, settings_factory: Factory, tmp_path: Path) -> None:
    async with running_console(settings_factory, quota={"user_daily_credits": 10}) as run, \
            fresh(shared_chromium) as browser:
        page = await open_page(browser, run.url, **DESKTOP)
        await expect(page.locator("#cost")).to_have_text("Costs 4 credits · you have 10")
        await page.select_option("#model", "nano-banana-pro")
        await page.select_option("#size", "4K")
        await expect(page.locator("#cost")).to_have_text("Costs 24 credits · you have 10")
        await expect(page.locator("#cost.short")).to_have_count(1)
        await drop_file(page, "sketch.png", png(60, 40, "orange"))
        await page.fill("#prompt", "a castle made of glass")
        await page.click("#send")
        await expect(page.locator("#form-error")).to_contain_text("Not enough credits for this")
        await expect(page.locator("#prompt")).to_have_value("a castle made of glass")
        await expect(page.locator("#refs .ref img")).to_have_count(1)
        await expect(page.locator(".msg.me")).to_have_count(0)
        await page.select_option("#model", "nano-banana-2-lite")
        await expect(page.locator("#cost.short")).to_have_count(0)
        await page.click("#send")
        await expect(page.locator("article.result img")).to_be_visible()
        await expect(page.locator("#prompt")).to_have_value("")
        await expect(page.locator("#quota .left")).to_have_text("6 credits")
        assert await run.ledger_kinds() == ["reserve", "settle"]
        # Chromium logs the refused request itself; the page's script raised nothing
        assert all("status of 422" in e for e in page.errors)  # type: ignore[attr-defined]


async def test_phone_popover_menus_and_user_table_fit(
        shared_chromium: Browser, settings_factory: Factory, tmp_path: Path) -> None:
    async with running_console(settings_factory) as run, fresh(shared_chromium) as browser:
        page = await open_page(browser, run.url, **PHONE)
        await page.click("#quota summary")
        pop = page.locator("#quota .pop")
        await expect(pop).to_be_visible()
        box = await pop.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
        await page.click("#quota summary")
        await imagine(page, "a red bicycle against a blue wall", 0)
        await page.locator("article.result").get_by_role("button", name="✏️ Edit").click()
        for name in ("Model", "Size", "Aspect"):
            label = page.locator(".opts label", has_text=name).locator("span")
            await expect(label).to_be_visible()
        await expect(page.locator("#model")).to_have_value("")
        await no_sideways_scroll(page)
        await shot(page, tmp_path, "playground-mobile-edit.png")

        op = await open_page(browser, run.url + "/operator", **PHONE)
        await op.fill("#token", TOKEN)
        await op.click("button[type=submit]")
        table = op.locator("table.users")
        await expect(table).to_be_visible()
        holder = await op.locator(".scroll:has(table.users)").bounding_box()
        assert holder is not None and holder["x"] + holder["width"] <= 390, holder
        await no_sideways_scroll(op)
        await shot(op, tmp_path, "operator-mobile.png", full_page=True)
        assert page.errors == [] and op.errors == []  # type: ignore[attr-defined]


async def test_a_result_reaches_every_open_tab_of_the_browser(
        shared_chromium: Browser, settings_factory: Factory) -> None:
    async with running_console(settings_factory) as run, fresh(shared_chromium) as browser:
        first = await open_page(browser, run.url, **DESKTOP)
        second = await first.context.new_page()  # the same browser: the same cookie and chat
        await second.goto(run.url)
        await imagine(first, "a lighthouse in the fog", 0)
        card = second.locator("article.result")
        await expect(card.locator("img")).to_be_visible()  # pushed, not reloaded
        await expect(card.locator(".caption")).to_contain_text("a lighthouse in the fog")
        await expect(second.locator("#quota .left")).to_have_text("96 credits")
        assert first.errors == []  # type: ignore[attr-defined]
