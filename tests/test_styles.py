"""Issue 16.3 and 16.5: style presets and negative prompts reach the model as documented."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.config import Settings
from bot.domain import Actor, ChatRef
from bot.errors import InvalidOption
from bot.styles import BUILTIN_STYLES, Styles, compose
from tests.outcomes import jobs
from tests.test_service import ALICE, FakeProvider, ask, running

Factory = Callable[..., Settings]
GROUP = ChatRef("telegram", "-100", "group")


def test_compose_puts_the_users_words_in_the_template_and_the_exclusions_last() -> None:
    style = BUILTIN_STYLES["watercolor"]
    text = compose("a fox", style, ("cars", "  people  ", ""))
    assert text.startswith("A watercolor painting of a fox:")
    assert text.endswith("\n\nLeave out entirely: cars, people.")
    assert compose("a fox") == "a fox"


def test_operator_presets_add_and_replace_and_unknown_ones_are_named() -> None:
    styles = Styles({"watercolor": BUILTIN_STYLES["pixel"]})
    assert styles.get("WaterColor") is BUILTIN_STYLES["pixel"]
    with pytest.raises(InvalidOption) as info:
        styles.get("anime")
    assert info.value.params["option"] == "--style" and "figurine" in info.value.params["allowed"]


async def test_style_and_no_reach_the_provider_and_the_caption_keeps_the_users_words(
        settings_factory: Factory) -> None:
    provider = FakeProvider()
    settings = settings_factory(styles={"noir": {"template": "A film noir still of {prompt}."}})
    async with running(settings, providers={"demo": provider}) as core:
        reply = await jobs(core).imagine(ask("a detective", style="noir", negative=("color",)))
        assert reply.ok, reply.text
        assert provider.requests[-1].prompt == ("A film noir still of a detective.\n\n"
                                                "Leave out entirely: color.")
        assert reply.text.startswith("a detective\n")
        bad = await jobs(core).imagine(ask("a detective", style="anime"))
        assert bad.error == "error.invalid_option" and "--style “anime”" in bad.text
        assert len(provider.requests) == 1  # refused before anything was reserved or sent
        assert (await core.service.usage(ALICE)).credits_left == 100 - reply.credits_used


async def test_a_groups_style_may_name_a_preset(settings_factory: Factory) -> None:
    provider = FakeProvider()
    async with running(settings_factory(), providers={"demo": provider}) as core:
        admin = Actor("telegram", "7", is_admin=True)
        await core.api.configure_group(admin, GROUP, ["style", "pixel"], group_admin=True)
        assert (await jobs(core).imagine(ask("a castle", chat=GROUP))).ok
        assert provider.requests[-1].prompt.startswith("Pixel art of a castle:")
        await core.api.configure_group(admin, GROUP, ["style", "moody", "blue"], group_admin=True)
        assert (await jobs(core).imagine(ask("a castle", chat=GROUP))).ok
        assert provider.requests[-1].prompt == "a castle\n\nStyle: moody blue"
