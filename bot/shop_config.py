"""``[shop]`` and ``[[shop.packs]]``: credit packs people can buy (off unless a pack is listed).

A pack is sold on Telegram when it has ``stars`` (Telegram Stars, currency ``XTR``) and on
Discord when it has ``discord_sku`` (a consumable SKU made in the Developer Portal, where its
price is set too: the API does not tell it, hence ``discord_usd`` for the revenue figures).
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from bot.config_sections import _Section

_PACK_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,23}$")
#: The most credits one pack may hold (the grant limit, bot.quotas.MAX_GRANT).
MAX_PACK_CREDITS = 1_000_000


class PackSection(_Section):
    """One ``[[shop.packs]]`` entry."""

    #: Shown in /buy and carried in the Telegram invoice payload: short, lower case.
    id: str
    credits: int = Field(ge=1, le=MAX_PACK_CREDITS)
    #: Price in Telegram Stars; unset hides the pack on Telegram.
    stars: int | None = Field(default=None, ge=1, le=1_000_000)
    #: A consumable SKU id; unset hides the pack on Discord.
    discord_sku: str | None = None
    #: The SKU's price in USD as set in the Developer Portal (revenue figures only).
    discord_usd: float = Field(default=0.0, ge=0)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _PACK_ID.match(value):
            raise ValueError("1-24 lower-case letters, digits, '-' or '_' (e.g. \"small\")")
        return value

    @field_validator("discord_sku")
    @classmethod
    def _sku(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9]{1,20}", value):
            raise ValueError("a Discord SKU id is a number (the Developer Portal's SKU ID)")
        return value


class ShopSection(_Section):
    """``[shop]``: the rate for revenue figures, expiry, the support contact, and the packs."""

    #: USD per Star, for revenue figures only (what Telegram pays out per Star varies).
    usd_per_star: float = Field(default=0.013, ge=0)
    #: Purchased credits older than this many days lapse (0 = they never expire).
    credits_expire_days: int = Field(default=0, ge=0, le=3650)
    #: Who answers payment questions (/paysupport): an @username, an e-mail or a URL.
    support: str = Field(default="", max_length=200)
    packs: tuple[PackSection, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> ShopSection:
        ids = [p.id for p in self.packs]
        skus = [p.discord_sku for p in self.packs if p.discord_sku]
        for name, values in (("id", ids), ("discord_sku", skus)):
            doubled = sorted({v for v in values if values.count(v) > 1})
            if doubled:
                raise ValueError(f"[[shop.packs]] {name} must be unique: {', '.join(doubled)}")
        return self

    @property
    def enabled(self) -> bool:
        """Whether anything is for sale."""
        return bool(self.packs)
