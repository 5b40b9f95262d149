"""/quota, /settings, /forget, /admin, localization, where the bot works, and command sync."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.config import Settings
from bot.domain import Actor
from tests.fake_discord import (
    FakeDiscord,
    FakeInteraction,
    FakeMessage,
    bound_turn,
    discord_settings,
    private_answer,
    result_of,
    running_bot,
)

SettingsFactory = Callable[..., Settings]


async def settled_edit(fake: FakeDiscord, ix: FakeInteraction, message: FakeMessage) -> str:
    """The content ``message`` shows after ``ix`` (a menu or button on it) edited it."""
    event = await fake.wait_for("edit", lambda e: e.interaction is ix and e.message is message)
    return str(event.data["content"])


async def test_quota_in_english_and_chinese(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(fake, discord_settings(settings_factory, fake)):
        wes = fake.user("wes")
        answer = await private_answer(fake, await fake.slash("quota", user=wes))
        assert answer.ephemeral and answer.text.startswith("Your credits")
        assert "100 of 100 left" in answer.text
        answer = await private_answer(fake, await fake.slash("quota", user=wes, locale="zh-CN"))
        assert answer.text.startswith("你的额度")
        answer = await private_answer(fake, await fake.slash("help", user=wes, locale="zh-TW"))
        assert "/imagine" in answer.text and "Gemini" in answer.text
        assert not fake.errors


async def test_settings_menus_change_the_defaults(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        xia = fake.user("xia")
        panel = await private_answer(fake, await fake.slash("settings", user=xia))
        assert panel.text.startswith("Your defaults: model nano-banana-2.1, size 1K")
        assert panel.custom_ids() == ["ib-set:model", "ib-set:size", "ib-set:aspect",
                                      "ib-set:locale", "ib-set:search"]
        pick = await fake.select("ib-set:model", ["nano-banana-pro"], user=xia, message=panel)
        text = await settled_edit(fake, pick, panel)
        assert "model nano-banana-pro" in text
        sizes = next(c for c in panel._walk() if c.get("custom_id") == "ib-set:size")
        assert [o["value"] for o in sizes["options"]] == ["__default__", "1K", "2K", "4K"]
        pick = await fake.select("ib-set:size", ["4K"], user=xia, message=panel)
        assert "size 4K" in await settled_edit(fake, pick, panel)
        pick = await fake.select("ib-set:locale", ["zh-Hans"], user=xia, message=panel)
        assert (await settled_edit(fake, pick, panel)).startswith("你的默认设置")
        # The saved defaults apply to the next /imagine.
        result = await result_of(fake, await fake.slash("imagine", prompt="a bridge", user=xia))
        turn = await bound_turn(bot.core, result)
        assert (turn.model, turn.size) == ("nano-banana-pro", "4K")
        assert [label for label, _ in result.buttons()][:2] == ["🔄 重新生成", "🎲 变体"]
        assert "消耗" in result.text
        assert not fake.errors


async def test_forget_deletes_history_after_confirmation(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        yan = fake.user("yan")
        result = await result_of(fake, await fake.slash("imagine", prompt="a moth", user=yan))
        turn = await bound_turn(bot.core, result)
        question = await private_answer(fake, await fake.slash("forget", user=yan))
        assert question.text.startswith("Delete all your stored images")
        press = await fake.press("ib-forget", user=yan, message=question)
        assert (await settled_edit(fake, press, question)).startswith("Deleted 1 of your")
        assert question.buttons() == []
        assert await bot.core.conversations.get(turn.id) is None
        assert not fake.errors


async def test_admin_commands(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake:
        boss, mod, zed = fake.user("boss"), fake.user("mod"), fake.user("zed")
        fake.guild.moderators.add(mod.id)
        settings = discord_settings(settings_factory, fake, bot={"admins": [f"discord:{boss.id}"]})
        async with running_bot(fake, settings) as bot:
            answer = await private_answer(fake, await fake.slash(
                "admin", subcommand="grant", user=boss, options={"user": zed, "credits": 50}))
            assert answer.text == f"Granted 50 credits to discord:{zed.id}; their bonus is now 50."
            usage = await bot.core.service.usage(Actor("discord", str(zed.id)))
            assert usage.bonus == 50
            answer = await private_answer(fake, await fake.slash("admin", subcommand="stats",
                                                                 user=boss))
            assert answer.text.startswith("Today:")
            # Neither an ordinary user nor (in an open bot) a Manage Server member may do this.
            for who in (zed, mod):
                answer = await private_answer(fake, await fake.slash(
                    "admin", subcommand="grant", user=who, options={"user": who, "credits": 5}))
                assert answer.text == "You can't do that here."
            answer = await private_answer(fake, await fake.slash(
                "admin", subcommand="ban", user=boss, options={"user": zed}))
            assert answer.text == f"discord:{zed.id} is now blocked."
            blocked = await private_answer(fake, await fake.slash("imagine", prompt="x", user=zed))
            assert blocked.text == "You have been blocked from using this bot."
        assert not fake.errors


async def test_manage_server_members_of_allowed_guilds_are_admins(
        settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake:
        mod, amy = fake.user("mod"), fake.user("amy")
        fake.guild.moderators.add(mod.id)
        settings = discord_settings(settings_factory, fake,
                                    discord={"allowed_guilds": [fake.guild.id]})
        async with running_bot(fake, settings):
            answer = await private_answer(fake, await fake.slash(
                "admin", subcommand="limit", user=mod, options={"user": amy, "daily": 7}))
            assert answer.text == f"discord:{amy.id}'s limits: 7 per day, 1500 per month."
            answer = await private_answer(fake, await fake.slash("admin", subcommand="sync",
                                                                 user=mod))
            assert answer.text == "You can't do that here."
        assert not fake.errors


async def test_allowed_guilds_dms_and_threads(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake:
        other = fake.add_guild("Elsewhere", thread=True)
        thread = next(c for c in other.channels if c.type == 11)
        bea = fake.user("bea")
        settings = discord_settings(settings_factory, fake, discord={
            "allowed_guilds": [fake.guild.id, other.id], "allow_dms": False})
        async with running_bot(fake, settings):
            ix = await fake.slash("imagine", prompt="in a thread", user=bea, channel=thread)
            result = await result_of(fake, ix)
            assert result.channel_id == thread.id
            ix = await fake.slash("imagine", prompt="in a DM", user=bea, channel=fake.dm(bea))
            refused = await fake.wait_for("message", lambda e: e.interaction is ix)
            assert refused.message is not None and refused.message.ephemeral
            assert refused.message.text == "You can't do that here."
        stranger = fake.add_guild("Stranger")
        settings = discord_settings(settings_factory, fake, discord={
            "allowed_guilds": [fake.guild.id], "allow_dms": True})
        async with running_bot(fake, settings):
            ix = await fake.slash("imagine", prompt="in a DM", user=bea, channel=fake.dm(bea))
            assert (await result_of(fake, ix)).channel_id == fake.dm(bea).id
            ix = await fake.slash("quota", user=bea, channel=stranger.channels[0])
            refused = await fake.wait_for("message", lambda e: e.interaction is ix)
            assert refused.message is not None and "can't do that" in refused.message.text
        assert not fake.errors


async def test_commands_sync_only_when_asked(settings_factory: SettingsFactory) -> None:
    async with FakeDiscord() as fake:
        boss = fake.user("boss")
        settings = discord_settings(settings_factory, fake, bot={"admins": [f"discord:{boss.id}"]})
        async with running_bot(fake, settings):
            pass
        assert not [e for e in fake.events if e.kind == "sync"]
        async with running_bot(fake, settings, sync_commands=True):
            synced = await fake.wait_for("sync")
            by_name = {c["name"]: c for c in synced.data["commands"]}
            assert set(by_name) == {"imagine", "quota", "settings", "forget", "help", "admin",
                                    "Edit image", "config", "describe", "history",
                                    "Describe image"}
            assert by_name["config"]["name_localizations"] == {"zh-CN": "设置群组",
                                                               "zh-TW": "設定群組"}
            imagine = by_name["imagine"]
            assert imagine["name_localizations"] == {"zh-CN": "画图", "zh-TW": "畫圖"}
            options = {o["name"]: o for o in imagine["options"]}
            assert [o["type"] for o in imagine["options"]][:5] == [3, 11, 11, 11, 11]
            assert [c["value"] for c in options["model"]["choices"]] == [
                "nano-banana-2.1", "nano-banana-pro", "nano-banana-2-lite"]
            assert "4K" in [c["value"] for c in options["size"]["choices"]]
            assert by_name["Edit image"]["type"] == 3
            assert by_name["Edit image"]["name_localizations"]["zh-CN"] == "编辑图片"
            admin = {o["name"] for o in by_name["admin"]["options"]}
            assert admin == {"grant", "limit", "ban", "unban", "stats", "sync"}
            mark = fake.mark()
            answer = await private_answer(fake, await fake.slash("admin", subcommand="sync",
                                                                 user=boss))
            assert answer.text.startswith("Synced 11 commands")
            await fake.wait_for("sync", since=mark)
        assert not fake.errors


async def test_unexpected_failures_show_an_error_id_not_a_traceback(
        settings_factory: SettingsFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeDiscord() as fake, running_bot(
            fake, discord_settings(settings_factory, fake)) as bot:
        async def broken(actor: Actor) -> None:
            raise RuntimeError("secret internals")

        monkeypatch.setattr(bot.core.prefs, "get", broken)
        answer = await private_answer(fake, await fake.slash("settings", user=fake.user("ali")))
        assert answer.text.startswith("Something went wrong (error ")
        assert "secret" not in answer.text and "Traceback" not in answer.text
