"""``[describe]``: /describe's text model, its route and its own small price.

The default model is Google's current stable Flash text model, ``gemini-3.8-flash`` (the models
page lists it as the newest stable Flash, https://ai.google.dev/gemini-api/docs/models; the
Gemini 3.6 notes call 3.6 the previous generation and point to 3.8,
https://ai.google.dev/gemini-api/docs/generate-content/whats-new-gemini-3.6). It takes images
and answers text; an OpenAI-compatible route spells it its own way (``google/gemini-3.8-flash``
on OpenRouter, bot/providers/routes.py).
"""

from __future__ import annotations

from pydantic import Field

from bot.config_sections import _Section

DEFAULT_TEXT_MODEL = "gemini-3.8-flash"


class DescribeSection(_Section):
    """``[describe]``: off with ``enabled = false``."""

    enabled: bool = True
    #: A text-capable model id, as Google spells it.
    model: str = Field(default=DEFAULT_TEXT_MODEL, min_length=1, max_length=120)
    #: The ``[providers.NAME]`` that answers; unset: the default image model's provider.
    provider: str | None = None
    #: What one /describe costs the user (0: free); a failed one costs nothing.
    credits: int = Field(default=1, ge=0, le=1000)
    #: What one costs upstream, toward ``[quota] global_daily_usd`` (an image and ~200 words).
    usd: float = Field(default=0.002, ge=0)
    timeout_seconds: float = Field(default=60.0, gt=0, le=600)
