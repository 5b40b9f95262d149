"""The model catalog: today's Nano Banana lineup, retired ids and names, and ``ModelSpec``.

Facts as of 2026-11-30, each from the page named beside it:

- Gemini API deprecations (https://ai.google.dev/gemini-api/docs/deprecations) and release notes
  (https://ai.google.dev/gemini-api/docs/changelog): ``gemini-3-pro-image`` and
  ``gemini-3.1-flash-image`` GA 2026-05-28; their ``-preview`` ids shut down 2026-06-25 (successors
  ``gemini-3-pro-image`` / ``gemini-3.1-flash-image``); ``gemini-2.5-flash-image`` shutdown
  announced for 2026-10-02.
- Nano Banana 2.1, ``gemini-nano-banana-2.1``, GA 2026-10-06: 1K/2K/4K (the 512 tier is rejected,
  https://github.com/tanstack/ai/releases/tag/%40tanstack%2Fai-gemini%400.36.0), 14 aspect ratios,
  thinking levels minimal | medium (default) | high, web and image search grounding
  (https://github.com/yeahhe365/AMC-WebUI/releases/tag/v1.24.0). Image output $30 per million
  tokens, $0.0336 per 1K image (https://github.com/BerriAI/litellm/discussions/44983); 2K is
  1680 tokens ($0.0504) by the 3.1 Flash token table
  (https://docs.cloud.google.com/vertex-ai/generative-ai/docs/models/gemini/3-1-flash-image); 4K is
  listed at $0.1134 (https://inference.sh/apps/google/gemini-nano-banana-2-1). The same release
  deprecated ``gemini-3.1-flash-image``, shut down 2026-10-29
  (https://www.skills.sh/jpcaparas/skills/nanobanana).
- Nano Banana 2 Lite, ``gemini-3.1-flash-lite-image``, GA 2026-06-30: 1K only (Google's model
  card lists "Supported resolutions: 1K"; ``imageSize`` is answered with 400, so it is not sent,
  https://github.com/pollinations/pollinations/pull/12132), 14 aspect ratios, 14 references,
  $0.0336 per image (1120 tokens at $30/M), no search grounding.
- Nano Banana Pro, ``gemini-3-pro-image``: 1K/2K/4K, the ten classic aspect ratios, $0.134 /
  $0.134 / $0.24 (https://ai.google.dev/gemini-api/docs/pricing), thinking always on, web search.

The lineup moves every few months: ``imagine-bot models --online`` compares it with what a route
lists, and ``[models.NAME]`` in the config overrides any field without a release.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

ASPECTS: tuple[str, ...] = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
ASPECTS_WIDE: tuple[str, ...] = (*ASPECTS, "1:4", "4:1", "1:8", "8:1")
ASPECTS_31_FLASH = ASPECTS_WIDE  # the name the first catalog used
SIZE_ORDER: tuple[str, ...] = ("512", "1K", "2K", "4K")
THINKING_LEVELS: tuple[str, ...] = ("minimal", "low", "medium", "high")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """One model as configured: wire id on its route, provider, what it accepts and costs."""

    name: str
    id: str
    provider: str
    sizes: tuple[str, ...]
    aspects: tuple[str, ...]
    max_references: int
    prices: dict[str, float] = field(default_factory=dict)
    credits: dict[str, int] = field(default_factory=dict)
    send_size: bool = True
    status: str = "ga"
    #: Google Search grounding can be asked for (``--search``).
    search: bool = False
    #: Thinking levels the model takes (``--thinking``); empty: not settable.
    thinking: tuple[str, ...] = ()

    def price_usd(self, size: str) -> float:
        """USD per image at ``size`` (the largest known price when the size is unlisted)."""
        if size in self.prices:
            return self.prices[size]
        return max(self.prices.values(), default=0.0)

    def credit_cost(self, size: str, credit_usd: float) -> int:
        """Credits per image: the model's override, else ``ceil(price / credit_usd)``."""
        if size in self.credits:
            return self.credits[size]
        price = self.price_usd(size)
        if credit_usd <= 0:
            return 1
        # round() first so float noise (0.039/0.01 = 3.9000000000000004) does not add a credit.
        return max(1, math.ceil(round(price / credit_usd, 6)))

    def larger_sizes(self, size: str) -> tuple[str, ...]:
        """Sizes this model offers that are larger than ``size`` (for 2K/4K buttons)."""
        rank = SIZE_ORDER.index(size) if size in SIZE_ORDER else -1
        return tuple(s for s in self.sizes if s in SIZE_ORDER and SIZE_ORDER.index(s) > rank)


@dataclass(frozen=True, slots=True, kw_only=True)
class Builtin:
    """A built-in model: Google's id, what it takes, its price table, status and features."""

    id: str
    sizes: tuple[str, ...]
    max_references: int
    prices: Mapping[str, float]
    aspects: tuple[str, ...] = ASPECTS
    send_size: bool = True
    status: str = "ga"
    released: str = ""
    search: bool = False
    thinking: tuple[str, ...] = ()


BUILTIN: dict[str, Builtin] = {
    "nano-banana-2.1": Builtin(
        id="gemini-nano-banana-2.1",
        sizes=("1K", "2K", "4K"),
        max_references=14,
        prices={"1K": 0.0336, "2K": 0.0504, "4K": 0.1134},
        aspects=ASPECTS_WIDE,
        released="2026-10-06",
        search=True,
        thinking=("minimal", "medium", "high"),
    ),
    "nano-banana-pro": Builtin(
        id="gemini-3-pro-image",
        sizes=("1K", "2K", "4K"),
        max_references=14,
        prices={"1K": 0.134, "2K": 0.134, "4K": 0.24},
        released="2026-05-28",
        search=True,
    ),
    "nano-banana-2-lite": Builtin(
        id="gemini-3.1-flash-lite-image",
        sizes=("1K",),
        max_references=14,
        prices={"1K": 0.0336},
        aspects=ASPECTS_WIDE,
        send_size=False,
        released="2026-06-30",
        thinking=("minimal", "high"),
    ),
}
DEFAULT_MODEL = "nano-banana-2.1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Retired:
    """A model id or name that no longer answers, and the built-in that replaces it."""

    successor: str
    why: str


#: Google ids that were shut down, by the id as sent (route prefixes are stripped first).
RETIRED_IDS: dict[str, Retired] = {
    "gemini-3-pro-image-preview": Retired(
        successor="nano-banana-pro", why="shut down 2026-06-25"),
    "gemini-3.1-flash-image-preview": Retired(
        successor="nano-banana-2.1", why="shut down 2026-06-25"),
    "gemini-3.1-flash-image": Retired(
        successor="nano-banana-2.1", why="deprecated 2026-10-06, shut down 2026-10-29"),
    "gemini-2.5-flash-image": Retired(
        successor="nano-banana-2.1", why="shut down 2026-10-02"),
    "gemini-2.5-flash-image-preview": Retired(
        successor="nano-banana-2.1", why="shut down 2026-10-02"),
}
#: Names the first catalog offered, which users may have saved in /settings or turns.
RETIRED_NAMES: dict[str, Retired] = {
    "nano-banana": Retired(
        successor="nano-banana-2.1", why="its model gemini-2.5-flash-image shut down 2026-10-02"),
    "nano-banana-2": Retired(
        successor="nano-banana-2.1", why="its model gemini-3.1-flash-image shut down 2026-10-29"),
}


def bare_id(model_id: str) -> str:
    """A wire id without its route spelling: ``google/x`` and ``models/x`` become ``x``."""
    return model_id.rsplit("/", 1)[-1].strip()


def retired(name_or_id: str) -> Retired | None:
    """The retirement record of a model name or id (any route spelling), if it has one."""
    return RETIRED_NAMES.get(name_or_id) or RETIRED_IDS.get(bare_id(name_or_id))


class Lineup:
    """Finds models by name or wire id, sending retired ones to their successor (warned once)."""

    def __init__(self, models: Mapping[str, ModelSpec]) -> None:
        self.models = dict(models)
        self._warned: set[tuple[str, str]] = set()

    def find(self, name_or_id: str, *, where: str = "a request") -> ModelSpec | None:
        """The model ``name_or_id`` names today, or None when nothing matches."""
        spec = self.models.get(name_or_id) or next(
            (m for m in self.models.values() if m.id == name_or_id), None)
        if spec is not None:
            return spec
        gone = retired(name_or_id)
        if gone is None or gone.successor not in self.models:
            return None
        if (where, name_or_id) not in self._warned:
            self._warned.add((where, name_or_id))
            log.warning("model %r in %s is retired (%s); using %r instead", name_or_id, where,
                        gone.why, gone.successor)
        return self.models[gone.successor]


def normalize_size(raw: str) -> str:
    """Canonical size spelling: ``4k`` -> ``4K``, ``512px`` and ``0.5K`` -> ``512``."""
    value = raw.strip().upper().removesuffix("PX")
    return "512" if value in ("0.5K", ".5K") else value


def largest_size(sizes: tuple[str, ...]) -> str:
    """The largest size in ``sizes`` by the canonical order."""
    known = [s for s in sizes if s in SIZE_ORDER]
    return max(known, key=SIZE_ORDER.index) if known else sizes[-1]
