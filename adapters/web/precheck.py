"""Refusals the console tells before a job starts, so the page keeps the prompt and the files.

The core checks the same things again when the job runs (another tab may spend the credits in
between); this only spares a visitor retyping a request that could not have run.
"""

from __future__ import annotations

from bot.bootstrap import Core
from bot.domain import Actor, ChatRef, Options
from bot.errors import BotError, QuotaExceeded, TooManyReferences


async def refusal(core: Core, actor: Actor, chat: ChatRef, options: Options, references: int,
                  parent_id: str | None, locale: str) -> str | None:
    """Why this request would be refused now (too many references, too few credits), or None."""
    service = core.service
    parent = await core.store.get_turn(parent_id) if parent_id else None
    if parent is not None and parent.actor_key != actor.key:
        parent = None  # the core answers that one; nothing of another's turn is read here
    try:
        spec, size, _ = service.choices.resolve(
            await core.prefs.get(actor), options, model=parent.model if parent else None,
            kept_size=parent.size if parent else None)
        count = references + (len(parent.output_hashes) if parent else 0)
        if count > spec.max_references:
            raise TooManyReferences(count, spec.max_references, spec.name)
        usage = await service.usage(actor, chat)
        cost = core.quotas.price(spec, size).credits
        if not usage.exempt and usage.credits_left < cost:
            windows = [w for w in usage.windows if w.name != "global_daily_usd"]
            tight = min(windows, key=lambda w: w.left, default=None)
            raise QuotaExceeded(tight.name if tight else "user_daily", usage.credits_left, cost,
                                tight.resets_at if tight else None)
    except BotError as err:
        return service.presenter.error(locale, err)
    return None
