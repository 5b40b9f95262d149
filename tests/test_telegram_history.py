"""Issue 16 on Telegram, end to end: /describe -> a prompt's button -> an image, /history paging
with each result's buttons, and /forget erasing all of it (the suggestions too)."""

from __future__ import annotations

from collections.abc import Callable

from bot.config import Settings
from bot.providers.text import TextRequest
from tests.fake_telegram import ALICE, BOB, running_bot
from tests.fake_upstream import DESCRIBED
from tests.helpers import photo
from tests.test_telegram_batches import candidates

Factory = Callable[..., Settings]


class Describing:
    """The batches' provider plus a text mode answering what the fake upstream answers."""

    def __init__(self) -> None:
        self.images = candidates()
        self.name = "demo"
        self.texts: list[TextRequest] = []

    async def generate(self, request):  # type: ignore[no-untyped-def]
        return await self.images.generate(request)

    async def text(self, request: TextRequest) -> str:
        self.texts.append(request)
        return DESCRIBED

    async def aclose(self) -> None:
        pass


async def test_describe_a_photo_then_draw_a_suggestion(settings_factory: Factory) -> None:
    provider = Describing()
    async with running_bot(settings_factory, providers={"demo": provider},
                           describe={"credits": 1}) as bot:
        fake = bot.fake
        fake.user_sends(photo=photo(), caption="/describe")
        answer = await fake.wait_for("sendMessage", lambda c: bool(c.buttons), timeout=15)
        assert answer.text.startswith("Prompts for this image")
        assert "1. A red fox curled up asleep in fresh snow" in answer.text
        assert answer.button_texts == ["▶ 1", "▶ 2", "▶ 3"]
        assert len(provider.texts) == 1
        assert await bot.ledger(ALICE, ["reserve", "settle"]) == ["reserve", "settle"]
        fake.press(answer.message, answer.buttons[1], user=BOB)  # not Bob's to press
        refused = await fake.wait_for("answerCallbackQuery")
        assert "requester" in refused.params["text"]
        fake.press(answer.message, answer.buttons[1])
        drawn = await fake.wait_for("sendPhoto", timeout=15)
        assert drawn.text.startswith("Watercolor of a sleeping fox in a snowy forest")
        assert (await bot.turn(drawn.message)).kind == "imagine"
        # A reply to an image works too, and a /describe without any image says how to use it.
        fake.user_sends("/describe", reply_to=drawn.message)
        await fake.wait_for("sendMessage", lambda c: c.text.startswith("Prompts for this image"),
                            timeout=15)
        fake.user_sends("/describe")
        await fake.wait_for("sendMessage", lambda c: c.text.startswith("Send /describe with"))
        fake.user_sends("/help")  # every inline flag, the presets named
        shown = await fake.wait_for("sendMessage", lambda c: "Options anywhere" in c.text)
        for flag in ("--n 1-4", "--style NAME — a preset: avatar, figurine", "--no a, b",
                     "--ar 16:9", "--size 1K|2K|4K", "--model NAME", "--search", "--thinking",
                     "--vary subtle|strong", "/describe", "/history"):
            assert flag in shown.text, flag


async def test_history_pages_with_buttons_and_forget_erases_everything(
        settings_factory: Factory) -> None:
    async with running_bot(settings_factory, providers={"demo": candidates()}) as bot:
        fake = bot.fake
        fake.user_sends("/imagine seven owls --n 4")
        await fake.wait_for("sendMediaGroup", timeout=15)
        await fake.wait_for("sendMessage", lambda c: bool(c.buttons), timeout=15)
        for n in range(3):
            fake.user_sends(f"/imagine owl {n}")
            await fake.wait_for("sendPhoto", timeout=15)
        fake.user_sends("/history")
        previews = await fake.wait_for("sendMediaGroup", timeout=15)
        assert [p["caption"] for p in previews.result] == ["1", "2", "3", "4", "5"]
        page = await fake.wait_for("sendMessage", lambda c: "page 1 of 2" in c.text)
        assert "7 in all" in page.text and "1. owl 2" in page.text
        labels = page.button_texts
        assert labels[0] == "1 · 🔄 Reroll" and labels[-1] == "Older ▶"
        assert "◀ Newer" not in labels
        fake.press(page.message, "ibh:")
        older = await fake.wait_for("sendMediaGroup", timeout=15)
        assert [p["caption"] for p in older.result] == ["6", "7"]
        second = await fake.wait_for("sendMessage", lambda c: "page 2 of 2" in c.text)
        assert second.button_texts[-1] == "◀ Newer" and "Older ▶" not in second.button_texts
        fake.press(second.message, "ib:reroll")  # a result's button from the gallery
        rerolled = await fake.wait_for("sendPhoto", timeout=15)
        assert "seven owls" in rerolled.text

        fake.user_sends("/forget")
        confirm = await fake.wait_for("sendMessage", lambda c: "Delete all" in c.text)
        fake.press(confirm.message, f"fg:{ALICE.id}:yes")
        await fake.wait_for("editMessageText", lambda c: "Deleted 8" in c.text)
        fake.user_sends("/history")
        await fake.wait_for("sendMessage", lambda c: "You have no images yet" in c.text)
        assert await bot.c.store.turns_page(f"telegram:{ALICE.id}", 0, 5) == ([], 0)
