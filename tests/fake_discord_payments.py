"""Premium apps for the fake Discord: SKUs, entitlements, their gateway events and consumption.

As Discord documents them:

- SKUs: ``GET /applications/{app}/skus``; a consumable one-time purchase is type 3
  (https://discord.com/developers/docs/resources/sku#sku-object-sku-types);
- a purchase makes an entitlement and sends ENTITLEMENT_CREATE; the user cannot buy a consumable
  SKU again until the app consumes it
  (https://discord.com/developers/docs/monetization/implementing-one-time-purchases; test-mode
  repurchases are not modelled);
- ``GET /applications/{app}/entitlements`` (user_id, sku_ids, before, after, limit 1-100,
  guild_id, exclude_ended, exclude_deleted defaulting to true) and ``POST .../entitlements/{id}/
  consume``, 204 on success, 404 / 10029 Unknown Entitlement otherwise
  (https://discord.com/developers/docs/resources/entitlement, JSON codes:
  https://discord.com/developers/docs/topics/opcodes-and-status-codes#json-json-error-codes);
- a refund deletes the entitlement and sends ENTITLEMENT_DELETE
  (https://discord.com/developers/docs/events/gateway-events#entitlement-delete);
- interactions carry the user's current entitlements (``entitlements``).

Consuming an already consumed entitlement is answered 204 here; the docs do not say otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fake_discord import MIB, FakeDiscord, FakeInteraction, FakeUser, _Routes, snowflake

CONSUMABLE = 3
PURCHASE = 1


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": "application/json"})


class ShopDiscord(FakeDiscord):
    """The fake Discord with an app that sells SKUs."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.skus: dict[int, dict[str, Any]] = {}
        self.entitlements: dict[int, dict[str, Any]] = {}

    async def start(self) -> ShopDiscord:
        """Listen on a free loopback port, with the monetization routes too."""
        app = web.Application(client_max_size=256 * MIB)
        routes = _Routes(self)
        routes.install(app)
        api = "/api/v10/applications/{app}"
        app.router.add_get(f"{api}/skus", self._skus)
        app.router.add_get(f"{api}/entitlements", self._list)
        app.router.add_post(f"{api}/entitlements/{{eid}}/consume", self._consume)
        self._routes = routes
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    # ----- the developer portal and the store --------------------------------------------------

    def add_sku(self, name: str, kind: int = CONSUMABLE) -> str:
        """A SKU of the app (consumable by default); its id."""
        sku_id = snowflake()
        self.skus[sku_id] = {"id": str(sku_id), "type": kind, "application_id": str(self.bot.id),
                             "name": name, "slug": name.lower().replace(" ", "-"), "flags": 4}
        return str(sku_id)

    async def purchase(self, user: FakeUser, sku: str, *, online: bool = True) -> str:
        """``user`` buys ``sku`` (pressing its premium button); the entitlement id."""
        held = [e for e in self.entitlements.values() if e["user_id"] == str(user.id)
                and e["sku_id"] == sku and not e["deleted"] and not e["consumed"]]
        assert not held, "Discord: this consumable cannot be bought again until it is consumed"
        eid = snowflake()
        entitlement = {"id": str(eid), "sku_id": sku, "application_id": str(self.bot.id),
                       "user_id": str(user.id), "type": PURCHASE, "deleted": False,
                       "consumed": False, "gift_code_flags": 0}
        self.entitlements[eid] = entitlement
        await self.record("entitlement", entitlement=dict(entitlement))
        if online:
            await self.dispatch("ENTITLEMENT_CREATE", entitlement)
        return str(eid)

    async def redeliver(self, entitlement_id: str, event: str = "ENTITLEMENT_CREATE") -> None:
        """Send an entitlement's event (again)."""
        await self.dispatch(event, self.entitlements[int(entitlement_id)])

    async def refund(self, entitlement_id: str, *, online: bool = True) -> None:
        """Discord refunds a purchase: the entitlement is deleted."""
        entitlement = self.entitlements[int(entitlement_id)]
        entitlement["deleted"] = True
        if online:
            await self.dispatch("ENTITLEMENT_DELETE", entitlement)

    def active(self, user: FakeUser) -> list[dict[str, Any]]:
        """The user's entitlements now (what interactions carry)."""
        return [e for e in self.entitlements.values() if e["user_id"] == str(user.id)
                and not e["deleted"] and not e["consumed"]]

    def _interaction_payload(self, ix: FakeInteraction, locale: str) -> dict[str, Any]:
        payload = super()._interaction_payload(ix, locale)
        payload["entitlements"] = self.active(ix.user)
        return payload

    # ----- REST ------------------------------------------------------------------------------

    def _ours(self, request: web.Request) -> bool:
        return request.match_info["app"] == str(self.bot.id)

    async def _skus(self, request: web.Request) -> web.Response:
        if not self._ours(request):
            return await self._routes.error(404, 10002, "Unknown Application", request)
        return _json(list(self.skus.values()))

    async def _list(self, request: web.Request) -> web.Response:
        if not self._ours(request):
            return await self._routes.error(404, 10002, "Unknown Application", request)
        q = request.query
        limit = int(q.get("limit", "100"))
        if not 1 <= limit <= 100:
            return await self._routes.error(400, 50035, "Invalid Form Body: limit", request)
        skus = set(q["sku_ids"].split(",")) if q.get("sku_ids") else None
        keep: Callable[[dict[str, Any]], bool] = lambda e: (  # noqa: E731
            (skus is None or e["sku_id"] in skus)
            and (not q.get("user_id") or e["user_id"] == q["user_id"])
            and not (q.get("exclude_deleted", "1") in ("1", "true") and e["deleted"]))
        rows = sorted((e for e in self.entitlements.values() if keep(e)), key=lambda e: int(e["id"]))
        if q.get("after"):
            rows = [e for e in rows if int(e["id"]) > int(q["after"])][:limit]
        elif q.get("before"):
            rows = [e for e in rows if int(e["id"]) < int(q["before"])][-limit:]
        else:
            rows = rows[:limit]
        await self.record("list_entitlements", query=dict(q))
        return _json(rows)

    async def _consume(self, request: web.Request) -> web.StreamResponse:
        entitlement = self.entitlements.get(int(request.match_info["eid"]))
        if not self._ours(request) or entitlement is None or entitlement["deleted"]:
            return await self._routes.error(404, 10029, "Unknown Entitlement", request)
        sku = self.skus.get(int(entitlement["sku_id"]))
        if sku is None or sku["type"] != CONSUMABLE:
            return await self._routes.error(400, 50035, "Invalid Form Body: not a consumable "
                                                        "one-time purchase", request)
        entitlement["consumed"] = True
        await self.record("consume", entitlement=dict(entitlement))
        return web.Response(status=204)
