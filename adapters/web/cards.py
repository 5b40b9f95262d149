"""HTML fragments of the playground: prompt bubbles, result cards, errors, the quota badge.

The markup is in templates/cards.html (Jinja2 macros, autoescaped); this module prepares values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jinja2

from bot.domain import Action, Reply, Turn, Usage
from bot.messages import Messages
from bot.present import excerpt

KIND_ICON = {"edit": "✏️", "reroll": "🔄", "upscale": "⬆", "variation": "🎲"}


@dataclass(frozen=True, slots=True)
class Card:
    """A result as the page shows it."""

    turn_id: str
    prompt: str
    caption: str
    sizes: tuple[tuple[int, int], ...]
    actions: tuple[Action, ...]


def _ratio(aspect: str | None) -> tuple[int, int]:
    try:
        w, h = (int(p) for p in (aspect or "1:1").split(":"))
    except ValueError:
        return 1, 1
    return (w, h) if w > 0 and h > 0 else (1, 1)


def card_from_reply(reply: Reply, prompt: str) -> Card:
    """A fresh result."""
    sizes = tuple((im.width or 1, im.height or 1) for im in reply.images)
    return Card(reply.turn_id or "", prompt, reply.text, sizes, reply.actions)


def card_from_turn(messages: Messages, locale: str, turn: Turn,
                   actions: tuple[Action, ...]) -> Card:
    """A stored result (the conversation shown again on page load)."""
    meta = messages.t(locale, "web.meta", model=turn.model, size=turn.size or "",
                      aspect=turn.aspect or "", credits=turn.credits)
    ratio = _ratio(turn.aspect)
    return Card(turn.id, turn.prompt, f"{excerpt(turn.prompt)}\n{meta}",
                tuple(ratio for _ in turn.output_hashes), actions)


def button_label(messages: Messages, locale: str, action: Action) -> str:
    """What a result button says."""
    if action.kind == "upscale":
        return messages.t(locale, "button.upscale", size=action.size, cost=action.cost)
    return messages.t(locale, f"button.{action.kind}")


def _button(messages: Messages, locale: str, action: Action, prompt: str) -> dict[str, object]:
    """One result button's values; the page's script sends its encoded action."""
    return {"kind": action.kind, "action": action.encode(),
            "label": button_label(messages, locale, action),
            "prompt": excerpt(prompt, 80) if action.kind == "edit" else None,
            "confirm": (messages.t(locale, "web.confirm_delete") if action.kind == "delete"
                        else None)}


def _macros(env: jinja2.Environment) -> Any:
    return env.get_template("cards.html").module


def render_card(env: jinja2.Environment, messages: Messages, locale: str, card: Card) -> str:
    """A result card with its images (previews linking to the originals) and buttons."""
    return str(_macros(env).card(
        turn_id=card.turn_id, alt=excerpt(card.prompt, 120),
        open_title=messages.t(locale, "web.open_original"), sizes=card.sizes,
        caption=card.caption,
        buttons=[_button(messages, locale, a, card.prompt) for a in card.actions]))


def prompt_bubble(env: jinja2.Environment, messages: Messages, locale: str, prompt: str,
                  kind: str = "imagine") -> str:
    """What the user asked, on the right-hand side."""
    icon = KIND_ICON.get(kind, "")
    tag = f"{icon} {messages.t(locale, f'web.kind.{kind}')}" if icon else ""
    return str(_macros(env).prompt_bubble(tag=tag, prompt=prompt))


def error_bubble(env: jinja2.Environment, text: str) -> str:
    """A failure, in the user's language."""
    return str(_macros(env).error_bubble(text=text))


def quota_badge(env: jinja2.Environment, messages: Messages, locale: str, usage: Usage,
                details: str) -> str:
    """The header's credit count with the full /quota text behind it."""
    if usage.exempt:
        short = messages.t(locale, "web.quota_admin")
    else:
        short = messages.t(locale, "web.quota_left", left=usage.credits_left)
    return str(_macros(env).quota_badge(left=usage.credits_left, exempt=usage.exempt,
                                        short=short, details=details))
