"""The fake upstream refuses what the real services refuse: no or wrong key, a malformed body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fake_upstream import (
    FakeUpstream,
    Reply,
    chat_body,
    fake_upstream_fixture,  # noqa: F401
    png,
)

KEY = "sk-the-right-key-123"


@pytest.fixture
async def keyed() -> AsyncIterator[FakeUpstream]:
    """A fake that knows its key."""
    fake = FakeUpstream(key=KEY)
    await fake.start()
    yield fake
    await fake.stop()


async def post(fake: FakeUpstream, path: str, *, body: Any = None, headers: dict[str, str],
               form: aiohttp.FormData | None = None) -> tuple[int, dict[str, Any]]:
    """One POST; (status, JSON answer)."""
    async with aiohttp.ClientSession() as http, http.post(
            fake.url + path, json=None if form else body, data=form, headers=headers) as resp:
        answer: dict[str, Any] = await resp.json()
        return resp.status, answer


BEARER = {"Authorization": f"Bearer {KEY}"}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "a kite"}]}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "a kite"}]}]}


async def test_key_is_required_and_checked(keyed: FakeUpstream) -> None:
    """401 without or with a wrong Bearer key; Google's answers for its own route."""
    assert (await post(keyed, "/v1/chat/completions", body=CHAT, headers={}))[0] == 401
    status, answer = await post(keyed, "/v1/chat/completions", body=CHAT,
                                headers={"Authorization": "Bearer sk-wrong"})
    assert status == 401 and answer["error"]["code"] == "invalid_api_key"
    assert (await post(keyed, "/v1/chat/completions", body=CHAT, headers=BEARER))[0] == 200
    path = "/v1beta/models/gemini-3-pro-image:generateContent"
    status, answer = await post(keyed, path, body=GEMINI, headers={})
    assert (status, answer["error"]["status"]) == (403, "PERMISSION_DENIED")
    status, answer = await post(keyed, path, body=GEMINI, headers={"x-goog-api-key": "AIza-x"})
    assert (status, answer["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert (await post(keyed, path, body=GEMINI, headers={"x-goog-api-key": KEY}))[0] == 200
    assert (await post(keyed, path + f"?key={KEY}", body=GEMINI, headers={}))[0] == 200
    assert [why for _, why in keyed.refused] == ["key"] * 4


async def test_basic_request_shape_per_route(keyed: FakeUpstream) -> None:
    """Each route's required fields, as the API references list them."""
    bad: list[tuple[str, Any]] = [
        ("/v1/chat/completions", {"messages": CHAT["messages"]}),
        ("/v1/chat/completions", {"model": "m", "messages": []}),
        ("/v1beta/models/gemini-3-pro-image:generateContent", {"contents": []}),
        ("/v1beta/models/gemini-3-pro-image:generateContent", {"contents": [{"parts": []}]}),
        ("/v1/images/generations", {"model": "gpt-image-1"}),
    ]
    for path, body in bad:
        headers = {"x-goog-api-key": KEY} if "v1beta" in path else BEARER
        status, answer = await post(keyed, path, body=body, headers=headers)
        assert status == 400 and answer["error"], (path, body)
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("prompt", "make it blue")
    form.add_field("model", "gpt-image-1")
    assert (await post(keyed, "/v1/images/edits", form=form, headers=BEARER))[0] == 400
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("prompt", "make it blue")
    form.add_field("image[]", png(), filename="a.png", content_type="image/png")
    assert (await post(keyed, "/v1/images/edits", form=form, headers=BEARER))[0] == 200


async def test_refused_request_keeps_the_scripted_reply(keyed: FakeUpstream) -> None:
    """A refused request does not eat the answer a test queued for the next good one."""
    keyed.push("chat", Reply(json=chat_body("scripted")))
    assert (await post(keyed, "/v1/chat/completions", body=CHAT, headers={}))[0] == 401
    status, answer = await post(keyed, "/v1/chat/completions", body=CHAT, headers=BEARER)
    assert status == 200 and answer["choices"][0]["message"]["content"] == "scripted"


async def test_any_key_is_accepted_when_none_is_set(fake_upstream: FakeUpstream) -> None:
    """Without a configured key the fake only insists that there is one."""
    headers = {"Authorization": "Bearer anything"}
    assert (await post(fake_upstream, "/v1/chat/completions", body=CHAT, headers=headers))[0] == 200
    assert (await post(fake_upstream, "/v1/chat/completions", body=CHAT, headers={}))[0] == 401
