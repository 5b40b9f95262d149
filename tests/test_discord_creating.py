"""Issue 16 on Discord, end to end against the fake: a batch of four with one failing (three in
the gallery, one refund, the books), U2 -> a 4K of candidate 2, V3 -> a variation of candidate
3, the buttons after a restart, a style with --no, /describe -> a prompt's button -> an image,
/history paging, and the n / style menus under /settings."""

from __future__ import annotations

from collections.abc import Callable

from bot.config import Settings
from bot.domain import Actor
from tests.fake_discord import (
    FakeDiscord,
    bound_turn,
    discord_settings,
    private_answer,
    result_of,
    running_bot,
)
from tests.test_telegram_batches import COLORS, candidates, color_of, near
from tests.test_telegram_history import Describing

SettingsFactory = Callable[..., Settings]


async def test_a_batch_with_one_failure_u2_v3_and_a_restart(
        settings_factory: SettingsFactory) -> None:
    provider = candidates(fail_at=2)
    async with FakeDiscord() as fake:
        settings = discord_settings(settings_factory, fake)
        ada = fake.user("ada")
        async with running_bot(fake, settings, providers={"demo": provider}) as bot:
            result = await result_of(fake, await fake.slash(
                "imagine", prompt="four foxes --n 4 --size 2K", user=ada), timeout=15)
            assert len(result.gallery()) == 3
            assert "Batch: 3 of 4. 1 failed and cost nothing." in result.text
            labels = [label for label, _ in result.buttons()]
            assert [label.split(" ")[0] for label in labels] == [
                "U1", "U2", "U3", "V1", "V2", "V3", "🔄"]
            first = await bound_turn(bot.core, result)
            key = f"discord:{ada.id}"
            kinds = [e.kind for e in await bot.core.store.ledger(key)]
            assert kinds == ["reserve"] * 4 + ["refund"] + ["settle"] * 3
            entries = await bot.core.store.ledger(key)
            assert sum(e.credits for e in entries) == 3 * first.credits
            u2 = next(cid for label, cid in result.buttons() if label.startswith("U2 "))
            big = await bound_turn(bot.core, await result_of(
                fake, await fake.press(u2, user=ada), timeout=15))
            assert (big.kind, big.size, big.prompt) == ("upscale", "4K", "four foxes")
            assert near(color_of(provider.requests[-1].references[0].data), COLORS[1])
            v3 = next(cid for label, cid in result.buttons() if label.startswith("V3 "))
            varied = await bound_turn(bot.core, await result_of(
                fake, await fake.press(v3, user=ada), timeout=15))
            assert varied.kind == "variation"
            assert near(color_of(provider.requests[-1].references[0].data), COLORS[3])
        async with running_bot(fake, settings, providers={"demo": candidates()}):
            reroll = next(cid for label, cid in result.buttons() if label.startswith("🔄"))
            again = await result_of(fake, await fake.press(reroll, user=ada), timeout=15)
            assert len(again.gallery()) == 3 and "Batch: 3 of 3." in again.text
        assert not fake.errors


async def test_style_no_describe_history_and_settings(settings_factory: SettingsFactory) -> None:
    provider = Describing()
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake),
            providers={"demo": provider}) as bot:
        bo = fake.user("bo")
        kite = await result_of(fake, await fake.slash(
            "imagine", prompt="a kite --style sticker --no text, logos", user=bo), timeout=15)
        sent = provider.images.requests[-1].prompt
        assert sent.startswith("A sheet of die-cut vinyl stickers of a kite")
        assert sent.endswith("Leave out entirely: text, logos.") and "a kite" in kite.text

        asked = await fake.context_menu("Describe image", kite, user=bo)
        answer = await private_answer(fake, asked, timeout=15)
        assert answer.text.startswith("Prompts for this image")
        prompts = [cid for _, cid in answer.buttons() if cid.startswith("ibd:")]
        assert len(prompts) == 3
        drawn = await result_of(fake, await fake.press(prompts[2], user=bo, message=answer),
                                timeout=15)
        assert drawn.text.split(" ", 1)[1].startswith("A cozy storybook illustration")

        for n in range(5):
            await result_of(fake, await fake.slash("imagine", prompt=f"owl {n}", user=bo),
                            timeout=15)
        listed = await private_answer(fake, await fake.slash("history", user=bo), timeout=15)
        assert "page 1 of 2, 7 in all" in listed.text and len(listed.gallery()) == 5
        ids = [cid for _, cid in listed.buttons()]
        assert "ibh:2" in ids and any(cid.startswith("ib:reroll:") for cid in ids)
        await fake.press("ibh:2", user=bo, message=listed)
        await fake.wait_for("edit", lambda e: e.message is not None
                            and "page 2 of 2" in e.message.text, timeout=15)

        await fake.slash("settings", user=bo)
        more = await fake.wait_for("message", lambda e: e.message is not None
                                   and "Images per request" in e.message.text, timeout=15)
        assert more.message is not None
        await fake.select("ib-make:n", ["2"], user=bo, message=more.message)
        await fake.wait_for("edit", lambda e: e.message is not None
                            and "Images per request 2" in e.message.text, timeout=15)
        assert (await bot.core.api.prefs.get(Actor("discord", str(bo.id)))).n == 2
        helped = await private_answer(fake, await fake.slash("help", user=bo, locale="zh-CN"))
        assert "提示词中可加的选项" in helped.text  # localized, the flags as typed
        assert "--n 1-4" in helped.text and "--no a, b" in helped.text and "watercolor" in helped.text
        assert not fake.errors
