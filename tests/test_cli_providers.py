"""``imagine-bot generate --api API --base-url URL`` end to end against the loopback upstream.

The CLI runs in a worker thread (its own ``asyncio.run``) while the fake answers on this
test's loop: the same code path as the console script, without a subprocess per case.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from adapters.cli.main import main
from tests.fake_upstream import (
    FakeUpstream,
    Reply,
    chat_body,
    fake_upstream_fixture,  # noqa: F401
    gemini_body,
    openai_error,
    png,
)

KEY = "sk-cli-TESTKEY-0123456789"
APIS = ("openai-chat", "gemini", "openai-images")


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean working directory with the key in IMAGE_API_KEY and no config file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IMAGINE_CONFIG", raising=False)
    monkeypatch.setenv("IMAGE_API_KEY", KEY)
    return tmp_path


def route_and_args(api: str, fake: FakeUpstream) -> tuple[str, list[str]]:
    """The fake route an API hits and the CLI flags that point it there."""
    if api == "openai-chat":
        return "chat", ["--api", api, "--base-url", fake.v1]
    if api == "gemini":
        return "gemini", ["--api", api, "--base-url", fake.url]
    return "images.generate", ["--api", api, "--base-url", fake.v1, "--model", "gpt-image-1"]


async def run(*args: str) -> int:
    """``imagine-bot ARGS`` in a thread; returns the exit code."""
    return await asyncio.to_thread(main, list(args))


@pytest.mark.parametrize("api", APIS)
async def test_generate_writes_the_image(api: str, fake_upstream: FakeUpstream, cli_env: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    route, flags = route_and_args(api, fake_upstream)
    code = await run("generate", "a red square", *flags, "--aspect", "1:1", "--out", "out.png")
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out.strip() == "out.png"
    assert (cli_env / "out.png").read_bytes() == png()
    (seen,) = fake_upstream.seen(route)
    auth = seen.headers.get("Authorization") or seen.headers.get("x-goog-api-key", "")
    assert KEY in auth


REFUSALS: dict[str, Any] = {
    "openai-chat": Reply(json=chat_body("I can't draw that.", native="IMAGE_SAFETY")),
    "gemini": Reply(json=gemini_body([{"text": "I can't draw that."}], finish="IMAGE_SAFETY")),
    "openai-images": openai_error(400, "Your request was rejected by our safety system.",
                                  code="moderation_blocked"),
}


@pytest.mark.parametrize("api", APIS)
async def test_refusal_exits_3(api: str, fake_upstream: FakeUpstream, cli_env: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    route, flags = route_and_args(api, fake_upstream)
    fake_upstream.push(route, REFUSALS[api])
    code = await run("generate", "something forbidden", *flags)
    err = capsys.readouterr().err
    assert code == 3
    assert "Traceback" not in err and KEY not in err
    assert len([line for line in err.splitlines() if line.startswith("imagine-bot:")]) == 1
    assert not await asyncio.to_thread(lambda: list(cli_env.glob("imagine*")))


@pytest.mark.parametrize("api", APIS)
async def test_busy_upstream_exits_4(api: str, fake_upstream: FakeUpstream, cli_env: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    route, flags = route_and_args(api, fake_upstream)
    # Retry-After beyond the retry cap: the CLI gives up at once instead of sleeping.
    fake_upstream.push(route, openai_error(429, "slow down", headers={"Retry-After": "600"}))
    code = await run("generate", "a cat", *flags)
    err = capsys.readouterr().err
    assert code == 4
    assert "Traceback" not in err and KEY not in err
    assert len(fake_upstream.seen(route)) == 1


async def test_no_image_exits_3(fake_upstream: FakeUpstream, cli_env: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    fake_upstream.push("chat", Reply(json=chat_body("Which cat do you mean?")))
    code = await run("generate", "a cat", "--api", "openai-chat", "--base-url", fake_upstream.v1)
    assert code == 3, capsys.readouterr().err


async def test_bad_key_exits_4_and_names_nothing_secret(
        fake_upstream: FakeUpstream, cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_upstream.push("gemini", Reply(status=401, json={"error": {
        "code": 401, "message": f"bad credentials {KEY}", "status": "UNAUTHENTICATED"}}))
    code = await run("generate", "a cat", "--api", "gemini", "--base-url", fake_upstream.url)
    err = capsys.readouterr().err
    assert code == 4 and KEY not in err and "IMAGE_API_KEY" in err


async def test_missing_key_exits_2(fake_upstream: FakeUpstream, cli_env: Path,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("IMAGE_API_KEY")
    code = await run("generate", "a cat", "--api", "gemini", "--base-url", fake_upstream.url)
    assert code == 2 and "IMAGE_API_KEY" in capsys.readouterr().err
    assert fake_upstream.requests == []
