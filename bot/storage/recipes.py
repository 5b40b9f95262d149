"""A turn's recipe as stored (``turns.recipe``, JSON), and /describe's suggestions' rows."""

from __future__ import annotations

import json
from typing import Any

from bot.domain import Turn


def recipe_json(turn: Turn) -> str | None:
    """``{"style": ..., "no": [...]}`` for a turn that has either; None otherwise."""
    if turn.style is None and not turn.negative:
        return None
    return json.dumps({"style": turn.style, "no": list(turn.negative)})


def recipe_fields(raw: str | None) -> dict[str, Any]:
    """Turn fields from a stored recipe (nothing for none, or for one this code cannot read)."""
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    style = data.get("style")
    negative = data.get("no")
    return {"style": style if isinstance(style, str) else None,
            "negative": tuple(str(n) for n in negative) if isinstance(negative, list) else ()}


def prompts_json(prompts: list[str]) -> str:
    """Suggested prompts as stored."""
    return json.dumps(prompts, ensure_ascii=False)


def prompts_of(raw: str) -> list[str]:
    """Suggested prompts from their row (an unreadable row has none)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return []
    return [str(p) for p in data] if isinstance(data, list) else []
