"""The Reply for a finished job: its caption, buttons and images (one result, or a batch)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from bot.batch import Made, batch_actions
from bot.catalog import ModelSpec
from bot.choices import Choices
from bot.config import Settings
from bot.domain import Action, Actor, ChatRef, Reply, Turn
from bot.messages import normalize_locale
from bot.present import Presenter
from bot.providers.base import ProviderResult
from bot.quotas import Quotas


class Results:
    """Builds result Replies from stored turns (the job already read the user's record)."""

    def __init__(self, settings: Settings, quotas: Quotas, presenter: Presenter,
                 choices: Choices) -> None:
        self._settings = settings
        self._quotas = quotas
        self._presenter = presenter
        self._choices = choices

    def _locale(self, actor: Actor, saved: str | None) -> str:
        return saved or normalize_locale(actor.locale) or self._settings.bot.locale

    async def _caption(self, actor: Actor, chat: ChatRef, locale: str, turn: Turn,
                       spec: ModelSpec, result: ProviderResult, credits: int) -> str:
        bot = self._settings.bot
        usage = await self._quotas.usage(actor, chat)
        text = self._presenter.caption(
            locale, prompt=turn.prompt, model=spec.name, size=turn.size or "",
            aspect=turn.aspect or "", credits=credits, left=usage.credits_left,
            exempt=usage.exempt, demo=result.demo,
            model_text=result.text if bot.show_model_text else "", ai_label=bot.ai_label)
        if turn.kind == "variation":  # the user's words, marked: never the internal instruction
            head, _, rest = text.partition("\n")
            text = f"{head}\n{self._presenter.t(locale, 'result.variation_tag')}\n{rest}"
        return text

    async def single(self, actor: Actor, chat: ChatRef, turn: Turn, spec: ModelSpec,
                     result: ProviderResult, saved_locale: str | None,
                     vary: str | None = None) -> Reply:
        """One result: its images, caption and buttons."""
        locale = self._locale(actor, saved_locale)
        text = await self._caption(actor, chat, locale, turn, spec, result, turn.credits)
        actions = tuple(replace(a, vary=vary) if a.kind == "variations" else a
                        for a in self._choices.actions_for(turn))
        return Reply(text=text, images=result.images, actions=actions,
                     turn_id=turn.id, credits_used=turn.credits, locale=locale,
                     ready_at=turn.created_at.timestamp())

    async def batch(self, actor: Actor, chat: ChatRef, made: Made, spec: ModelSpec,
                    saved_locale: str | None, vary: str | None = None) -> Reply:
        """A batch: the first image of each candidate, U/V per candidate, one Reroll."""
        locale = self._locale(actor, saved_locale)
        first = made.turns[0]
        credits = sum(t.credits for t in made.turns)
        text = await self._caption(actor, chat, locale, first, spec, made.results[0], credits)
        total = len(made.turns) + made.failed
        line = self._presenter.t(locale, "result.batch", made=len(made.turns), total=total)
        if made.failed:
            line += " " + self._presenter.t(locale, "result.batch_failed", failed=made.failed)
        text = text.replace("\n", f"\n{line}\n", 1) if "\n" in text else f"{text}\n{line}"
        actions = batch_actions(made.turns, self._upscale, vary)
        images = tuple(r.images[0] for r in made.results)
        return Reply(text=text, images=images, actions=actions, turn_id=first.id,
                     credits_used=credits, locale=locale,
                     candidates=tuple(t.id for t in made.turns),
                     ready_at=max(t.created_at for t in made.turns).timestamp())

    def _upscale(self, turn: Turn) -> Action | None:
        """The next size up for one candidate, if its model has one."""
        for action in self._choices.actions_for(turn):
            if action.kind == "upscale":
                return action
        return None


def button_label(t: Callable[..., str], locale: str, action: Action) -> str:
    """A result button's label, the same on every platform (the catalogs' ``button.*``).

    A batch's buttons name their candidate, Midjourney's way (U2 upscales the second image,
    V3 varies the third) and say their price; one Reroll makes the whole batch again.
    """
    cost = action.cost if action.cost is not None else ""
    if action.index is not None and action.kind == "upscale":
        return t(locale, "button.upscale_n", n=action.index, size=action.size or "", cost=cost)
    if action.index is not None and action.kind == "variations":
        return t(locale, "button.variations_n", n=action.index, cost=cost)
    if action.kind == "reroll" and action.batch:
        return t(locale, "button.reroll_batch", count=action.batch, cost=cost)
    if action.kind == "upscale":
        return t(locale, "button.upscale", size=action.size or "", cost=cost)
    return t(locale, f"button.{action.kind}")
