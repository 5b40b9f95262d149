"""Routes: the services people reach Nano Banana through, and how each one spells things.

A route is more than a wire API: it knows its default base URL, the environment variable its key
usually lives in, how it spells model ids and sizes, and where it reads image options.

- ``gemini``: Google AI Studio's native ``generateContent``
  (https://ai.google.dev/api/generate-content); ``imageConfig {aspectRatio, imageSize}``,
  ``thinkingConfig {thinkingLevel}``, ``tools [{google_search: {}}]``
  (https://ai.google.dev/gemini-api/docs/image-generation, /docs/google-search).
- ``openrouter``: chat completions at https://openrouter.ai/api/v1; ids ``google/<id>``; top-level
  ``modalities`` and ``image_config {aspect_ratio, image_size}`` with the smallest size spelled
  ``0.5K`` (https://openrouter.ai/docs/guides/overview/multimodal/image-generation); reasoning as
  ``reasoning {effort}`` (https://openrouter.ai/docs/use-cases/reasoning-tokens); web search as the
  ``web`` plugin (https://openrouter.ai/docs/features/web-search).
- ``new-api``: one-api / new-api relays, and Google's own OpenAI-compatible route, read Gemini
  options from a JSON key literally named ``extra_body``:
  ``{"extra_body": {"google": {"image_config": ..., "thinking_config": ...}}}``
  (https://ai.google.dev/gemini-api/docs/openai#extra-body). The openai SDK's ``extra_body=``
  argument merges keys into the body root, so the provider nests the literal key itself.
- ``litellm``: a LiteLLM proxy (default http://localhost:4000); ``reasoning_effort`` and
  ``tools [{googleSearch: {}}]`` as LiteLLM maps them for Gemini
  (https://docs.litellm.ai/docs/providers/gemini); answers in ``message.images[]`` (older
  versions: ``message.image``).
- ``openai-chat``: any other OpenAI-compatible relay: every spelling at once, every shape read.
- ``openai-images``: ``images.generate`` / ``images.edit`` (gpt-image-1, dall-e-3).
- ``demo``: a labelled local placeholder, no network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from bot.catalog import bare_id

Wire = Literal["gemini", "chat", "images", "demo"]
#: Where a chat route reads image/thinking/search options.
Dialect = Literal["openrouter", "new-api", "litellm", "generic"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One kind of service: wire API, defaults, and its spelling of ids, sizes and options."""

    api: str
    wire: Wire
    base_url: str | None
    key_env: str | None
    label: str
    dialect: Dialect = "generic"
    id_prefix: str = ""
    sizes: Mapping[str, str] = field(default_factory=dict)

    def model_id(self, google_id: str) -> str:
        """Google's id in this route's spelling (an id already spelled with a ``/`` is kept)."""
        if not self.id_prefix or "/" in google_id:
            return google_id
        return self.id_prefix + bare_id(google_id)

    def size(self, size: str) -> str:
        """A canonical size (``512``, ``1K`` ...) as this route writes it."""
        return self.sizes.get(size, size)


ROUTES: dict[str, Route] = {
    "gemini": Route(
        api="gemini", wire="gemini", base_url="https://generativelanguage.googleapis.com",
        key_env="GEMINI_API_KEY", label="Google Gemini API"),
    "openrouter": Route(
        api="openrouter", wire="chat", base_url="https://openrouter.ai/api/v1",
        key_env="OPENROUTER_API_KEY", label="OpenRouter", dialect="openrouter",
        id_prefix="google/", sizes={"512": "0.5K"}),
    "new-api": Route(
        api="new-api", wire="chat", base_url=None, key_env="NEW_API_KEY",
        label="new-api / one-api relay", dialect="new-api"),
    "litellm": Route(
        api="litellm", wire="chat", base_url="http://localhost:4000", key_env="LITELLM_API_KEY",
        label="LiteLLM proxy", dialect="litellm"),
    "openai-chat": Route(
        api="openai-chat", wire="chat", base_url=None, key_env=None,
        label="OpenAI-compatible relay"),
    "openai-images": Route(
        api="openai-images", wire="images", base_url=None, key_env="OPENAI_API_KEY",
        label="OpenAI Images API"),
    "demo": Route(
        api="demo", wire="demo", base_url=None, key_env=None,
        label="built-in demo (placeholders)"),
}
#: Routes a bare exported key turns on when the config names no provider, in this order.
ZERO_CONFIG = ("gemini", "openrouter")


def route(api: str) -> Route:
    """The route for a ``[providers.NAME] api`` value."""
    return ROUTES[api]
