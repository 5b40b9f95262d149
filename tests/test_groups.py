"""Per-group settings and safety levels (issue 17) through the service, against the fake upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bot.bootstrap import Core, build_core
from bot.config import Settings
from bot.domain import Actor, ChatRef, ImageRequest, MessageRef, Options, Reply, UserSettings
from bot.errors import InvalidOption, NotAllowed
from bot.groups import GroupOnly, GroupSettings
from bot.messages import load_catalog
from tests.fake_upstream import FakeUpstream, fake_upstream_fixture, gemini_body  # noqa: F401
from tests.fake_upstream import Reply as Answer
from tests.outcomes import jobs

Factory = Callable[..., Settings]
EN = load_catalog("en")
ADMIN = Actor("discord", "10", "mod")
MEMBER = Actor("discord", "11", "member")
GENERAL = ChatRef("discord", "500", "group", group_id="77")
ART = ChatRef("discord", "501", "group", group_id="77")
NSFW = ChatRef("discord", "502", "group", group_id="77", age_restricted=True)
TG_GROUP = ChatRef("telegram", "-1001234", "group", topic="7")
TG_MEMBER = Actor("telegram", "21", "member")


@asynccontextmanager
async def running(settings_factory: Factory, upstream: FakeUpstream,
                  monkeypatch: pytest.MonkeyPatch, **sections: Any) -> AsyncIterator[Core]:
    monkeypatch.setenv("GEMINI_API_KEY", "test-gemini-key")
    core = build_core(settings_factory(providers={"google": {"api": "gemini",
                                                             "base_url": upstream.url}},
                                       **sections))
    await core.start()
    try:
        yield core
    finally:
        await core.stop(grace=0)


async def job(core: Core, actor: Actor, chat: ChatRef, prompt: str = "a kite",
              n: int = 1, **options: Any) -> Reply:
    reply = await jobs(core).imagine(ImageRequest(actor=actor, chat=chat, prompt=prompt,
                                                    options=Options(**options)))
    if reply.ok and reply.turn_id:
        await core.service.bind(reply.turn_id, [MessageRef(chat.platform, chat.chat_id, str(n))])
    return reply


async def config(core: Core, actor: Actor, chat: ChatRef, line: str,
                 admin: bool = True) -> GroupSettings:
    return await core.service.groups.configure(actor, chat, line.split(), group_admin=admin)


async def test_admins_configure_members_cannot(settings_factory: Factory,
                                               fake_upstream: FakeUpstream,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(settings_factory, fake_upstream, monkeypatch) as core:
        with pytest.raises(NotAllowed):
            await config(core, MEMBER, GENERAL, "models nano-banana-2.1", admin=False)
        assert await config(core, MEMBER, GENERAL, "", admin=False) == GroupSettings()
        saved = await config(core, ADMIN, GENERAL, "models nano-banana-2.1")
        assert saved.models == ("nano-banana-2.1",)
        # The server's settings hold in every channel of it, and survive a restart of the store.
        assert await core.service.groups.get(ART) == saved
        with pytest.raises(GroupOnly):
            await config(core, ADMIN, ChatRef("discord", "9", "private"), "models x")
        with pytest.raises(InvalidOption):
            await config(core, ADMIN, GENERAL, "models no-such-model")
        with pytest.raises(InvalidOption):
            await config(core, ADMIN, GENERAL, "safety relaxed")  # the operator did not permit it
        with pytest.raises(InvalidOption):  # no topic here: "here" must not mean "everywhere"
            await config(core, ADMIN, ChatRef("telegram", "-1005", "group"), "channels here")


async def test_a_group_narrows_models_and_channels(settings_factory: Factory,
                                                   fake_upstream: FakeUpstream,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(settings_factory, fake_upstream, monkeypatch) as core:
        await config(core, ADMIN, GENERAL, "models nano-banana-2.1")
        reply = await job(core, MEMBER, GENERAL, model="nano-banana-pro")
        assert reply.error == "error.group_option"
        assert reply.text == EN["error.group_option"].format(
            option="model", allowed="nano-banana-2.1", value="nano-banana-pro")
        # A saved default the group does not allow falls back to what it allows.
        await core.store.save_user_settings(MEMBER.key, UserSettings(model="nano-banana-pro"))
        reply = await job(core, MEMBER, GENERAL, n=2)
        assert reply.ok and "nano-banana-2.1" in reply.text
        # Channels: only #art; a member in #general is told where the bot works.
        await config(core, ADMIN, ART, "channels here")
        reply = await job(core, MEMBER, GENERAL, n=3)
        assert reply.error == "error.not_here"
        assert "<#501>" in reply.text
        assert (await job(core, MEMBER, ART, n=4)).ok
        seen = len(fake_upstream.seen("gemini"))
        assert seen == 2  # the refused jobs never reached the model
        # Telegram forum topics: the topic is the place, linked as t.me/c/<id>/<topic>.
        await config(core, ADMIN, TG_GROUP, "channels 9")
        reply = await job(core, TG_MEMBER, TG_GROUP, n=5)
        assert "https://t.me/c/1234/9" in reply.text


async def test_a_per_member_daily_cap_inside_the_group(settings_factory: Factory,
                                                       fake_upstream: FakeUpstream,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(settings_factory, fake_upstream, monkeypatch) as core:
        await config(core, ADMIN, GENERAL, "member-daily 4")
        assert (await job(core, MEMBER, GENERAL, n=1)).ok  # 4 credits
        reply = await job(core, MEMBER, GENERAL, n=2)
        assert reply.error == "error.quota"
        assert EN["window.member_daily"] in reply.text
        reply = await job(core, MEMBER, ART, n=3)  # another channel of the same server
        assert reply.error == "error.quota"
        assert (await job(core, MEMBER, ChatRef("discord", "1", "private"), n=4)).ok  # not here
        assert (await job(core, ADMIN, GENERAL, n=5)).ok  # the cap is per member


async def test_safety_levels_reach_gemini_and_a_refusal_names_the_level(
        settings_factory: Factory, fake_upstream: FakeUpstream,
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(settings_factory, fake_upstream, monkeypatch,
                       safety={"relaxed": "age-restricted"}) as core:
        assert (await job(core, MEMBER, GENERAL, n=1)).ok
        assert "safetySettings" not in fake_upstream.seen("gemini")[-1].json  # default: Google's
        await config(core, ADMIN, GENERAL, "safety strict")
        assert (await job(core, MEMBER, GENERAL, n=2)).ok
        sent = fake_upstream.seen("gemini")[-1].json["safetySettings"]
        assert {s["threshold"] for s in sent} == {"BLOCK_LOW_AND_ABOVE"}
        assert {s["category"] for s in sent} == {
            "HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_HATE_SPEECH",
            "HARM_CATEGORY_SEXUALLY_EXPLICIT", "HARM_CATEGORY_DANGEROUS_CONTENT"}
        fake_upstream.push("gemini", Answer(json=gemini_body(None, block="PROHIBITED_CONTENT")))
        reply = await job(core, MEMBER, GENERAL, n=3)
        assert reply.error == "error.refused"
        assert reply.text.endswith(EN["safety.applied"].format(level=EN["safety.strict"]))
        # relaxed: only in an age-restricted channel, as the operator permits.
        await config(core, ADMIN, GENERAL, "safety relaxed")
        assert (await job(core, MEMBER, GENERAL, n=4)).ok
        assert "safetySettings" not in fake_upstream.seen("gemini")[-1].json
        assert (await job(core, MEMBER, NSFW, n=5)).ok
        sent = fake_upstream.seen("gemini")[-1].json["safetySettings"]
        assert {s["threshold"] for s in sent} == {"BLOCK_ONLY_HIGH"}


async def test_group_defaults_and_style(settings_factory: Factory, fake_upstream: FakeUpstream,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(settings_factory, fake_upstream, monkeypatch) as core:
        await config(core, ADMIN, GENERAL, "aspect 16:9")
        await config(core, ADMIN, GENERAL, "style watercolor, soft light")
        reply = await job(core, MEMBER, GENERAL, prompt="a harbour")
        assert reply.ok
        body = fake_upstream.seen("gemini")[-1].json
        assert body["generationConfig"]["imageConfig"]["aspectRatio"] == "16:9"
        text = body["contents"][-1]["parts"][0]["text"]
        assert text == "a harbour\n\nStyle: watercolor, soft light"
        turn = await core.service.turn_for(MessageRef("discord", "500", "1"))
        assert turn is not None and turn.prompt == "a harbour"  # the user's words are kept
        assert (await config(core, ADMIN, GENERAL, "reset")) == GroupSettings()
