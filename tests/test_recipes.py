"""Issue 16.2-16.3: a result's recipe (style, --no) survives its buttons; /settings n and style."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from bot.config import Settings
from bot.domain import Action
from tests.outcomes import jobs
from tests.test_service import ALICE, CHAT, FakeProvider, ask, delivered, running

Factory = Callable[..., Settings]
STYLED = "A watercolor painting of a fox:"
LEFT_OUT = "Leave out entirely: cars, people."


async def test_reroll_upscale_and_variations_keep_the_style_and_the_exclusions(
        settings_factory: Factory) -> None:
    provider = FakeProvider()
    async with running(settings_factory(), providers={"demo": provider}) as core:
        reply = await jobs(core).imagine(ask("a fox", model="nano-banana-pro", style="watercolor",
                                             negative=("cars", "people")))
        assert reply.ok, reply.text
        await delivered(core, reply)
        turn = await core.conversations.get(reply.turn_id or "")
        assert turn is not None and (turn.style, turn.negative) == ("watercolor", ("cars", "people"))
        by_kind = {a.kind: a for a in reply.actions}
        for action in (by_kind["reroll"], by_kind["upscale"], by_kind["variations"]):
            again = await jobs(core).act(ALICE, CHAT, action)
            assert again.ok, again.text
            sent = provider.requests[-1].prompt
            assert sent.endswith(LEFT_OUT), (action.kind, sent)
            made = await core.conversations.get(again.turn_id or "")
            assert made is not None and made.style == "watercolor", action.kind
            if action.kind == "reroll":  # U and V send the image with a hidden instruction
                assert sent.startswith(STYLED), (action.kind, sent)
            else:
                assert provider.requests[-1].references, action.kind
            await delivered(core, again, message_id=f"m-{action.kind}")
        # A variation's own reroll is a variation again (not an edit with the original words).
        varied = await core.conversations.get(again.turn_id or "")
        assert varied is not None and varied.kind == "variation"
        rerolled = await jobs(core).act(ALICE, CHAT, Action("reroll", varied.id))
        assert rerolled.ok and provider.requests[-1].prompt.startswith("Make a subtle variation")
        assert provider.requests[-1].prompt.endswith(LEFT_OUT)


async def test_settings_defaults_for_n_and_style_apply_to_new_images_only(
        settings_factory: Factory) -> None:
    provider = FakeProvider()
    async with running(settings_factory(), providers={"demo": provider}) as core:
        await core.api.prefs.update(ALICE, "n", "2")
        await core.api.prefs.update(ALICE, "style", "pixel")
        shown = await core.api.shown_settings(ALICE)
        assert (shown.n, shown.style) == (2, "pixel")
        reply = await jobs(core).imagine(ask("a castle"))
        assert reply.ok and len(reply.candidates) == 2, reply.text
        assert [r.prompt.startswith("Pixel art of a castle:") for r in provider.requests] == [
            True, True]
        await delivered(core, reply)
        single = await jobs(core).imagine(ask("a castle", n=1, style="none"))
        assert single.ok and not single.candidates and provider.requests[-1].prompt == "a castle"
        await delivered(core, single, message_id="501")
        edit = await jobs(core).edit(replace(ask("make it night"), parent_turn_id=single.turn_id))
        assert edit.ok and not edit.candidates
        assert provider.requests[-1].prompt == "make it night"
