"""Discord premium apps: /buy shows each pack's SKU purchase button; entitlements become credits.

A pack is a consumable SKU (type 3, https://discord.com/developers/docs/resources/sku
#sku-object-sku-types). Its purchase button is a premium button: style 6 with the SKU's id and
no custom_id, label, url or emoji, Discord draws the name and price itself
(https://discord.com/developers/docs/components/reference#button). A purchase arrives as an
ENTITLEMENT_CREATE event; the user cannot buy the same SKU again until the app consumes the
entitlement, which it should do as soon as the item is granted
(https://discord.com/developers/docs/monetization/implementing-one-time-purchases), through
``POST /applications/{app}/entitlements/{id}/consume`` (204,
https://discord.com/developers/docs/resources/entitlement#consume-an-entitlement). So each
entitlement id is credited once (the shop's ledger), then consumed; one that arrived while the
bot was away is still unconsumed, and the start lists them (List Entitlements, deleted ones left
out by default, same page). Discord refunds by deleting the entitlement (ENTITLEMENT_DELETE,
https://discord.com/developers/docs/events/gateway-events#entitlement-delete): the pack goes.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import discord
from discord import app_commands

from adapters.discord.runtime import Runtime
from bot.api import Actor, BotError, Charge, Pack

log = logging.getLogger(__name__)
PLATFORM: Final = "discord"
#: Discord draws at most 5 buttons in a row and 5 rows under a message.
BUTTONS_MAX = 25
#: The purchase buttons stay in this process's view store this long (they send no interaction).
VIEW_SECONDS = 600


def purchase_view(packs: list[Pack]) -> discord.ui.View:
    """One premium button per pack (Discord shows the SKU's name and price on it)."""
    view = discord.ui.View(timeout=VIEW_SECONDS)
    for pack in packs[:BUTTONS_MAX]:
        view.add_item(discord.ui.Button(sku_id=int(pack.discord_sku or 0)))
    return view


class Payments:
    """The shop on Discord: the /buy command, entitlement events and the start-up sweep."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.api = rt.api
        self.shop = rt.api.shop

    def command(self) -> app_commands.Command[Any, ..., None]:
        """/buy: the packs with their purchase buttons (privately)."""
        api = self.api

        @app_commands.command(name=app_commands.locale_str(api.t("en", "discord.cmd.buy.name"),
                                                           key="discord.cmd.buy.name"),
                              description=app_commands.locale_str(
                                  api.t("en", "discord.cmd.buy.description"),
                                  key="discord.cmd.buy.description"))
        async def buy(interaction: discord.Interaction[Any]) -> None:
            async def make(actor: Actor, locale: str) -> tuple[str, discord.ui.View | None]:
                return self._menu(locale)
            await self.rt.answer(interaction, make)

        return buy

    def _menu(self, locale: str) -> tuple[str, discord.ui.View | None]:
        t = self.api.t
        packs = self.shop.packs(PLATFORM)
        if not packs:
            return t(locale, "shop.closed"), None
        lines = [t(locale, "shop.title")]
        for p in packs:
            lines.append(t(locale, "shop.line", pack=p.id, credits=p.credits,
                           price=f"${p.discord_usd:.2f}") if p.discord_usd else
                         t(locale, "shop.line_plain", pack=p.id, credits=p.credits))
        days = self.shop.settings.credits_expire_days
        lasting = t(locale, "shop.expire", days=days) if days else t(locale, "shop.never_expire")
        lines += ["", f"{t(locale, 'shop.spent_after')} {lasting}", t(locale, "shop.pick_discord")]
        return "\n".join(lines), purchase_view(packs)

    async def on_entitlement(self, entitlement: discord.Entitlement) -> None:
        """A purchase: credit it once, then consume it so the user can buy again."""
        await self._grant(entitlement)

    async def on_entitlement_delete(self, entitlement: discord.Entitlement) -> None:
        """Discord took the purchase back (a refund): so goes what is left of the pack."""
        charge = self._charge(entitlement)
        if charge is None:
            return
        try:
            await self.shop.refunded(charge)
        except BotError as err:
            log.error("discord: refund of entitlement %s not recorded (%s)", entitlement.id,
                      err.detail)

    def _charge(self, entitlement: discord.Entitlement) -> Charge | None:
        if entitlement.user_id is None:  # a server's entitlement: our packs are a person's
            return None
        actor = Actor(PLATFORM, str(entitlement.user_id))
        return self.shop.discord_charge(actor, str(entitlement.id), str(entitlement.sku_id))

    async def _grant(self, entitlement: discord.Entitlement) -> bool:
        charge = self._charge(entitlement)
        if charge is None:
            # A SKU no pack sells (any more): left unconsumed for when a pack sells it again.
            log.warning("discord: entitlement %s is for SKU %s, which no pack sells; left as is",
                        entitlement.id, entitlement.sku_id)
            return False
        if entitlement.deleted:
            await self.on_entitlement_delete(entitlement)
            return False
        try:
            receipt = await self.shop.receive(charge)
        except BotError as err:  # the store stayed away: unconsumed, it is credited next start
            log.error("discord: entitlement %s of %s not credited yet (%s)", entitlement.id,
                      charge.actor.key, err.detail)
            return False
        if receipt.payment.state != "received" and not entitlement.consumed:
            try:
                await entitlement.consume()
                await self.shop.mark_consumed(PLATFORM, str(entitlement.id))
            except (discord.HTTPException, BotError) as err:
                log.warning("discord: entitlement %s credited but not consumed (%s); the next "
                            "start consumes it", entitlement.id, err)
        return receipt.fresh

    async def sweep(self) -> None:
        """Credit and consume the entitlements that arrived while the bot was away."""
        skus = self.shop.skus()
        if not skus:
            return
        fresh = 0
        try:
            async for entitlement in self.rt.client.entitlements(
                    limit=None, skus=[discord.Object(int(s)) for s in skus]):
                if not entitlement.consumed:
                    fresh += await self._grant(entitlement)
        except discord.HTTPException as err:
            log.warning("discord: could not list the entitlements (%s)", err)
        if fresh:
            log.warning("discord: credited %d purchase(s) made while the bot was away", fresh)
