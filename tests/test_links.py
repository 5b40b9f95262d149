"""References by URL (issue 19.5): what the core takes by URL, and where each job sends it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from adapters.discord.inbound import ImageSource, references
from bot import links
from bot.bootstrap import Core, build_core
from bot.config import Settings
from bot.domain import Action, Actor, ChatRef, ImageRequest
from bot.errors import InputTooLarge
from bot.links import image_link
from bot.providers.gemini import GeminiProvider
from bot.providers.retry import RetryPolicy
from tests.fake_upstream import (
    FakeUpstream,
    Sleeps,
    fake_upstream_fixture,  # noqa: F401
    sleeps_fixture,  # noqa: F401
)
from tests.helpers import photo
from tests.outcomes import jobs

#: An attachment URL as Discord signs it (expiry, issued, signature).
CDN = "https://cdn.discordapp.com/attachments/11/22/cat.png?ex=69f0a1b2&is=69ef5032&hm=0abc"
PHOTO = photo()
MB = 1_000_000


def test_only_discord_cdn_https_images_of_a_known_size_go_by_url() -> None:
    link = image_link(CDN, "image/png; charset=binary", 1000, "cat.png", max_bytes=MB)
    assert link is not None and link.url == CDN and link.mime == "image/png"
    assert "hm=" not in repr(link)  # a signed URL stays out of logs
    assert image_link("https://media.discordapp.net/attachments/1/2/a.webp", "image/webp", 9,
                      max_bytes=MB) is not None
    refused = [
        ("http://cdn.discordapp.com/attachments/1/2/a.png", "image/png", 10),
        ("https://example.com/a.png", "image/png", 10),
        ("https://cdn.discordapp.com.evil.example/a.png", "image/png", 10),
        # A Telegram file URL carries the bot token: never handed to anyone.
        ("https://api.telegram.org/file/bot123456:SECRET/photos/file_1.jpg", "image/jpeg", 10),
        ("https://user:pw@cdn.discordapp.com/a.png", "image/png", 10),
        ("https://cdn.discordapp.com:8443/a.png", "image/png", 10),
        ("https://cdn.discordapp.com:99999/a.png", "image/png", 10),
        (CDN, "text/plain", 10),
        (CDN, "", 10),
        (CDN, "image/gif", 10),
        (CDN, "image/png", None),
        (CDN, "image/png", 0),
    ]
    for url, mime, size in refused:
        assert image_link(url, mime, size, max_bytes=MB) is None, url
    with pytest.raises(InputTooLarge):
        image_link(CDN, "image/png", 2 * MB, max_bytes=MB)


async def test_the_discord_adapter_sends_links_only_when_all_qualify(core: Core) -> None:
    """All-or-none keeps the user's order; nothing is downloaded for links."""
    async with aiohttp.ClientSession() as session:
        refs, found = await references(core.api, session, [
            ImageSource(CDN, "cat.png", len(PHOTO), "image/png"),
            ImageSource(CDN.replace("cat", "dog"), "dog.png", len(PHOTO), "image/png")], MB)
        assert refs == () and [link.name for link in found] == ["cat.png", "dog.png"]
        with pytest.raises(InputTooLarge):
            await references(core.api, session, [
                ImageSource(CDN, "big.png", 200 * MB, "image/png")], MB)


@pytest.fixture
async def core(fake_upstream: FakeUpstream, sleeps: Sleeps, tmp_path: Path
               ) -> AsyncIterator[Core]:
    """A core whose nano-banana-pro is served by a Gemini route on the fake upstream."""
    settings = Settings.model_validate({
        "bot": {"data_dir": str(tmp_path / "data"), "default_model": "nano-banana-pro"},
        "providers": {"google": {"api": "gemini", "api_key_env": "GEMINI_API_KEY"}}})
    provider = GeminiProvider(name="google", base_url=fake_upstream.url, api_key="k",
                              policy=RetryPolicy(sleep=sleeps))
    built = build_core(settings, providers={"google": provider})
    await built.start()
    try:
        yield built
    finally:
        await built.stop(grace=0)


def _cdn(fetched: list[str]) -> links.Fetch:
    async def get(url: str, max_bytes: int) -> bytes:
        fetched.append(url)
        return PHOTO
    return get


async def test_gemini_fetches_the_url_and_the_turn_still_keeps_the_image(
        core: Core, fake_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    fetched: list[str] = []
    monkeypatch.setattr(links, "fetch", _cdn(fetched))
    provider = core.service.providers["google"]
    assert isinstance(provider, GeminiProvider)
    assert provider.accepts_links is False  # a loopback relay: not Google's host
    monkeypatch.setattr(provider, "accepts_links", True)  # as on generativelanguage.googleapis.com
    actor, chat = Actor("discord", "7"), ChatRef("discord", "70", "group", group_id="700")
    link = core.api.image_link(CDN, "image/png", len(PHOTO), "cat.png")
    assert link is not None
    reply = await jobs(core).edit(ImageRequest(actor=actor, chat=chat, prompt="make it blue",
                                               links=(link,)))
    assert reply.ok and reply.turn_id, reply.text
    parts = fake_upstream.seen("gemini")[0].json["contents"][-1]["parts"]
    assert [p for p in parts if "text" not in p] == [
        {"file_data": {"mime_type": "image/png", "file_uri": CDN}}]
    turn = await core.conversations.get(reply.turn_id)
    assert turn is not None and len(turn.input_hashes) == 1 and fetched == [CDN]
    # A reroll (maybe after the URL expired) replays the stored image inline.
    again = await jobs(core).act(actor, chat, Action("reroll", turn.id))
    assert again.ok, again.text
    parts = fake_upstream.seen("gemini")[1].json["contents"][-1]["parts"]
    assert [list(p) for p in parts if "text" not in p] == [["inline_data"]]


async def test_a_route_that_cannot_fetch_gets_the_bytes_inline(
        core: Core, fake_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    fetched: list[str] = []
    monkeypatch.setattr(links, "fetch", _cdn(fetched))
    link = core.api.image_link(CDN, "image/png", len(PHOTO), "cat.png")
    assert link is not None
    actor = Actor("discord", "8")
    reply = await jobs(core).edit(ImageRequest(actor=actor, chat=ChatRef("discord", "80"),
                                               prompt="sepia", links=(link, link)))
    assert reply.ok, reply.text
    parts = fake_upstream.seen("gemini")[0].json["contents"][-1]["parts"]
    assert [list(p) for p in parts if "text" not in p] == [["inline_data"], ["inline_data"]]
    assert "file_data" not in str(parts) and fetched == [CDN, CDN]
