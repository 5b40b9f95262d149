"""The built-in model catalog (DESIGN.md) and the resolved ``ModelSpec`` the core works with."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

ASPECTS: tuple[str, ...] = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
ASPECTS_31_FLASH: tuple[str, ...] = (*ASPECTS, "1:4", "4:1", "1:8", "8:1")
SIZE_ORDER: tuple[str, ...] = ("512", "1K", "2K", "4K")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model as configured: wire id, provider, what it accepts and what it costs."""

    name: str
    id: str
    provider: str
    sizes: tuple[str, ...]
    aspects: tuple[str, ...]
    max_references: int
    prices: dict[str, float] = field(default_factory=dict)
    credits: dict[str, int] = field(default_factory=dict)
    send_size: bool = True

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


#: name -> (id, sizes, max refs, prices by size, aspects, send imageSize)
BUILTIN: dict[str, tuple[str, tuple[str, ...], int, dict[str, float], tuple[str, ...], bool]] = {
    "nano-banana": ("gemini-2.5-flash-image", ("1K",), 3, {"1K": 0.039}, ASPECTS, False),
    "nano-banana-pro": (
        "gemini-3-pro-image-preview", ("1K", "2K", "4K"), 14,
        {"1K": 0.134, "2K": 0.134, "4K": 0.24}, ASPECTS, True,
    ),
    "nano-banana-2": (
        "gemini-3.1-flash-image-preview", ("512", "1K", "2K", "4K"), 14,
        {"512": 0.045, "1K": 0.067, "2K": 0.101, "4K": 0.151}, ASPECTS_31_FLASH, True,
    ),
}


def normalize_size(raw: str) -> str:
    """Canonical size spelling: ``4k`` -> ``4K``, ``512px`` -> ``512``."""
    value = raw.strip().upper().removesuffix("PX")
    return value


def largest_size(sizes: tuple[str, ...]) -> str:
    """The largest size in ``sizes`` by the canonical order."""
    known = [s for s in sizes if s in SIZE_ORDER]
    return max(known, key=SIZE_ORDER.index) if known else sizes[-1]
