"""/history: a user's recent results, newest first, a page at a time, each with its buttons."""

from __future__ import annotations

import math

from bot.choices import Choices
from bot.config import Settings
from bot.domain import Actor, HistoryItem, HistoryPage
from bot.present import Presenter, excerpt
from bot.storage.base import Store

#: Results per page: five photos and their buttons fit one screen on a phone.
PER_PAGE = 5


class Gallery:
    """Pages of a user's turns with a line and the buttons of each."""

    def __init__(self, settings: Settings, store: Store, choices: Choices,
                 presenter: Presenter) -> None:
        self._settings = settings
        self._store = store
        self._choices = choices
        self._presenter = presenter

    async def page(self, actor: Actor, page: int, locale: str,
                   per_page: int = PER_PAGE) -> HistoryPage:
        """Page ``page`` (from 1; past the end: the last one) of ``actor``'s results."""
        page = max(1, page)
        turns, total = await self._store.turns_page(actor.key, (page - 1) * per_page, per_page)
        pages = max(1, math.ceil(total / per_page))
        if not turns and page > pages and total:
            page = pages
            turns, total = await self._store.turns_page(actor.key, (page - 1) * per_page,
                                                        per_page)
        t, zone = self._presenter.t, self._settings.zone()
        items = []
        for number, turn in enumerate(turns, (page - 1) * per_page + 1):
            when = turn.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
            line = t(locale, "history.item", n=number, prompt=excerpt(turn.prompt, 80),
                     model=turn.model, size=turn.size or "", when=when)
            items.append(HistoryItem(turn, line, self._choices.actions_for(turn)))
        head = (t(locale, "history.title", page=page, pages=pages, total=total) if total
                else t(locale, "history.empty"))
        text = "\n".join([head, *(item.line for item in items)])
        return HistoryPage(items=tuple(items), page=page, pages=pages, text=text, locale=locale,
                           first=(page - 1) * per_page + 1)
