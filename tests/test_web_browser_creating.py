"""Issue 16 in a real headless Chromium: a batch of four as a grid with U/V per candidate, U2 from
the grid, and /describe of a dropped image whose prompt's button draws it."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, expect

from tests.helpers import png
from tests.test_web_browser import (
    DESKTOP,
    drop_file,
    fresh,
    open_page,
    pytestmark,
    shared_chromium,
    shot,
)
from tests.test_web_harness import Factory, running_console

__all__ = ["pytestmark", "shared_chromium"]


async def test_a_batch_grid_then_u2_and_describe(
        shared_chromium: Browser, settings_factory: Factory, tmp_path: Path) -> None:
    async with running_console(settings_factory) as run, fresh(shared_chromium) as browser:
        page = await open_page(browser, run.url, **DESKTOP)
        await page.select_option("#n", "4")
        await page.select_option("#style", "watercolor")
        await expect(page.locator("#cost")).to_contain_text("16")  # four at 4 credits
        await page.fill("#prompt", "a lighthouse at dusk")
        await page.click("#send")
        card = page.locator("article.result").first
        await expect(card.locator(".shot img")).to_have_count(4)
        await expect(card.locator(".shot .n")).to_have_text(["1", "2", "3", "4"])
        for label in ("U1 · 2K", "U4 · 2K", "V1 (4)", "V4 (4)", "🔄 Reroll all 4 (16)"):
            await expect(card.get_by_role("button", name=label, exact=False)).to_be_visible()
        await expect(card.locator(".caption")).to_contain_text("Batch: 4 of 4.")
        await page.mouse.move(0, 0)
        await shot(page, tmp_path, "batch.png")

        await card.get_by_role("button", name="U2 · 2K", exact=False).click()
        second = page.locator("article.result").nth(1)
        await expect(second.locator("img")).to_be_visible()
        await expect(second.locator(".caption")).to_contain_text("· 2K ·")

        await page.select_option("#n", "1")
        await drop_file(page, "lamp.png", png(120, 90, "teal"))
        await page.click("#describe")
        described = page.locator("article.described")
        await expect(described.locator("li")).to_have_count(3)
        await described.get_by_role("button", name="▶ 1").click()
        third = page.locator("article.result").nth(2)
        await expect(third.locator("img")).to_be_visible()
        await expect(third.locator(".caption")).to_contain_text("digital illustration")
        await shot(page, tmp_path, "described.png", full_page=True)
        assert page.errors == []  # type: ignore[attr-defined]
