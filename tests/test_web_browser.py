"""The console in a real headless Chromium (Debian's, driven by Playwright): a newcomer's path,
the operator's path, a rejected login, and both pages on a phone and a desktop.

Screenshots go to each test's tmp_path; UPDATE_SCREENSHOTS=1 copies them to docs/screenshots/.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from bot.domain import Actor
from bot.quotas import Quotas
from tests.helpers import png
from tests.test_web_harness import TOKEN, Factory, Running, running_console

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 900}}
PHONE: dict[str, Any] = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
                         "is_mobile": True, "has_touch": True}
SLOW_DEMO = {"providers": {"demo": {"api": "demo", "demo_delay_seconds": 1.2}}}

# One Chromium per module (its loop is the module's): starting Playwright's driver and the
# browser cost more than most of a test; each test still gets contexts of its own (below).
pytestmark = [pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install chromium)"),
    pytest.mark.asyncio(loop_scope="module")]


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Headless Chromium with a fresh, empty profile (Playwright makes one per launch)."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_chromium() -> AsyncIterator[Browser]:
    """The module's Chromium."""
    async with chromium() as browser:
        yield browser


@asynccontextmanager
async def fresh(browser: Browser) -> AsyncIterator[Browser]:
    """``browser`` for one test: every context (cookies, storage, pages) it opened is closed after.

    Contexts share nothing with each other, so a test sees no trace of the one before it.
    """
    try:
        yield browser
    finally:
        for context in browser.contexts:
            await context.close()


async def open_page(browser: Browser, url: str, **options: Any) -> Page:
    """A page in its own context (its own cookies), failing the test on any script error."""
    context = await browser.new_context(locale="en-US", **options)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.set_default_timeout(15_000)
    await page.goto(url)
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def shot(page: Page, tmp_path: Path, name: str, *, full_page: bool = False) -> None:
    """Save a screenshot under tmp_path; with UPDATE_SCREENSHOTS=1 also refresh docs/screenshots/."""
    target = tmp_path / name
    await page.screenshot(path=str(target), full_page=full_page)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":  # keeps ordinary test runs from dirtying git
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, DOCS / name)


async def no_sideways_scroll(page: Page) -> None:
    """The page fits its viewport's width."""
    width = await page.evaluate("() => document.scrollingElement.scrollWidth")
    assert width <= page.viewport_size["width"] if page.viewport_size else True, width


async def imagine(page: Page, prompt: str, cards_before: int) -> None:
    """Type a prompt, send it, wait for the new result card and its image."""
    await page.fill("#prompt", prompt)
    await page.press("#prompt", "Enter")
    image = page.locator("article.result").nth(cards_before).locator("img")
    await expect(image).to_be_visible()
    await expect(image).to_have_js_property("complete", True)
    assert await image.evaluate("img => img.naturalWidth") > 0


async def drop_file(page: Page, name: str, data: bytes) -> None:
    """Drag a file from the desktop and drop it on the page."""
    transfer = await page.evaluate_handle(
        "([name, bytes]) => { const d = new DataTransfer();"
        " d.items.add(new File([new Uint8Array(bytes)], name, {type: 'image/png'})); return d; }",
        [name, list(data)])
    await page.dispatch_event("body", "dragenter", {"dataTransfer": transfer})
    await expect(page.locator("#dropzone")).to_be_visible()
    await page.dispatch_event("body", "drop", {"dataTransfer": transfer})
    await expect(page.locator("#dropzone")).to_be_hidden()


async def test_newcomer_imagines_with_a_reference_then_edits(
        shared_chromium: Browser, settings_factory: Factory, tmp_path: Path) -> None:
    async with running_console(settings_factory, **SLOW_DEMO) as run, fresh(shared_chromium) as browser:
        page = await open_page(browser, run.url, **DESKTOP)
        await expect(page.locator(".badge.demo")).to_have_text("DEMO")
        await expect(page.locator(".banner")).to_contain_text("Demo mode")
        await expect(page.locator("#quota .left")).to_have_text("100 credits")
        await page.select_option("#model", "nano-banana-pro")
        await expect(page.locator("#size option")).to_have_count(3)
        await drop_file(page, "sketch.png", png(120, 90, "orange"))
        await expect(page.locator("#refs .ref img")).to_have_count(1)
        await page.fill("#prompt", "a red fox in the snow at dawn")
        await page.click("#send")
        await expect(page.locator(".msg.me .refthumbs img")).to_have_count(1)
        await expect(page.locator(".msg.bot.pending .status")).to_contain_text("Generating")
        card = page.locator("article.result").first
        await expect(card.locator("img")).to_be_visible()
        await expect(card.locator(".caption")).to_contain_text("nano-banana-pro · 1K · 1:1")
        for label in ("🔄 Reroll", "⬆ 2K (14)", "⬆ 4K (24)", "🎲 Variations", "✏️ Edit"):
            await expect(card.get_by_role("button", name=label)).to_be_visible()
        await expect(page.locator("#quota .left")).to_have_text("86 credits")
        await expect(page.locator("#refs")).to_be_hidden()

        await card.get_by_role("button", name="✏️ Edit").click()
        await expect(page.locator("#editing")).to_contain_text("a red fox in the snow at dawn")
        await expect(page.locator("#model")).to_have_value("")  # "same as the original"
        await imagine(page, "make it night, with stars", 1)
        await expect(page.locator("#editing")).to_be_hidden()
        await expect(page.locator(".msg.me .tag").last).to_contain_text("Edit")
        await expect(page.locator("#quota .left")).to_have_text("72 credits")
        first, second = await run.core.store.turns_of(f"web:{await uid(page)}")
        assert (second.parent_id, second.kind, second.model) == (first.id, "edit",
                                                                 "nano-banana-pro")
        assert len(first.input_hashes) == 1
        await page.mouse.move(0, 0)
        await no_sideways_scroll(page)
        await shot(page, tmp_path, "playground.png")
        assert page.errors == []  # type: ignore[attr-defined]


async def uid(page: Page) -> str:
    """The page's anonymous user id, as it shows it."""
    text = await page.locator(".foot .who").inner_text()
    found = re.search(r"web:([0-9A-Za-z_-]+)", text)
    assert found, text
    return found.group(1)


async def seed_history(run: Running, days: int = 29) -> None:
    """Earlier days of spending from Telegram and Discord users, through the real Quotas."""
    core = run.core
    people = [Actor("telegram", "1001"), Actor("discord", "2002"), Actor("telegram", "1003"),
              Actor("discord", "2004")]
    models = [("nano-banana-2.1", "1K"), ("nano-banana-pro", "2K"), ("nano-banana-2-lite", "1K")]
    now = datetime.now(UTC)
    for back in range(days, 0, -1):
        quotas = Quotas(core.store, core.settings.quota, clock=lambda b=back: now - timedelta(days=b))
        for n in range((back * 7) % 5 + (3 if back < 8 else 1)):
            name, size = models[(back + n) % 3]
            spec = core.service.catalog[name]
            held = await quotas.reserve(people[(back * 3 + n) % 4], None, quotas.price(spec, size),
                                        model=name, size=size)
            if (back + n) % 11 == 0:
                await quotas.refund(held.id, "refused")
            else:
                await quotas.settle(held.id)


async def test_operator_sees_todays_spend_and_grants_credits(
        shared_chromium: Browser, settings_factory: Factory, tmp_path: Path) -> None:
    async with running_console(settings_factory) as run, fresh(shared_chromium) as browser:
        await seed_history(run)
        user = await open_page(browser, run.url, **DESKTOP)
        await imagine(user, "a lighthouse on a cliff", 0)
        await expect(user.locator("#quota .left")).to_have_text("96 credits")
        key = f"web:{await uid(user)}"

        op = await open_page(browser, run.url + "/operator", **DESKTOP)
        await op.fill("#token", TOKEN)
        await op.click("button[type=submit]")
        today = op.locator("#chart-usd-model-wide g.day.today")
        await expect(today).to_have_attribute("data-total", "$0.03")  # one 1K image: $0.0336
        await expect(today.locator("title")).to_have_text(re.compile(r": \$0\.03 \(nano-banana"))
        await expect(op.locator(".kpi.today .v")).to_have_text("$0.03")
        await expect(op.locator("#readout")).to_contain_text("$0.03 · 4 credits · images: 1")
        await op.click("label[for=b-plat]")
        await expect(op.locator("#chart-usd-platform-wide")).to_be_visible()
        await expect(op.locator("#chart-usd-model-wide")).to_be_hidden()
        await expect(op.locator(".gallery .tile img")).to_have_count(1)
        await expect(op.locator(".gallery .tile.o-ok")).to_contain_text("a lighthouse on a cliff")
        await expect(op.locator(".gallery .tile.o-refused").first).to_contain_text("refused")
        await op.locator(f"button[data-fill='{key}']").click()
        await expect(op.locator("#grant-user")).to_have_value(key)
        await op.fill("#grant-credits", "50")
        await op.get_by_role("button", name="Grant credits").click()
        await expect(op.locator(".flash.ok")).to_have_text(
            f"Granted 50 credits to {key}; their bonus is now 50.")
        await op.click("label[for=b-model]")
        await op.mouse.move(0, 0)
        await no_sideways_scroll(op)
        await shot(op, tmp_path, "operator.png", full_page=True)

        await user.reload()
        await expect(user.locator("#quota .left")).to_have_text("146 credits")
        assert user.errors == [] and op.errors == []  # type: ignore[attr-defined]


async def test_a_wrong_token_is_rejected(shared_chromium: Browser, settings_factory: Factory) -> None:
    async with running_console(settings_factory) as run, fresh(shared_chromium) as browser:
        page = await open_page(browser, run.url + "/operator", **DESKTOP)
        await page.fill("#token", "not-the-token")
        async with page.expect_response("**/operator/login") as answer:
            await page.click("button[type=submit]")
        assert (await answer.value).status == 401
        await expect(page.locator(".flash.bad")).to_have_text("That token is not right.")
        await expect(page.locator("#token")).to_be_visible()
        await expect(page.locator("svg.chart")).to_have_count(0)
        cookies = {c["name"] for c in await page.context.cookies()}
        assert "ib_op" not in cookies and "ib_web" in cookies


async def test_both_pages_work_on_a_phone(
        shared_chromium: Browser, settings_factory: Factory, tmp_path: Path) -> None:
    async with running_console(settings_factory) as run, fresh(shared_chromium) as browser:
        page = await open_page(browser, run.url, **PHONE)
        await expect(page.locator("#send")).to_be_in_viewport()
        await no_sideways_scroll(page)
        await imagine(page, "a tiny robot watering a bonsai, macro photo", 0)
        card = page.locator("article.result").first
        box = await card.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        await expect(page.locator("#quota .left")).to_have_text("96 credits")
        await no_sideways_scroll(page)
        await shot(page, tmp_path, "playground-mobile.png")

        op = await open_page(browser, run.url + "/operator", **PHONE)
        await op.fill("#token", TOKEN)
        await op.click("button[type=submit]")
        await expect(op.locator("#chart-usd-model-narrow")).to_be_visible()
        await expect(op.locator("#chart-usd-model-wide")).to_be_hidden()
        await no_sideways_scroll(op)
        await op.screenshot(path=str(tmp_path / "operator-mobile.png"), full_page=True)
        assert page.errors == [] and op.errors == []  # type: ignore[attr-defined]
