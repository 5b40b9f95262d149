"""What a job will use: model, size and aspect from the request, the turn, the user and the bot.

The one place that decides which options a request may ask for (a model's sizes, aspects,
search and thinking levels) and which buttons a result offers.
"""

from __future__ import annotations

from bot.catalog import Lineup, ModelSpec
from bot.config import Settings
from bot.domain import Action, Options, Turn, UserSettings
from bot.errors import InvalidOption


class Choices:
    """Resolves and checks a request's options against today's lineup."""

    def __init__(self, settings: Settings, lineup: Lineup) -> None:
        self._settings = settings
        self._lineup = lineup

    def model(self, name: str, where: str = "a request") -> ModelSpec:
        """A model by name or wire id (retired ones mean their successor), else InvalidOption."""
        spec = self._lineup.find(name, where=where)
        if spec is None:
            raise InvalidOption("model", name, sorted(self._lineup.models))
        return spec

    def resolve(self, user: UserSettings, opts: Options, *, model: str | None = None,
                kept_size: str | None = None,
                kept_aspect: str | None = None) -> tuple[ModelSpec, str, str]:
        """Request options, else what the turn keeps, else the user's, else the bot's defaults.

        Only what the user asks for now is refused when the model lacks it; a size or aspect kept
        from an earlier turn (whose model may since have been retired) falls back quietly.
        """
        bot = self._settings.bot
        asked = opts.model or model
        where = "--model" if asked else "saved /settings" if user.model else "[bot] default_model"
        spec = self.model(asked or user.model or bot.default_model, where)
        size = opts.size or (kept_size if kept_size in spec.sizes else None) or user.size or (
            bot.default_size)
        if size not in spec.sizes:
            if opts.size:
                raise InvalidOption("size", size, list(spec.sizes))
            size = bot.default_size if bot.default_size in spec.sizes else spec.sizes[0]
        aspect = opts.aspect or (kept_aspect if kept_aspect in spec.aspects else None) or (
            user.aspect or bot.default_aspect)
        if aspect not in spec.aspects:
            if opts.aspect:
                raise InvalidOption("aspect", aspect, list(spec.aspects))
            aspect = "1:1"
        if opts.search and not spec.search:
            raise InvalidOption("search", spec.name,
                                [m.name for m in self._lineup.models.values() if m.search])
        if opts.thinking and opts.thinking not in spec.thinking:
            raise InvalidOption("thinking", opts.thinking, list(spec.thinking) or ["-"])
        return spec, size, aspect

    @staticmethod
    def search(user: UserSettings, opts: Options, spec: ModelSpec) -> bool:
        """``--search`` as asked, else the saved /settings default where the model offers it."""
        if opts.search is not None:
            return opts.search
        return user.search == "on" and spec.search

    def actions_for(self, turn: Turn) -> tuple[Action, ...]:
        """Buttons under a result: reroll, larger sizes with their cost, variations, edit, delete."""
        spec = self._lineup.find(turn.model, where="a conversation")
        credit_usd = self._settings.quota.credit_usd
        actions = [Action("reroll", turn.id, cost=turn.credits)]
        if spec is not None:
            actions += [Action("upscale", turn.id, size=s, cost=spec.credit_cost(s, credit_usd))
                        for s in spec.larger_sizes(turn.size or "1K") if s in ("2K", "4K")]
        actions += [Action("variations", turn.id, cost=turn.credits), Action("edit", turn.id),
                    Action("delete", turn.id)]
        return tuple(actions)
