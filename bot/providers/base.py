"""The ``ImageProvider`` port: what the core asks of any image model, whatever its wire API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from bot.domain import ImageData, ImageLink


@dataclass(frozen=True, slots=True)
class HistoryTurn:
    """One earlier turn of a conversation, oldest first, for multi-turn edits."""

    prompt: str
    inputs: tuple[ImageData, ...]
    outputs: tuple[ImageData, ...]
    #: Opaque JSON the provider returned for this turn (native Gemini: the model's parts).
    provider_state: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """One generation: the model's wire id, prompt, references, history, size and aspect."""

    model_id: str
    prompt: str
    references: tuple[ImageData, ...] = ()
    history: tuple[HistoryTurn, ...] = ()
    size: str | None = None
    aspect: str | None = None
    timeout: float = 120.0
    #: False for models that reject an explicit size (gemini-3.1-flash-lite-image).
    send_size: bool = True
    #: Thinking level to ask for ("minimal" ... "high"), or None for the model's default.
    thinking: str | None = None
    #: Ground the image in Google Search results.
    search: bool = False
    #: Safety level (bot.safety): what a route that takes safety settings is sent.
    safety: str = "default"
    #: References by URL, after ``references``: only for a provider with ``accepts_links``
    #: (bot/links.py decides; the others get those images inline in ``references``).
    links: tuple[ImageLink, ...] = ()


@dataclass(frozen=True, slots=True)
class ProviderResult:
    """What came back: images, the model's text, why it stopped, usage and state for next time."""

    images: tuple[ImageData, ...]
    text: str = ""
    finish_reason: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    provider_state: str | None = None
    #: Which response shape the extractor recognised (for logs and tests).
    shape: str = ""
    #: True when the result is a local placeholder, not a model's work.
    demo: bool = False


class ImageProvider(Protocol):
    """A wire API that turns a :class:`ProviderRequest` into a :class:`ProviderResult`.

    Implementations raise :mod:`bot.errors` categories (Refused, NoImage, UpstreamBusy,
    UpstreamError, UpstreamConfig, UpstreamNoCredit, JobTimeout), never raw SDK exceptions.
    """

    name: str

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        """Run one generation."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
