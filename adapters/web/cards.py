"""HTML fragments of the playground: prompt bubbles, result cards, errors, the quota badge."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

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


def _lines(text: str) -> str:
    return "<br>".join(escape(line) for line in text.splitlines())


def _caption(text: str) -> str:
    """The prompt line first, the details (model, cost, demo note) muted below it."""
    lines = text.splitlines() or [""]
    rest = "".join(f'<span class="m">{escape(line)}</span>' for line in lines[1:])
    return f'<span class="p">{escape(lines[0])}</span>{rest}'


def button_label(messages: Messages, locale: str, action: Action) -> str:
    """What a result button says."""
    if action.kind == "upscale":
        return messages.t(locale, "button.upscale", size=action.size, cost=action.cost)
    return messages.t(locale, f"button.{action.kind}")


def button(messages: Messages, locale: str, action: Action, prompt: str) -> str:
    """One result button; the page's script sends its encoded action."""
    label = button_label(messages, locale, action)
    extra = ""
    if action.kind == "edit":
        extra = f' data-prompt="{escape(excerpt(prompt, 80))}"'
    elif action.kind == "delete":
        extra = f' data-confirm="{escape(messages.t(locale, "web.confirm_delete"))}"'
    cls = "btn ghost danger" if action.kind == "delete" else "btn ghost"
    return (f'<button type="button" class="{cls}" data-kind="{action.kind}" '
            f'data-action="{escape(action.encode())}"{extra}>{escape(label)}</button>')


def render_card(messages: Messages, locale: str, card: Card) -> str:
    """A result card with its images (previews linking to the originals) and buttons."""
    tid = escape(card.turn_id)
    alt = escape(excerpt(card.prompt, 120))
    figures = "".join(
        f'<a class="shot" href="/img/{tid}/{i}" target="_blank" rel="noopener" '
        f'title="{escape(messages.t(locale, "web.open_original"))}">'
        f'<img src="/img/{tid}/{i}/preview" width="{w}" height="{h}" alt="{alt}" '
        f'loading="lazy"></a>' for i, (w, h) in enumerate(card.sizes))
    buttons = "".join(button(messages, locale, a, card.prompt) for a in card.actions)
    return (f'<article class="msg bot result" id="turn-{tid}" data-turn="{tid}">'
            f'<div class="shots n{min(len(card.sizes), 4)}">{figures}</div>'
            f'<p class="caption">{_caption(card.caption)}</p>'
            f'<div class="actions">{buttons}</div></article>')


def prompt_bubble(messages: Messages, locale: str, prompt: str, kind: str = "imagine") -> str:
    """What the user asked, on the right-hand side."""
    icon = KIND_ICON.get(kind, "")
    tag = (f'<span class="tag">{icon} {escape(messages.t(locale, f"web.kind.{kind}"))}</span>'
           if icon else "")
    return f'<div class="msg me">{tag}<p>{escape(prompt)}</p></div>'


def error_bubble(text: str) -> str:
    """A failure, in the user's language."""
    return f'<article class="msg bot error" role="alert"><p>{_lines(text)}</p></article>'


def quota_badge(messages: Messages, locale: str, usage: Usage, details: str) -> str:
    """The header's credit count with the full /quota text behind it."""
    if usage.exempt:
        short = messages.t(locale, "web.quota_admin")
    else:
        short = messages.t(locale, "web.quota_left", left=usage.credits_left)
    return (f'<details class="quota" id="quota" data-left="{usage.credits_left}" '
            f'data-exempt="{int(usage.exempt)}">'
            f'<summary><span class="bolt">⚡</span> <span class="left">{escape(short)}</span>'
            f'</summary><div class="pop">{_lines(details)}</div></details>')
