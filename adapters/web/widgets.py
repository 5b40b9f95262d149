"""HTML fragments of the playground: prompt bubbles, result cards with their buttons, errors,
the quota badge, and a browser's history made of them.

The markup is in templates/cards.html (Jinja2 macros, autoescaped); this module prepares values.
A button carries its :class:`Action` encoded; the page's script posts it back to /api/act.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jinja2

from bot.api import Action, Actor, BotApi, ChatRef, Described, Reply, Turn, excerpt

KIND_ICON = {"edit": "✏️", "reroll": "🔄", "upscale": "⬆", "variation": "🎲"}
#: How many of a visitor's recent turns are looked at to find the ones of this browser.
HISTORY_SCAN = 100
#: How many of them the page shows again.
HISTORY_SHOWN = 20


@dataclass(frozen=True, slots=True)
class Card:
    """A result as the page shows it."""

    turn_id: str
    prompt: str
    caption: str
    sizes: tuple[tuple[int, int], ...]
    actions: tuple[Action, ...]
    #: Where each picture is: (turn, image index); a batch's grid has one per candidate.
    shots: tuple[tuple[str, int], ...] = ()


def _ratio(aspect: str | None) -> tuple[int, int]:
    try:
        w, h = (int(p) for p in (aspect or "1:1").split(":"))
    except ValueError:
        return 1, 1
    return (w, h) if w > 0 and h > 0 else (1, 1)


def card_from_reply(reply: Reply, prompt: str) -> Card:
    """A fresh result."""
    sizes = tuple((im.width or 1, im.height or 1) for im in reply.images)
    shots = (tuple((turn, 0) for turn in reply.candidates) if reply.candidates else
             tuple((reply.turn_id or "", i) for i in range(len(reply.images))))
    return Card(reply.turn_id or "", prompt, reply.text, sizes, reply.actions, shots)


def card_from_turn(api: BotApi, locale: str, turn: Turn) -> Card:
    """A stored result (the conversation shown again on page load)."""
    meta = api.t(locale, "web.meta", model=turn.model, size=turn.size or "",
                 aspect=turn.aspect or "", credits=turn.credits)
    ratio = _ratio(turn.aspect)
    return Card(turn.id, turn.prompt, f"{excerpt(turn.prompt)}\n{meta}",
                tuple(ratio for _ in turn.output_hashes), api.actions_for(turn),
                tuple((turn.id, i) for i in range(len(turn.output_hashes))))


def button_label(api: BotApi, locale: str, action: Action) -> str:
    """What a result button says: the words every platform uses (U2 · 4K (12), V3 (4) ...)."""
    return api.button_label(locale, action)


def kind_tag(api: BotApi, locale: str, kind: str) -> str:
    """The small label over a prompt that was not a plain request (an edit, a reroll...)."""
    icon = KIND_ICON.get(kind, "")
    return f"{icon} {api.t(locale, f'web.kind.{kind}')}" if icon else ""


def _button(api: BotApi, locale: str, action: Action, prompt: str) -> dict[str, object]:
    """One result button's values; the page's script sends its encoded action."""
    return {"kind": action.kind, "action": action.encode(),
            "label": button_label(api, locale, action),
            "prompt": excerpt(prompt, 80) if action.kind == "edit" else None,
            "confirm": api.t(locale, "web.confirm_delete") if action.kind == "delete" else None}


def _macros(env: jinja2.Environment) -> Any:
    return env.get_template("cards.html").module


def render_card(env: jinja2.Environment, api: BotApi, locale: str, card: Card) -> str:
    """A result card with its images (previews linking to the originals) and buttons."""
    batch = len({turn for turn, _ in card.shots}) > 1
    shots = [{"turn": turn, "index": index, "w": w, "h": h, "n": n if batch else None}
             for n, ((turn, index), (w, h)) in enumerate(zip(card.shots, card.sizes,
                                                             strict=False), 1)]
    return str(_macros(env).card(
        turn_id=card.turn_id, alt=excerpt(card.prompt, 120),
        open_title=api.t(locale, "web.open_original"), shots=shots, caption=card.caption,
        buttons=[_button(api, locale, a, card.prompt) for a in card.actions]))


def described(env: jinja2.Environment, answer: Described) -> str:
    """/describe's answer: the prompts, each with a button that draws it."""
    lines = answer.text.splitlines()
    return str(_macros(env).described(
        title=lines[0] if lines else "", note=lines[-1] if answer.credits_used else "",
        prompts=[{"n": n, "text": p} for n, p in enumerate(answer.prompts, 1)]))


def prompt_bubble(env: jinja2.Environment, api: BotApi, locale: str, prompt: str,
                  kind: str = "imagine") -> str:
    """What the user asked, on the right-hand side."""
    return str(_macros(env).prompt_bubble(tag=kind_tag(api, locale, kind), prompt=prompt))


def error_bubble(env: jinja2.Environment, text: str) -> str:
    """A failure, in the user's language."""
    return str(_macros(env).error_bubble(text=text))


async def quota_badge(env: jinja2.Environment, api: BotApi, locale: str, actor: Actor,
                      chat: ChatRef) -> str:
    """The header's credit count with the full /quota text behind it."""
    usage = await api.usage(actor, chat)
    if usage.exempt:
        short = api.t(locale, "web.quota_admin")
    else:
        short = api.t(locale, "web.quota_left", left=usage.credits_left)
    return str(_macros(env).quota_badge(left=usage.credits_left, exempt=usage.exempt,
                                        short=short, details=await api.quota_text(actor, chat)))


async def history(env: jinja2.Environment, api: BotApi, locale: str, actor: Actor,
                  chat: ChatRef) -> list[str]:
    """Prompt bubbles and result cards of this browser's recent turns, oldest first."""
    # A pooled actor's page shows this browser's turns only.
    turns = [t for t in await api.recent_turns(HISTORY_SCAN, actor.key)
             if t.chat_key == chat.key][-HISTORY_SHOWN:]
    out = []
    for turn in turns:
        out.append(prompt_bubble(env, api, locale, turn.prompt, turn.kind))
        out.append(render_card(env, api, locale, card_from_turn(api, locale, turn)))
    return out
