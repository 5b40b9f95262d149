"""A request's recipe: /settings defaults for ``--n`` and ``--style``, the text the model gets,
and the request a button makes from a stored turn (which keeps its style and exclusions)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from bot.domain import (
    Action,
    Actor,
    ChatRef,
    ImageData,
    ImageRequest,
    Options,
    RequestKind,
    Turn,
    UserSettings,
)
from bot.errors import NotFound
from bot.styles import Styles, compose

#: ``--style none``: no preset for this request, whatever /settings says.
NO_STYLE = "none"


def with_defaults(opts: Options, saved: UserSettings, kind: str) -> Options:
    """``opts`` with the user's /settings ``n`` and ``style`` where a new image leaves them unset.

    Only ``/imagine`` takes them: an edit's words are an instruction (a template around "make it
    night" would be nonsense), and a button repeats what its result was made with.
    """
    if kind == "imagine":
        opts = replace(opts, n=opts.n or saved.n, style=opts.style or saved.style)
    return replace(opts, style=None) if opts.style == NO_STYLE else opts


def model_text(t: Callable[..., str], styles: Styles, prompt: str, opts: Options, kind: str,
               group_style: str | None) -> str:
    """What the model is asked: a variation's hidden instruction, else the styled prompt; both
    end with what to leave out."""
    if kind in ("variation", "upscale"):
        key = ("result.upscale_instruction" if kind == "upscale" else
               "result.variation_strong" if opts.vary == "strong" else "result.variation_subtle")
        return compose(t("en", key, prompt=prompt), None, opts.negative)
    return styles.text(prompt, opts, group_style)


def pressed(actor: Actor, chat: ChatRef, turn: Turn, action: Action,
            inputs: tuple[ImageData, ...], chosen: tuple[ImageData, ...] | None) -> ImageRequest:
    """The request a Reroll, U or V button makes from ``turn``, its recipe kept.

    U and V work on the image shown (``chosen``, the turn's output), Midjourney's way: U2 is a
    larger rendering of candidate 2 itself, not a new draw of its words at a larger size, and
    V3 a variation of candidate 3. A Reroll of an upscale or a variation repeats that on the same
    image (its stored input), not an edit of it with the original words.
    """
    recipe = Options(style=turn.style or NO_STYLE, negative=turn.negative,
                     size=action.size if action.kind == "upscale" else None,
                     n=action.batch if action.kind == "reroll" else None)
    base = ImageRequest(actor=actor, chat=chat, prompt=turn.prompt, references=inputs)
    if action.kind in ("variations", "upscale"):
        if not chosen:
            raise NotFound()
        kind: RequestKind = "variation" if action.kind == "variations" else "upscale"
        return replace(base, references=chosen[:1], kind=kind,
                       options=replace(recipe, vary=action.vary or "subtle"))
    if turn.kind in ("variation", "upscale"):
        return replace(base, kind=turn.kind, options=replace(recipe, vary="subtle"))
    return replace(base, kind="reroll", options=recipe)
