"""Safety levels (``strict | default | relaxed``) and what each route is sent for them.

Native Gemini takes ``safetySettings``, a list of ``{category, threshold}``, on
``generateContent`` (https://ai.google.dev/api/generate-content). The four adjustable categories
are harassment, hate speech, sexually explicit and dangerous content; Google's default blocks
medium probability and above, and built-in protections against core harms (child safety) always
apply and cannot be adjusted (https://ai.google.dev/gemini-api/docs/safety-settings). Thresholds:
``BLOCK_LOW_AND_ABOVE`` (block more), ``BLOCK_MEDIUM_AND_ABOVE``, ``BLOCK_ONLY_HIGH`` (block
less), ``BLOCK_NONE`` and ``OFF``
(https://cloud.google.com/vertex-ai/generative-ai/docs/reference/java/latest/com.google.cloud.vertexai.api.SafetySetting.HarmBlockThreshold).

``strict`` blocks low and above; ``default`` sends nothing (the route's own default); ``relaxed``
blocks only high, never none: the bot does not switch Google's filters off. Chat relays
(OpenRouter, new-api, LiteLLM) take no documented safety field, so they are sent nothing and
their own policy applies; a refusal still names the level that was asked for.
"""

from __future__ import annotations

from typing import Literal

from bot.domain import ChatRef

Level = Literal["strict", "default", "relaxed"]
LEVELS: tuple[Level, ...] = ("strict", "default", "relaxed")
HARM_CATEGORIES = ("HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_HATE_SPEECH",
                   "HARM_CATEGORY_SEXUALLY_EXPLICIT", "HARM_CATEGORY_DANGEROUS_CONTENT")
_THRESHOLD = {"strict": "BLOCK_LOW_AND_ABOVE", "relaxed": "BLOCK_ONLY_HIGH"}
#: Where the operator lets a group choose ``relaxed``.
RelaxedWhere = Literal["nowhere", "age-restricted", "anywhere"]


def gemini_safety(level: str) -> list[dict[str, str]] | None:
    """``safetySettings`` for native Gemini at ``level`` (None: send none, Google's default)."""
    threshold = _THRESHOLD.get(level)
    if threshold is None:
        return None
    return [{"category": c, "threshold": threshold} for c in HARM_CATEGORIES]


def relaxed_allowed(where: RelaxedWhere, chat: ChatRef) -> bool:
    """True when ``relaxed`` may apply in ``chat`` under the operator's ``[safety] relaxed``."""
    if where == "anywhere":
        return True
    return where == "age-restricted" and chat.age_restricted


def effective(asked: str | None, default: str, where: RelaxedWhere, chat: ChatRef) -> Level:
    """The level that applies: the group's (else the operator's), never looser than permitted."""
    level = asked if asked in LEVELS else default
    if level == "relaxed" and not relaxed_allowed(where, chat):
        return "default"
    return "strict" if level == "strict" else "relaxed" if level == "relaxed" else "default"
