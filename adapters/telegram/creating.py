"""/describe, /history and batches on Telegram: what issue 16 adds to the imagine handlers.

/describe takes the photo sent with the command (its caption), the photo the command replies to,
or an image file; its prompts come back numbered, one button each (``ibd:<id>:<n>``), and a press
runs that prompt as /imagine. /history sends a page of results as an album of previews with one
text under it: a numbered row of each result's buttons, then Newer / Older (``ibh:<owner>:<page>``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from telegram import CallbackQuery, Message

from adapters.telegram import widgets as kb
from adapters.telegram.albums_out import send_page, send_result
from adapters.telegram.inbound import (
    DOWNLOAD_LIMIT,
    Attachment,
    Target,
    actor_of,
    attachment_of,
    chat_of,
    download,
    press_target,
)
from adapters.telegram.runtime import Press, Runtime
from bot.api import Actor, BotError, ChatRef, ImageData, ImageRequest, NotAllowed, Reply

log = logging.getLogger(__name__)
#: A /history preview's long side: small uploads, still clear on a phone.
PREVIEW_SIDE = 640


class Creating:
    """Batches out, /describe and its buttons, /history and its pages."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def deliver(self, result: Reply, target: Target) -> None:
        """A result: a batch as an album with its keyboard after it, else one photo."""
        await send_result(self.rt.send, self.rt.api, result, target)

    # ----- /describe ---------------------------------------------------------------------------

    async def describe(self, messages: Sequence[Message], reply: Message | None, actor: Actor,
                       chat: ChatRef, target: Target) -> None:
        """Prompts for the image sent with /describe, or the one it replies to."""
        api = self.rt.api
        sources: list[Attachment] = [a for a in map(attachment_of, messages) if a is not None]
        if not sources and reply is not None and (found := attachment_of(reply)) is not None:
            sources = [found]
        locale = await api.locale_for(actor)
        if not sources:
            await self.rt.send.text(target, api.t(locale, "describe.usage"))
            return
        async with self.rt.reporter(target, locale):
            limit = min(DOWNLOAD_LIMIT, int(api.settings.limits.max_input_mb * 1_000_000))
            [image] = await download(self.rt.bot, sources[:1], limit)
            described = await api.describe(actor, chat, image)
        keyboard = kb.describe_keyboard(described.id, len(described.prompts), api.t,
                                        described.locale)
        await self.rt.send.text(target, described.text, keyboard)

    def on_describe_button(self, query: CallbackQuery) -> None:
        """A /describe prompt's button: run that prompt as /imagine."""
        parsed = kb.parse_describe(query.data or "")
        target = press_target(query)
        if parsed is None or target is None or query.message is None:
            return
        actor = actor_of(query.from_user)
        chat = chat_of(query.message.chat, target.thread_id)
        press = Press(query)
        self.rt.run(self._use_prompt(press, actor, chat, target, *parsed), actor, target,
                    "describe", press)

    async def _use_prompt(self, press: Press, actor: Actor, chat: ChatRef, target: Target,
                          sid: str, index: int) -> None:
        api = self.rt.api
        if not self.rt.allowed(target.chat_id, actor):
            raise NotAllowed()
        prompt = await api.suggestion(actor, sid, index)
        await press.answer()
        async with self.rt.reporter(target, await api.locale_for(actor)) as status:
            result = await api.imagine(ImageRequest(actor=actor, chat=chat, prompt=prompt),
                                       status.on_progress)
            await self.deliver(result, target)

    # ----- /history ----------------------------------------------------------------------------

    async def history(self, actor: Actor, target: Target, page: int = 1) -> None:
        """Page ``page`` of the actor's results: previews, then the list with its buttons."""
        api = self.rt.api
        shown = await api.history(actor, page)
        photos: list[ImageData] = []
        captions: list[str] = []
        for n, item in enumerate(shown.items, shown.first):
            try:
                image = (await api.result_images(actor, item.turn.id))[0]
            except BotError:  # expired or deleted meanwhile: listed, without a preview
                continue
            photos.append(await api.thumbnail(image, PREVIEW_SIDE))
            captions.append(str(n))
        keyboard = kb.history_keyboard(
            [(n, item.actions) for n, item in enumerate(shown.items, shown.first)],
            shown.page, shown.pages, int(actor.user_id),
            lambda a: api.button_label(shown.locale, a), api.t, shown.locale)
        await send_page(self.rt.send, target, photos, captions, shown.text, keyboard,
                        f"history-{shown.page}")

    def on_history_button(self, query: CallbackQuery) -> None:
        """Newer / Older under a /history page (only its owner may turn it)."""
        parsed = kb.parse_history(query.data or "")
        target = press_target(query)
        if parsed is None or target is None:
            return
        actor = actor_of(query.from_user)
        press = Press(query)

        async def turn() -> None:
            if parsed[0] != query.from_user.id:
                locale = await self.rt.api.locale_for(actor)
                await press.answer(self.rt.api.t(locale, "error.not_owner"))
                return
            await press.answer()
            await self.history(actor, Target(target.chat_id, None, target.thread_id), parsed[1])

        self.rt.run(turn(), actor, target, "history", press)
