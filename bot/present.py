"""Turns core facts (errors, usage, results) into catalog text in the user's language."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.domain import Usage
from bot.errors import BotError, QuotaExceeded
from bot.messages import Messages
from bot.quotas import Clock

_MODEL_TEXT_EXCERPT = 400
_PROMPT_EXCERPT = 300


def excerpt(text: str, limit: int = _PROMPT_EXCERPT) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def progress_text(messages: Messages, locale: str, stage: str, position: int | None,
                  running: float) -> str | None:
    """A job's status line: its place in the queue, or how long the model has worked so far.

    ``running`` counts from the job's start, never from its submission: a job that waited in the
    queue starts at "0 s", so queue time and generation time are told apart.
    """
    if stage == "queued" and position:
        return messages.t(locale, "progress.queued", position=position)
    if stage == "started":
        return messages.t(locale, "progress.started", elapsed=max(0, int(running)))
    return None


class Presenter:
    """Formats errors, quota status and result captions from the message catalogs."""

    def __init__(self, messages: Messages, clock: Clock,
                 redact: Callable[[str], str] | None = None) -> None:
        self.messages = messages
        self._clock = clock
        self._redact = redact or (lambda text: text)

    def t(self, locale: str, key: str, /, **params: object) -> str:
        """Shortcut to the catalogs."""
        return self.messages.t(locale, key, **params)

    def until(self, locale: str, when: datetime | None) -> str:
        """``in 3 h 12 min`` (translated) from now until ``when``."""
        if when is None:
            return ""
        seconds = max(0, int((when - self._clock()).total_seconds()))
        hours, minutes = divmod(seconds // 60, 60)
        if hours >= 48:
            return self.t(locale, "time.days_hours", days=hours // 24, hours=hours % 24)
        if hours:
            return self.t(locale, "time.hours_minutes", hours=hours, minutes=minutes)
        if minutes:
            return self.t(locale, "time.minutes", minutes=minutes)
        return self.t(locale, "time.soon")

    def error(self, locale: str, err: BotError) -> str:
        """The user-facing text for an error category."""
        params = dict(err.params)
        if isinstance(err, QuotaExceeded):
            resets = self.until(locale, params.get("resets_at"))
            if params["window"] == "global_daily_usd":
                return self.t(locale, "error.quota_global", resets=resets)
            window = self.t(locale, f"window.{params['window']}")
            return self.t(locale, "error.quota", cost=params["cost"], left=int(params["left"]),
                          window=window, resets=resets)
        key = err.key
        # The model's own words are shown, but an upstream may echo the request: mask secrets.
        if key == "error.refused" and params.get("reason"):
            key = "error.refused_reason"
            params["reason"] = excerpt(self._redact(str(params["reason"])), 300)
        if key == "error.no_image" and params.get("text"):
            key, params["text"] = "error.no_image_text", excerpt(self._redact(str(params["text"])), 300)
        text = self.t(locale, key, **params)
        if params.get("safety"):  # a refusal names the safety level that applied (bot.groups)
            level = self.t(locale, f"safety.{params['safety']}")
            text += "\n" + self.t(locale, "safety.applied", level=level)
        return text

    def usage(self, locale: str, usage: Usage, costs: str = "") -> str:
        """The /quota text: every window with what is left and when it resets."""
        lines = [self.t(locale, "quota.title")]
        if usage.exempt:
            lines.append(self.t(locale, "quota.exempt"))
        for w in usage.windows:
            key = "quota.usd_line" if w.name == "global_daily_usd" else "quota.line"
            left = f"{w.left:.2f}" if w.name == "global_daily_usd" else int(w.left)
            limit = f"{w.limit:.2f}" if w.name == "global_daily_usd" else int(w.limit)
            lines.append(self.t(locale, key, window=self.t(locale, f"window.{w.name}"), left=left,
                                limit=limit, resets=self.until(locale, w.resets_at)))
        if usage.bonus:
            lines.append(self.t(locale, "quota.bonus", bonus=usage.bonus))
        if usage.paid:
            lines.append(self.t(locale, "quota.paid", paid=usage.paid))
        if usage.reserved:
            lines.append(self.t(locale, "quota.reserved", reserved=usage.reserved))
        if usage.running:
            lines.append(self.t(locale, "quota.running", running=usage.running))
        if costs:
            lines.append(self.t(locale, "quota.costs", costs=costs))
        return "\n".join(lines)

    def caption(self, locale: str, *, prompt: str, model: str, size: str, aspect: str,
                credits: int, left: int, exempt: bool, demo: bool, model_text: str = "",
                ai_label: bool = False) -> str:
        """The text that goes with a result image (the model's own words, trimmed, if any)."""
        key = "result.caption_exempt" if exempt else "result.caption"
        text = self.t(locale, key, prompt=excerpt(self._redact(prompt)), model=model, size=size,
                      aspect=aspect, credits=credits, left=left)
        said = " ".join(model_text.split())
        if said and not demo:
            # Telegram captions stop at 1024 characters: the prompt excerpt and this fit together.
            text += "\n" + self.t(locale, "result.model_text",
                                  text=excerpt(self._redact(said), _MODEL_TEXT_EXCERPT))
        if ai_label and not demo:
            text += "\n" + self.t(locale, "result.ai_label")
        return f"{text}\n{self.t(locale, 'result.demo')}" if demo else text
