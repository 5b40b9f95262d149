"""The service facade through a real Core (SQLite on disk, demo or a small fake provider)."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from PIL import Image

from bot.bootstrap import Core, build_core
from bot.config import Settings
from bot.domain import Action, Actor, ChatRef, ImageData, ImageRequest, MessageRef, Options, Progress, Reply
from bot.errors import (
    BotError,
    InvalidOption,
    JobTimeout,
    NoImage,
    NotAllowed,
    NotOwner,
    Refused,
    UpstreamBusy,
    UpstreamConfig,
    UpstreamError,
    UpstreamNoCredit,
)
from bot.messages import load_catalog
from bot.providers.base import ProviderRequest, ProviderResult
from tests.helpers import FakeClock, png_data
from tests.outcomes import jobs

Factory = Callable[..., Settings]
ALICE = Actor("telegram", "1", "alice")
BOB = Actor("telegram", "2", "bob")
ADMIN = Actor("telegram", "99", "admin")
CHAT = ChatRef("telegram", "1", "private")
GROUP = ChatRef("telegram", "-100", "group")
EN = load_catalog("en")
ZH = load_catalog("zh-Hans")


def ask(prompt: str, actor: Actor = ALICE, chat: ChatRef = CHAT, **options: Any) -> ImageRequest:
    return ImageRequest(actor=actor, chat=chat, prompt=prompt, options=Options(**options))


def pixels(image: ImageData) -> tuple[int, int]:
    with Image.open(io.BytesIO(image.data)) as im:
        return im.size


class FakeProvider:
    """An ImageProvider that answers with ``outcome()``: a result, or an error it raises."""

    name = "demo"

    def __init__(self, outcome: Callable[[], Any] | None = None, delay: float = 0.0) -> None:
        self.outcome = outcome or (lambda: ProviderResult(images=(png_data(color=(0, 90, 200)),),
                                                          text="ok", finish_reason="STOP"))
        self.delay = delay
        self.requests: list[ProviderRequest] = []
        self.started = asyncio.Event()

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        self.requests.append(request)
        self.started.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        result = self.outcome()
        if isinstance(result, BaseException):
            raise result
        assert isinstance(result, ProviderResult)
        return result

    async def aclose(self) -> None:
        pass


@asynccontextmanager
async def running(settings: Settings, **kwargs: Any) -> AsyncIterator[Core]:
    core = build_core(settings, **kwargs)
    await core.start()
    try:
        yield core
    finally:
        await core.stop(grace=0)


async def kinds(core: Core, actor: Actor = ALICE) -> list[str]:
    return [row.kind for row in await core.store.ledger(actor.key)]


async def used_today(core: Core, actor: Actor = ALICE) -> int:
    window = (await core.service.usage(actor)).window("user_daily")
    assert window is not None
    return int(window.used)


async def delivered(core: Core, reply: Reply, message_id: str = "500",
                    chat: ChatRef = CHAT) -> MessageRef:
    """What an adapter does after sending a result: bind the message (settling the credits)."""
    assert reply.ok and reply.turn_id, reply.text
    message = MessageRef(chat.platform, chat.chat_id, message_id)
    await core.service.bind(reply.turn_id, [message])
    return message


# ----- imagine and its buttons ----------------------------------------------------------------


async def test_imagine_returns_a_reply_with_an_image(core: Core) -> None:
    reply = await jobs(core).imagine(ask("a red fox in the snow"))
    assert reply.ok and reply.error is None
    assert len(reply.images) == 1 and reply.images[0].mime == "image/png"
    assert pixels(reply.images[0]) == (1024, 1024)
    assert "a red fox in the snow" in reply.text
    assert EN["result.demo"] in reply.text
    assert reply.credits_used == 4 and reply.locale == "en"
    assert reply.turn_id is not None
    assert [a.kind for a in reply.actions] == ["reroll", "upscale", "upscale", "variations",
                                               "edit", "delete"]
    assert all(a.turn_id == reply.turn_id for a in reply.actions)
    assert all(len(a.encode().encode()) <= 64 for a in reply.actions)
    assert all(Action.decode(a.encode()) == Action(a.kind, a.turn_id, a.size)
               for a in reply.actions)
    turn = await core.conversations.get(reply.turn_id)
    assert turn is not None and turn.model == "nano-banana-2.1" and turn.credits == 4
    # When the image was ready (its turn made): the order Telegram's budget sends results in.
    assert reply.ready_at == turn.created_at.timestamp()


@pytest.mark.parametrize(("model", "size", "upscales"), [
    ("nano-banana-2-lite", "1K", []),
    ("nano-banana-pro", "1K", [("2K", 14), ("4K", 24)]),
    ("nano-banana-pro", "2K", [("4K", 24)]),
    ("nano-banana-2.1", "1K", [("2K", 6), ("4K", 12)]),
    ("nano-banana-2.1", "2K", [("4K", 12)]),
    ("nano-banana-2", "1K", [("2K", 6), ("4K", 12)]),  # a retired name means its successor
])
async def test_upscale_buttons_only_for_larger_sizes(settings_factory: Factory, model: str,
                                                     size: str,
                                                     upscales: list[tuple[str, int]]) -> None:
    async with running(settings_factory(), providers={"demo": FakeProvider()}) as core:
        reply = await jobs(core).imagine(ask("a lighthouse", model=model, size=size))
        assert reply.ok, reply.text
        got = [(a.size, a.cost) for a in reply.actions if a.kind == "upscale"]
        assert got == upscales


async def test_credits_are_held_until_bind_settles_them(core: Core) -> None:
    reply = await jobs(core).imagine(ask("a red fox"))
    usage = await core.service.usage(ALICE)
    assert usage.reserved == 4 and await used_today(core) == 4
    assert await kinds(core) == ["reserve"]
    message = await delivered(core, reply)
    usage = await core.service.usage(ALICE)
    assert usage.reserved == 0 and await used_today(core) == 4
    assert await kinds(core) == ["reserve", "settle"]
    found = await core.service.turn_for(message)
    assert found is not None and found.id == reply.turn_id
    # Binding more messages later (a follow-up) does not settle twice.
    await core.service.bind(reply.turn_id or "", [MessageRef("telegram", "1", "501")])
    assert await kinds(core) == ["reserve", "settle"]


async def test_undeliverable_refunds_and_drops_the_turn(core: Core) -> None:
    reply = await jobs(core).imagine(ask("a red fox"))
    assert reply.turn_id
    await core.service.undeliverable(reply.turn_id)
    assert await used_today(core) == 0 and (await core.service.usage(ALICE)).reserved == 0
    assert await kinds(core) == ["reserve", "refund"]
    assert await core.conversations.get(reply.turn_id) is None


async def test_reroll_upscale_and_variations(settings_factory: Factory) -> None:
    async with running(settings_factory()) as core:
        service = jobs(core)
        first = await service.imagine(ask("a castle", model="nano-banana-pro"))
        await delivered(core, first)
        turn_id = first.turn_id or ""

        reroll = await service.act(ALICE, CHAT, Action("reroll", turn_id))
        assert reroll.ok and reroll.turn_id not in (None, turn_id)
        rerolled = await core.conversations.get(reroll.turn_id or "")
        assert rerolled is not None
        assert (rerolled.prompt, rerolled.kind, rerolled.parent_id) == ("a castle", "reroll", None)
        assert reroll.credits_used == 14

        upscale = await service.act(ALICE, CHAT, Action("upscale", turn_id, size="2K"))
        assert upscale.ok, upscale.text
        upscaled = await core.conversations.get(upscale.turn_id or "")
        assert upscaled is not None and (upscaled.size, upscaled.kind) == ("2K", "upscale")
        assert pixels(upscale.images[0]) == (2048, 2048)
        assert upscale.credits_used == 14
        assert [a.size for a in upscale.actions if a.kind == "upscale"] == ["4K"]

        variation = await service.act(ALICE, CHAT, Action("variations", turn_id))
        assert variation.ok
        varied = await core.conversations.get(variation.turn_id or "")
        # Issue 16.2: the chosen image goes as a reference; the user's words stay the prompt.
        assert varied is not None and varied.parent_id is None and varied.kind == "variation"
        assert varied.prompt == "a castle" and "\n🎲 Variation\n" in variation.text
        original = await core.conversations.get(turn_id)
        assert original is not None and len(varied.input_hashes) == 1  # the castle, as a reference

        bad = await service.act(ALICE, CHAT, Action("upscale", turn_id, size="8K"))
        assert bad.error == "error.invalid_option"
        # Each job's credits are held until its delivery.
        assert (await service.usage(ALICE)).reserved == 14 * 3


async def test_act_on_a_missing_turn(core: Core) -> None:
    reply = await jobs(core).act(ALICE, CHAT, Action("reroll", "feedfacecafe"))
    assert reply.error == "error.not_found" and reply.text == EN["error.not_found"]


# ----- edits ----------------------------------------------------------------------------------


async def test_edit_by_replying_to_a_bound_message_continues_the_conversation(core: Core) -> None:
    first = await jobs(core).imagine(ask("a small house"))
    message = await delivered(core, first)
    edit = await jobs(core).edit(ask("add a red door"), reply_to=message)
    assert edit.ok, edit.text
    turn = await core.conversations.get(edit.turn_id or "")
    assert turn is not None and turn.parent_id == first.turn_id and turn.kind == "edit"
    second = await delivered(core, edit, "501")
    third = await jobs(core).edit(ask("make it night"), reply_to=second)
    chain = await core.conversations.chain(third.turn_id or "")
    assert [t.prompt for t in chain] == ["a small house", "add a red door", "make it night"]


async def test_edit_history_reaches_the_provider(settings_factory: Factory) -> None:
    fake = FakeProvider()
    async with running(settings_factory(), providers={"demo": fake}) as core:
        first = await jobs(core).imagine(ask("a boat"))
        message = await delivered(core, first)
        await jobs(core).edit(ask("paint it blue"), reply_to=message)
        request = fake.requests[-1]
        assert request.prompt == "paint it blue"
        assert [h.prompt for h in request.history] == ["a boat"]
        assert request.history[0].outputs == first.images


async def test_edit_with_supplied_images_starts_fresh(core: Core) -> None:
    unbound = MessageRef("telegram", "1", "42")  # someone's photo, not one of ours
    reply = await jobs(core).edit(
        ImageRequest(ALICE, CHAT, "make it a watercolour", references=(png_data(),)),
        reply_to=unbound)
    assert reply.ok, reply.text
    turn = await core.conversations.get(reply.turn_id or "")
    assert turn is not None and turn.parent_id is None and len(turn.input_hashes) == 1


async def test_edit_with_no_reference(core: Core) -> None:
    for reply_to in (None, MessageRef("telegram", "1", "404")):
        reply = await jobs(core).edit(ask("make it night"), reply_to=reply_to)
        assert reply.error == "error.no_reference"
        assert reply.text == EN["error.no_reference"]
    assert await kinds(core) == []


async def test_edit_of_a_deleted_turn(core: Core) -> None:
    first = await jobs(core).imagine(ask("a boat"))
    await delivered(core, first)
    await core.service.delete(ALICE, first.turn_id or "")
    request = ImageRequest(ALICE, CHAT, "paint it", parent_turn_id=first.turn_id)
    reply = await jobs(core).edit(request)
    assert reply.error == "error.not_found"


# ----- refused before anything is charged -----------------------------------------------------


@pytest.mark.parametrize(("request_", "key", "fragment"), [
    (ImageRequest(ALICE, CHAT, "many refs", references=(png_data(),) * 15), "error.too_many_refs",
     "at most 14"),
    (ask("big", size="8K"), "error.invalid_option", "8K"),
    (ask("wide", aspect="7:3"), "error.invalid_option", "7:3"),
    (ask("who", model="dall-e-3"), "error.invalid_option", "nano-banana-pro"),
    (ask("   "), "error.empty_prompt", "/imagine"),
    (ImageRequest(ALICE, CHAT, "broken", references=(ImageData(b"not an image", "image/png"),)),
     "error.unsupported", "PNG"),
])
async def test_bad_requests_are_refused_and_nothing_is_charged(
        core: Core, request_: ImageRequest, key: str, fragment: str) -> None:
    reply = await jobs(core).imagine(request_)
    assert reply.error == key and not reply.ok
    assert fragment in reply.text
    assert reply.images == () and reply.actions == ()
    assert await kinds(core) == []


async def test_too_many_references_counts_the_edited_image(core: Core) -> None:
    first = await jobs(core).imagine(ask("a boat"))
    message = await delivered(core, first)
    request = ImageRequest(ALICE, CHAT, "add these", references=(png_data(),) * 14)
    reply = await jobs(core).edit(request, reply_to=message)
    assert reply.error == "error.too_many_refs" and "15" in reply.text


# ----- quota ----------------------------------------------------------------------------------


async def test_quota_exhausted_says_which_window_and_when(settings_factory: Factory) -> None:
    clock = FakeClock(datetime(2024, 5, 10, 20, 30, tzinfo=UTC))
    settings = settings_factory(quota={"user_daily_credits": 4})
    async with running(settings, providers={"demo": FakeProvider()}, clock=clock) as core:
        await delivered(core, await jobs(core).imagine(ask("one")))
        reply = await jobs(core).imagine(ask("two"))
        assert reply.error == "error.quota"
        assert reply.text == ("Not enough credits for this: it costs 4, and your daily allowance "
                              "has 0 left. Resets in 3 h 30 min.")
        zh = await jobs(core).imagine(ask("two", actor=Actor("telegram", "1", locale="zh-CN")))
        assert zh.locale == "zh-Hans" and "3" in zh.text and "30" in zh.text
        assert ZH["window.user_daily"] in zh.text
        assert await kinds(core) == ["reserve", "settle"]


async def test_global_budget_exhausted(settings_factory: Factory) -> None:
    clock = FakeClock(datetime(2024, 5, 10, 23, 59, 30, tzinfo=UTC))
    settings = settings_factory(quota={"global_daily_usd": 0.05}, bot={"admins": [ADMIN.key]})
    async with running(settings, providers={"demo": FakeProvider()}, clock=clock) as core:
        assert (await jobs(core).imagine(ask("one", actor=ADMIN))).ok
        reply = await jobs(core).imagine(ask("two", actor=ADMIN))
        assert reply.error == "error.quota"
        assert reply.text == EN["error.quota_global"].format(resets=EN["time.soon"])


async def test_quota_text(core: Core) -> None:
    await jobs(core).imagine(ask("one"))
    text = await core.service.quota_text(ALICE)
    assert text.startswith(EN["quota.title"])
    assert "your daily allowance: 96 of 100 left" in text
    assert "your monthly allowance: 1496 of 1500 left" in text
    assert "$19.97 of $20.00 left" in text  # 0.0336 held
    assert EN["quota.reserved"].format(reserved=4) in text
    assert text.endswith(EN["quota.costs"].format(costs="nano-banana-2.1: 1K 4, 2K 6, 4K 12"))


# ----- provider failures ----------------------------------------------------------------------

FAILURES: list[tuple[Callable[[], BotError], str, str]] = [
    (lambda: Refused("I can't draw real people."), "error.refused_reason", "real people"),
    (lambda: Refused(finish_reason="IMAGE_SAFETY"), "error.refused", ""),
    (lambda: NoImage("Here is a poem instead."), "error.no_image_text", "poem"),
    (lambda: NoImage(), "error.no_image", ""),
    (lambda: UpstreamBusy(12), "error.busy", "12"),
    (lambda: UpstreamError("HTTP 502"), "error.upstream", ""),
    (lambda: UpstreamConfig("401 from relay"), "error.unavailable", ""),
    (lambda: UpstreamNoCredit("402"), "error.unavailable", ""),
    (lambda: JobTimeout(120), "error.timeout", "120"),
]


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
@pytest.mark.parametrize(("error", "template", "fragment"), FAILURES)
async def test_provider_errors_are_told_and_refunded(
        settings_factory: Factory, locale: str, error: Callable[[], BotError], template: str,
        fragment: str) -> None:
    actor = Actor("telegram", "1", locale=locale)
    async with running(settings_factory(), providers={"demo": FakeProvider(error)}) as core:
        reply = await jobs(core).imagine(ask("a fox", actor=actor))
        err = error()
        assert reply.error == err.key and not reply.ok and reply.images == ()
        catalog = ZH if locale == "zh-CN" else EN
        assert reply.locale == ("zh-Hans" if locale == "zh-CN" else "en")
        head = catalog[template].split("{", 1)[0]
        assert reply.text.startswith(head), reply.text
        assert fragment in reply.text
        assert ("未扣除额度" if locale == "zh-CN" else "Nothing was charged") in reply.text
        if err.key in ("error.upstream", "error.unavailable"):
            assert err.detail not in reply.text  # status lines are for the log, not the chat
        usage = await core.service.usage(actor)
        assert usage.reserved == 0 and await used_today(core, actor) == 0
        assert await kinds(core, actor) == ["reserve", "refund"]


async def test_scheduler_timeout_is_refunded(settings_factory: Factory) -> None:
    settings = settings_factory(limits={"timeout_seconds": 0.2})
    async with running(settings, providers={"demo": FakeProvider(delay=30)}) as core:
        reply = await jobs(core).imagine(ask("slow"))
        assert reply.error == "error.timeout"
        assert await kinds(core) == ["reserve", "refund"]


async def test_cancelled_caller_is_refunded(settings_factory: Factory) -> None:
    fake = FakeProvider(delay=30)
    async with running(settings_factory(), providers={"demo": fake}) as core:
        task = asyncio.create_task(jobs(core).imagine(ask("never mind")))
        await asyncio.wait_for(fake.started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await kinds(core) == ["reserve", "refund"]
        assert (await core.service.usage(ALICE)).reserved == 0


async def test_charge_refusals_settles_refusals(settings_factory: Factory) -> None:
    settings = settings_factory(quota={"charge_refusals": True})
    async with running(settings, providers={"demo": FakeProvider(lambda: Refused())}) as core:
        reply = await jobs(core).imagine(ask("something unsafe"))
        assert reply.error == "error.refused_charged"
        assert "charged" in reply.text and "Nothing was charged" not in reply.text
        assert await kinds(core) == ["reserve", "settle"]
        assert await used_today(core) == 4 and (await core.service.usage(ALICE)).reserved == 0
    # Other failures are still refunded with charge_refusals on.
    async with running(settings, providers={"demo": FakeProvider(lambda: NoImage())}) as core:
        await jobs(core).imagine(ask("x", actor=BOB))
        assert await kinds(core, BOB) == ["reserve", "refund"]


async def test_internal_errors_show_an_id_and_no_traceback(settings_factory: Factory,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    def boom() -> BaseException:
        return RuntimeError("secret detail: token=abc123 at /srv/bot/providers.py line 7")

    async with running(settings_factory(), providers={"demo": FakeProvider(boom)}) as core:
        with caplog.at_level(logging.ERROR):
            reply = await jobs(core).imagine(ask("a fox"))
        assert reply.error == "error.internal"
        match = re.fullmatch(r"Something went wrong \(error ([0-9a-f]{8})\)\. Nothing was charged\.",
                             reply.text)
        assert match, reply.text
        for leak in ("Traceback", "RuntimeError", "secret", "token", "/srv", "line 7"):
            assert leak not in reply.text
        assert await kinds(core) == ["reserve", "refund"]
        # The operator's log has the id and the traceback.
        logged = [r for r in caplog.records if match.group(1) in r.getMessage()]
        assert logged and logged[0].exc_info is not None


# ----- bans, owners, delete, forget -----------------------------------------------------------


async def test_banned_user_is_told_once_then_silent(settings_factory: Factory) -> None:
    settings = settings_factory(bot={"admins": [ADMIN.key]})
    async with running(settings, providers={"demo": FakeProvider()}) as core:
        await core.admin.ban(ADMIN, ALICE.key, True, "en")
        first = await jobs(core).imagine(ask("a fox"))
        assert first.error == "error.banned" and first.text == EN["error.banned"]
        for _ in range(2):
            again = await jobs(core).imagine(ask("a fox"))
            assert again.error == "error.banned" and again.text == ""
        silent_edit = await jobs(core).edit(ImageRequest(ALICE, CHAT, "x", references=(png_data(),)))
        assert silent_edit.error == "error.banned" and silent_edit.text == ""
        assert await kinds(core) == []
        await core.admin.ban(ADMIN, ALICE.key, False, "en")
        assert (await jobs(core).imagine(ask("a fox"))).ok
        await core.admin.ban(ADMIN, ALICE.key, True, "en")  # a new ban is told again
        assert (await jobs(core).imagine(ask("a fox"))).text == EN["error.banned"]


async def test_buttons_belong_to_the_requester(settings_factory: Factory) -> None:
    settings = settings_factory(bot={"admins": [ADMIN.key]})
    async with running(settings, providers={"demo": FakeProvider()}) as core:
        reply = await jobs(core).imagine(ask("a fox", chat=GROUP))
        turn_id = reply.turn_id or ""
        other = await jobs(core).act(BOB, GROUP, Action("reroll", turn_id))
        assert other.error == "error.not_owner" and other.text == EN["error.not_owner"]
        assert await kinds(core, BOB) == []
        assert (await core.api.owned(ALICE, turn_id)).id == turn_id
        with pytest.raises(NotOwner):
            await core.api.owned(BOB, turn_id)
        assert (await core.api.owned(ADMIN, turn_id)).id == turn_id
        assert (await jobs(core).act(ADMIN, GROUP, Action("reroll", turn_id))).ok
        with pytest.raises(NotOwner):
            await core.service.delete(BOB, turn_id)


async def test_delete_returns_the_bound_messages(core: Core) -> None:
    reply = await jobs(core).imagine(ask("a fox"))
    photo = MessageRef("telegram", "1", "10")
    document = MessageRef("telegram", "1", "11")
    await core.service.bind(reply.turn_id or "", [photo, document])
    removed = await core.service.delete(ALICE, reply.turn_id or "")
    assert set(removed) == {photo, document}
    assert await core.service.turn_for(photo) is None
    assert await core.conversations.get(reply.turn_id or "") is None
    blobs = core.conversations.blobs.objects.root  # type: ignore[attr-defined]
    assert not [p for p in blobs.rglob("*") if p.is_file()]


async def test_forget(core: Core) -> None:
    first = await jobs(core).imagine(ask("a fox"))
    message = await delivered(core, first)
    await jobs(core).edit(ask("at night"), reply_to=message)
    bob = await jobs(core).imagine(ask("a dog", actor=BOB))
    assert await core.service.forget(ALICE) == 2
    assert await core.store.turns_of(ALICE.key) == []
    assert await core.service.turn_for(message) is None
    assert await core.service.forget(ALICE) == 0
    root = core.conversations.blobs.objects.root  # type: ignore[attr-defined]
    remaining = {p.name for p in root.rglob("*") if p.is_file()}
    bob_turn = await core.conversations.get(bob.turn_id or "")
    assert bob_turn is not None and remaining == set(bob_turn.output_hashes)
    # The books are not part of "forget": the ledger is an audit trail.
    assert "reserve" in await kinds(core)


async def test_progress_events(core: Core) -> None:
    events: list[Progress] = []

    async def on_progress(event: Progress) -> None:
        events.append(event)

    assert (await jobs(core).imagine(ask("a fox"), progress=on_progress)).ok
    assert [e.stage for e in events] == ["started", "finished"]


# ----- preferences and admin ------------------------------------------------------------------


async def test_preferences_update_validation(core: Core) -> None:
    prefs = core.prefs
    with pytest.raises(InvalidOption) as info:
        await prefs.update(ALICE, "size", "512")  # nano-banana-2.1 offers 1K, 2K, 4K
    assert info.value.params["allowed"] == "1K, 2K, 4K"
    with pytest.raises(InvalidOption):
        await prefs.update(ALICE, "colour", "red")
    with pytest.raises(InvalidOption):
        await prefs.update(ALICE, "model", "dall-e-3")
    with pytest.raises(InvalidOption):
        await prefs.update(ALICE, "locale", "fr")
    with pytest.raises(InvalidOption):
        await prefs.update(ALICE, "aspect", "7:3")
    saved = await prefs.update(ALICE, "model", "nano-banana-pro")
    saved = await prefs.update(ALICE, "size", "2k")
    saved = await prefs.update(ALICE, "aspect", "16:9")
    assert (saved.model, saved.size, saved.aspect) == ("nano-banana-pro", "2K", "16:9")
    saved = await prefs.update(ALICE, "locale", "zh-Hant")
    assert await prefs.get(ALICE) == saved
    assert prefs.choices("size", "nano-banana-2-lite") == ["1K"]
    assert prefs.choices("size", "nano-banana-2") == ["1K", "2K", "4K"]  # retired: its successor

    # The service uses the saved defaults (and the saved language).
    reply = await jobs(core).imagine(ask("a fox"))
    turn = await core.conversations.get(reply.turn_id or "")
    assert turn is not None and (turn.model, turn.size, turn.aspect) == (
        "nano-banana-pro", "2K", "16:9")
    assert reply.locale == "zh-Hant" and reply.credits_used == 14

    # A model without the saved size drops it; None resets a setting.
    saved = await prefs.update(ALICE, "model", "nano-banana-2-lite")
    assert (saved.size, saved.aspect) == (None, "16:9")
    saved = await prefs.update(ALICE, "model", "nano-banana")  # a retired name saves its successor
    assert saved.model == "nano-banana-2.1"
    saved = await prefs.update(ALICE, "locale", None)
    assert saved.locale is None


async def test_admin_ops_require_an_admin(settings_factory: Factory) -> None:
    settings = settings_factory(bot={"admins": [ADMIN.key]})
    async with running(settings, providers={"demo": FakeProvider()}) as core:
        admin = core.admin
        for call in (lambda who: admin.grant(who, BOB.key, 10, "en"),
                     lambda who: admin.ban(who, BOB.key, True, "en"),
                     lambda who: admin.set_limits(who, BOB.key, 1, 2, "en"),
                     lambda who: admin.stats(who, "en")):
            with pytest.raises(NotAllowed):
                await call(ALICE)
        assert await core.store.ledger() == []
        assert (await core.store.get_user(BOB.key)).banned is False

        text = await admin.grant(ADMIN, BOB.key, 10, "en")
        assert text == EN["admin.granted"].format(credits=10, user=BOB.key, bonus=10)
        assert (await core.service.usage(BOB)).bonus == 10
        vouched = Actor("discord", "7", is_admin=True)  # e.g. Manage Server on Discord
        await admin.grant(vouched, BOB.key, 5, "en")
        assert (await core.service.usage(BOB)).bonus == 15
        text = await admin.set_limits(ADMIN, BOB.key, 8, None, "en")
        assert text == EN["admin.limit_set"].format(user=BOB.key, daily=8, monthly=1500)
        assert (await core.service.usage(BOB)).window("user_daily").limit == 8  # type: ignore[union-attr]
        await delivered(core, await jobs(core).imagine(ask("a fox", actor=BOB)))
        stats = await admin.stats(ADMIN, "en")
        assert stats.startswith("Today: 1 images, 4 credits, $0.03 spent, 1 users.")


async def test_edit_and_delete_are_not_button_jobs_and_cost_nothing(core: Core) -> None:
    first = await jobs(core).imagine(ask("a fox"))
    await core.service.bind(first.turn_id or "", [])
    before = await core.store.ledger()
    for kind in ("edit", "delete"):
        reply = await jobs(core).act(ALICE, CHAT, Action(kind, first.turn_id or ""))  # type: ignore[arg-type]
        assert reply.error == "error.invalid_option"
    assert await core.store.ledger() == before


async def test_reroll_of_a_turn_whose_references_expired_is_refused(core: Core) -> None:
    first = await jobs(core).imagine(replace(ask("a fox"), references=(png_data(),)))
    await core.service.bind(first.turn_id or "", [])
    turn = await core.conversations.get(first.turn_id or "")
    assert turn is not None
    await core.conversations.blobs.drop(list(turn.input_hashes))
    before = await core.store.ledger()
    reply = await jobs(core).act(ALICE, CHAT, Action("reroll", turn.id))
    assert reply.error == "error.not_found"
    assert await core.store.ledger() == before
