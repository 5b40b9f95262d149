"""Result images for the page: originals and scaled-down previews, for the owner or an operator."""

from __future__ import annotations

from collections import OrderedDict

from aiohttp import web

from adapters.web import inbound
from adapters.web.runtime import Runtime
from bot.api import BotError, ImageData

PREVIEW_SIDE = 1024
PREVIEW_CACHE = 64


class Media:
    """Serves /img/{turn}/{index} and its preview."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._previews: OrderedDict[tuple[str, int], ImageData] = OrderedDict()

    def routes(self) -> list[web.RouteDef]:
        """The image routes."""
        return [web.get(r"/img/{turn}/{index:\d+}", self.original),
                web.get(r"/img/{turn}/{index:\d+}/preview", self.preview)]

    async def _image(self, request: web.Request) -> tuple[tuple[str, int], ImageData]:
        """The requested output image, for its owner or an operator (else 404)."""
        turn_id, index = request.match_info["turn"], int(request.match_info["index"])
        # The operator sees every result (the gallery); anyone else only their own.
        who = inbound.OPERATOR if self.rt.operator(request) else inbound.actor(request)
        try:
            found = await self.rt.api.result_images(who, turn_id)
        except BotError:
            raise web.HTTPNotFound() from None
        if index >= len(found):
            raise web.HTTPNotFound()
        return (turn_id, index), found[index]

    async def original(self, request: web.Request) -> web.Response:
        """A result's original image."""
        (turn_id, index), img = await self._image(request)
        return _respond(img, f'inline; filename="imagine-{turn_id}-{index + 1}.{img.extension}"')

    async def preview(self, request: web.Request) -> web.Response:
        """A result scaled down for the page (originals can be 4K)."""
        key, img = await self._image(request)
        cached = self._previews.get(key)
        if cached is None:
            cached = await self.rt.api.thumbnail(img, PREVIEW_SIDE)
            self._previews[key] = cached
            while len(self._previews) > PREVIEW_CACHE:
                self._previews.popitem(last=False)
        self._previews.move_to_end(key)
        return _respond(cached, "inline")


def _respond(img: ImageData, disposition: str) -> web.Response:
    # img.mime was sniffed from the bytes (ImageData); nosniff keeps browsers to it.
    return web.Response(body=img.data, content_type=img.mime, headers={
        "Cache-Control": "private, max-age=86400", "Content-Disposition": disposition,
        "X-Content-Type-Options": "nosniff"})
