"""/describe: an image in, 2-4 prompts out, each runnable as /imagine (zcpua/midjourney-api #78).

The route's text mode answers (bot/providers/text.py) on ``[describe] model``. It is charged by
its own small price (``[describe] credits``) through the same books as an image: held before
the call, settled once the prompts are kept, refunded when anything fails (a failed describe
costs nothing). The prompts are stored (``suggestions``) so their buttons work after a restart;
/forget erases them with everything else.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from bot.config import Settings
from bot.domain import Actor, ChatRef, Described, ImageData
from bot.errors import Banned, NotAllowed, NotFound, NotOwner, UpstreamConfig, UpstreamError
from bot.messages import normalize_locale
from bot.present import Presenter
from bot.providers.base import ImageProvider
from bot.providers.routes import ROUTES
from bot.providers.text import TextProvider, TextRequest
from bot.quotas import Price, Quotas
from bot.storage.base import Store

__all__ = ["INSTRUCTION", "Describer", "parse_prompts"]

#: Midjourney's /describe answers four prompts; the model is asked for four, 2-4 are kept.
MOST, FEWEST = 4, 2
INSTRUCTION = (
    "Describe this image as prompts for an image generation model. Write 4 different prompts, "
    "each one that would produce an image like this one: the subject, the setting, the style or "
    "medium, the lighting, the colors and the composition, in at most 60 words each. Answer with "
    "the 4 prompts only, one per line, numbered 1. to 4., in English, with no other text.")
_NUMBERING = re.compile(r"^\s*(?:[-*•]|\(?\d{1,2}[.)：:]|prompt\s*\d+\s*[:.-])\s*", re.IGNORECASE)
Prepare = Callable[..., Awaitable[ImageData]]
T = TypeVar("T")


class Queue(Protocol):
    """The job scheduler as /describe uses it: one job in the user's queue."""

    async def run(self, owner: str, work: Callable[[], Awaitable[T]], *,
                  timeout: float, job_id: str | None = None) -> T:  # noqa: ASYNC109
        """Queue ``work`` for ``owner`` and return its outcome."""
        ...


def parse_prompts(text: str) -> list[str]:
    """The prompts in the model's answer: numbered or bulleted lines, quotes and markup dropped."""
    found: list[str] = []
    for line in text.splitlines():
        line = _NUMBERING.sub("", line.strip().strip("*_")).strip().strip("\"'“”*_ ")
        if len(line.split()) < 3 or line.endswith(":") or line.lower() in (p.lower() for p in found):
            continue
        found.append(" ".join(line.split())[:600])
    return found[:MOST]


class Describer:
    """Runs /describe on the configured route and keeps its prompts for their buttons."""

    def __init__(self, *, settings: Settings, store: Store, quotas: Quotas,
                 providers: dict[str, ImageProvider], scheduler: Queue,
                 presenter: Presenter, prepare: Prepare) -> None:
        self._settings = settings
        self._store = store
        self._quotas = quotas
        self._providers = providers
        self._scheduler = scheduler
        self._presenter = presenter
        self._prepare = prepare

    def _route(self) -> tuple[TextProvider, str]:
        """The provider that answers and the model id as its route spells it."""
        cfg, settings = self._settings.describe, self._settings
        name = cfg.provider or settings.catalog()[settings.bot.default_model].provider
        provider = self._providers.get(name)
        if not isinstance(provider, TextProvider):
            raise UpstreamConfig(f"provider {name!r} has no text mode for /describe")
        section = settings.provider_table().get(name)
        route = ROUTES[section.api] if section is not None else None
        return provider, route.model_id(cfg.model) if route and route.wire == "chat" else cfg.model

    async def describe(self, actor: Actor, chat: ChatRef, image: ImageData) -> Described:
        """2-4 prompts for ``image``; BotError (nothing charged) when it cannot be done."""
        cfg = self._settings.describe
        record = await self._store.get_user(actor.key)
        if record.banned:
            raise Banned()
        if not cfg.enabled:
            raise NotAllowed()
        provider, model = self._route()
        limits = self._settings.limits
        cleaned = await self._prepare(
            image.data, max_input_bytes=int(limits.max_input_mb * 1_000_000), name=image.name,
            max_output_bytes=int(limits.reference_max_mb * 1_000_000))
        held = await self._quotas.reserve(actor, chat, Price(cfg.credits, cfg.usd),
                                          model=model, size="describe")
        try:
            request = TextRequest(model_id=model, instruction=INSTRUCTION, image=cleaned,
                                  timeout=cfg.timeout_seconds)

            async def work() -> str:
                return await provider.text(request)

            answer = await self._scheduler.run(actor.key, work, timeout=cfg.timeout_seconds,
                                               job_id=f"d{secrets.token_hex(3)}")
            prompts = parse_prompts(answer)
            if len(prompts) < FEWEST:
                raise UpstreamError(f"describe answered {len(prompts)} prompt(s)")
            sid = secrets.token_hex(6)
            await self._store.save_suggestions(sid, actor.key, prompts)
        except BaseException:
            await asyncio.shield(self._quotas.refund(held.id, "describe failed"))
            raise
        await self._quotas.settle(held.id)
        locale = (record.settings.locale or normalize_locale(actor.locale)
                  or self._settings.bot.locale)
        t = self._presenter.t
        lines = [t(locale, "describe.title"), *(f"{i}. {p}" for i, p in enumerate(prompts, 1))]
        if cfg.credits:
            lines.append(t(locale, "describe.cost", credits=cfg.credits))
        return Described(id=sid, prompts=tuple(prompts), text="\n".join(lines),
                         credits_used=cfg.credits, locale=locale)

    async def suggestion(self, actor: Actor, sid: str, index: int, *, admin: bool) -> str:
        """Prompt ``index`` (from 1) of a /describe answer, for its owner (or an admin)."""
        found = await self._store.suggestions(sid)
        if found is None or not 1 <= index <= len(found[1]):
            raise NotFound()
        if found[0] != actor.key and not admin:
            raise NotOwner()
        return found[1][index - 1]
