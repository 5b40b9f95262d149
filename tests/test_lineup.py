"""Today's lineup end to end: retired names and ids everywhere, zero-config routes, ``models``,
``check``, ``invite``, and the README quick start with only GEMINI_API_KEY exported."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.cli.invite import client_id_from_token, invite_url
from adapters.cli.main import main
from bot.bootstrap import build_core
from bot.catalog import RETIRED_IDS
from bot.config import load_settings
from bot.domain import Actor, ChatRef, ImageRequest, MessageRef, Options, UserSettings
from tests.fake_upstream import FakeUpstream, Reply, fake_upstream_fixture  # noqa: F401
from tests.outcomes import jobs
from tests.test_web_harness import Visitor

ALICE = Actor("telegram", "1", "Alice")
CHAT = ChatRef("telegram", "100")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


# ----- config ---------------------------------------------------------------------------------


def test_retired_names_and_ids_in_the_config_resolve_and_are_named(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        s = load_settings(write(tmp_path, """
[bot]
default_model = "nano-banana"
[models.nano-banana-2]
credits = { "4K" = 50 }
[models.mine]
id = "gemini-3-pro-image-preview"
sizes = ["1K"]
"""), {})
    assert s.bot.default_model == "nano-banana-2.1"
    catalog = s.catalog()
    assert catalog["nano-banana-2.1"].credits == {"4K": 50}  # overrides follow the successor
    assert catalog["mine"].id == "gemini-3-pro-image"
    lines = [str(u) for u in s.retired_uses]
    assert any(line.startswith("[bot] default_model = 'nano-banana' is retired") for line in lines)
    assert any(line.startswith("[models.nano-banana-2] = 'nano-banana-2'") for line in lines)
    assert any("[models.mine] id = 'gemini-3-pro-image-preview'" in line for line in lines)
    assert len([r for r in caplog.records if "retired" in r.getMessage()]) == 3  # one each


def test_unquoted_dotted_model_name_works(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, '[models.nano-banana-2.1]\nmax_references = 3\n'), {})
    assert s.catalog()["nano-banana-2.1"].max_references == 3


@pytest.mark.parametrize(("env", "route", "model_id"), [
    ({"GEMINI_API_KEY": "k"}, "gemini", "gemini-nano-banana-2.1"),
    ({"OPENROUTER_API_KEY": "k"}, "openrouter", "google/gemini-nano-banana-2.1"),
    ({"GEMINI_API_KEY": "k", "OPENROUTER_API_KEY": "k"}, "gemini", "gemini-nano-banana-2.1"),
    ({}, "demo", "gemini-nano-banana-2.1"),
])
def test_an_exported_key_is_a_route(env: dict[str, str], route: str, model_id: str) -> None:
    s = load_settings(None, env)
    assert [p.api for p in s.provider_table().values()] == [route]
    assert s.catalog()["nano-banana-2.1"].id == model_id


def test_a_provider_named_after_a_route_is_that_route() -> None:
    s = load_settings(None, {"GEMINI_API_KEY": "k",
                             "IMAGINE__PROVIDERS__GEMINI__BASE_URL": '"http://127.0.0.1:1"'})
    section = s.provider_table()["gemini"]
    assert section.api == "gemini" and section.url == "http://127.0.0.1:1"
    assert section.key_env == "GEMINI_API_KEY"


# ----- the service: --model, saved /settings, conversation parents -----------------------------


async def test_retired_models_everywhere_a_user_may_have_kept_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(None, {"IMAGINE__BOT__DATA_DIR": f'"{tmp_path / "data"}"'})
    core = build_core(settings)
    await core.start()
    try:
        service = jobs(core)
        # --model with a shut-down id, twice: one warning.
        with caplog.at_level(logging.WARNING):
            for _ in range(2):
                reply = await service.imagine(ImageRequest(
                    ALICE, CHAT, "a fox", options=Options(model="gemini-3.1-flash-image-preview")))
                assert reply.ok, reply.text
        assert len([r for r in caplog.records if "gemini-3.1-flash-image-preview" in
                    r.getMessage()]) == 1
        turn = await core.conversations.get(reply.turn_id or "")
        assert turn is not None and turn.model == "nano-banana-2.1"
        # A saved /settings model from before the change.
        await core.store.save_user_settings(ALICE.key, UserSettings(model="nano-banana",
                                                                    size="1K"))
        reply = await service.imagine(ImageRequest(ALICE, CHAT, "a boat"))
        assert reply.ok and "nano-banana-2.1" in reply.text
        # A conversation whose parent was made by a retired model keeps going.
        old = await core.conversations.record(
            actor=ALICE, chat=CHAT, prompt="a cat", model="nano-banana-2", size="512",
            aspect="1:1", parent_id=None, inputs=(), outputs=reply.images, provider_state=None,
            kind="imagine", credits=5)
        await service.bind(old.id, [MessageRef("telegram", CHAT.chat_id, "77")])
        edit = await service.edit(ImageRequest(ALICE, CHAT, "make it night"),
                                  reply_to=MessageRef("telegram", CHAT.chat_id, "77"))
        assert edit.ok, edit.text
        edited = await core.conversations.get(edit.turn_id or "")
        assert edited is not None and edited.model == "nano-banana-2.1"
        assert edited.parent_id == old.id
        assert [a.size for a in service.actions_for(old) if a.kind == "upscale"] == ["2K", "4K"]
    finally:
        await core.stop(grace=0)


# ----- CLI: models, check, invite, --config ----------------------------------------------------


async def cli(*args: str) -> int:
    return await asyncio.to_thread(main, list(args))


@pytest.fixture
def gemini_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               fake_upstream: FakeUpstream) -> Path:
    """Only GEMINI_API_KEY exported, the Gemini route's base URL pointed at the fake."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("IMAGINE") or name.endswith("_API_KEY"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test-key-0123456789")
    monkeypatch.setenv("IMAGINE__PROVIDERS__GEMINI__BASE_URL", f'"{fake_upstream.url}"')
    return tmp_path


async def test_models_online_marks_each_model(gemini_env: Path, fake_upstream: FakeUpstream,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    fake_upstream.push("gemini.models", Reply(json={"models": [
        {"name": "models/gemini-nano-banana-2.1"}, {"name": "models/gemini-3-pro-image"}]}))
    assert await cli("models", "--online") == 0
    out = capsys.readouterr().out
    row = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert row["nano-banana-2.1"].endswith("available")
    assert row["nano-banana-pro"].endswith("available")
    assert row["nano-banana-2-lite"].endswith("missing")
    assert "gemini: gemini-nano-banana-2.1" in row["nano-banana-2.1"]


async def test_models_online_names_a_retired_id(gemini_env: Path, fake_upstream: FakeUpstream,
                                                tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, '[models.old]\nid = "x"\nsizes = ["1K"]\nids = {gemini = "gemini-9"}\n')
    assert await cli("models") == 0
    assert "gemini: gemini-9" in capsys.readouterr().out
    assert "gemini-3.1-flash-image" in RETIRED_IDS


async def test_check_online_says_route_and_availability(gemini_env: Path,
                                                        fake_upstream: FakeUpstream,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli("check", "--online") == 0
    out = capsys.readouterr().out
    assert "route: gemini: Google Gemini API (api = 'gemini')" in out
    assert "key from GEMINI_API_KEY" in out
    assert "model nano-banana-2.1 (gemini-nano-banana-2.1): available" in out


@pytest.mark.parametrize(("reply", "words"), [
    (Reply(status=401, json={"error": {"code": 401, "message": "API key not valid",
                                       "status": "UNAUTHENTICATED"}}), "bad key"),
    (Reply(status=429, json={"error": {"code": 429, "message": "Quota exceeded, limit: 0",
                                       "status": "RESOURCE_EXHAUSTED"}}), "no credit"),
    (Reply(drop=True), "network error"),
])
async def test_probe_failures_are_said_for_an_operator(
        gemini_env: Path, fake_upstream: FakeUpstream, capsys: pytest.CaptureFixture[str],
        reply: Reply, words: str) -> None:
    # A connection that drops once is retried (a stale keep-alive); one that keeps dropping fails.
    fake_upstream.push("gemini.models", *([reply] * (8 if reply.drop else 1)))
    assert await cli("check", "--online") == 4
    out = capsys.readouterr().out
    assert f"provider gemini: FAILED: {words}" in out
    assert "try again" not in out.lower()


async def test_config_works_before_and_after_the_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IMAGINE_CONFIG", raising=False)
    bad = write(tmp_path, '[web]\nlisten = "8080"\n')
    assert await cli("--config", str(bad), "check") == 2  # was silently ignored before
    assert "listen" in capsys.readouterr().err
    assert await cli("check", "--config", str(bad)) == 2
    assert await cli("--config", str(tmp_path / "missing.toml"), "check") == 2
    monkeypatch.setenv("IMAGINE_CONFIG", str(tmp_path / "missing.toml"))
    assert await cli("check") == 2
    assert "missing.toml not found" in capsys.readouterr().err


async def test_check_refuses_a_default_size_the_default_model_lacks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, '[bot]\ndefault_model = "nano-banana-2-lite"\ndefault_size = "4K"\n')
    assert await cli("check", "--config", str(path)) == 2
    assert "default_size = '4K'" in capsys.readouterr().err


async def test_console_token_elsewhere_invents_no_data_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IMAGINE_CONFIG", raising=False)
    assert await cli("console-token") == 2
    assert not (tmp_path / "data").exists()


def test_invite_link() -> None:
    token = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB"
    assert client_id_from_token(token) == "123456789012345678"
    assert client_id_from_token("not-a-token") is None
    url = invite_url("123456789012345678")
    assert url.startswith("https://discord.com/oauth2/authorize?client_id=123456789012345678")
    assert "scope=bot+applications.commands" in url and "permissions=274878024704" in url


# ----- the README quick start -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_quick_start_with_only_a_gemini_key_makes_a_real_image(
        tmp_path: Path, fake_upstream: FakeUpstream) -> None:
    """``imagine-bot run`` in an empty directory, GEMINI_API_KEY exported, nothing else but the
    base URL pointed at the fake: the console's result is the model's image, not the demo."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("IMAGINE") and not k.endswith("_API_KEY")}
    env |= {"GEMINI_API_KEY": "AIza-test-key-0123456789",
            "IMAGINE__PROVIDERS__GEMINI__BASE_URL": f'"{fake_upstream.url}"',
            "IMAGINE__WEB__LISTEN": f'"127.0.0.1:{port}"'}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.cli", "run", cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    visitor = Visitor(base)
    try:
        for _ in range(200):
            try:
                await visitor.open("/")
                break
            except OSError:
                await asyncio.sleep(0.05)
        page = await visitor.open("/")
        assert "Demo mode" not in page and "via Google Gemini API" in page  # the live route
        status, started = await visitor.submit("a shiba under cherry blossoms")
        assert status == 202, started
        result = await visitor.wait(started["job"])
        assert result["state"] == "done" and "DEMO" not in result["html"]
        (seen,) = fake_upstream.seen("gemini")
        assert seen.path == "/v1beta/models/gemini-nano-banana-2.1:generateContent"
    finally:
        await visitor.close()
        proc.terminate()
        raw, _ = await asyncio.wait_for(proc.communicate(), 30)
    out = raw.decode()
    assert "image route gemini: Google Gemini API" in out
    assert "AIza-test-key" not in out


# ----- what the models offer: search, thinking, their own words --------------------------------


def test_search_and_thinking_flags() -> None:
    from bot.prompts import parse_flags

    assert parse_flags("--search a fox in today's weather") == (
        "a fox in today's weather", Options(search=True))
    assert parse_flags("a fox --search off --thinking HIGH") == (
        "a fox", Options(search=False, thinking="high"))


class _Talking:
    """A provider whose answer carries the model's own words (and records what it was asked)."""

    name = "demo"

    def __init__(self) -> None:
        self.asked: list[object] = []

    async def generate(self, request: object) -> object:
        from bot.providers.base import ProviderResult
        from tests.fake_upstream import img, png

        self.asked.append(request)
        return ProviderResult(images=(img(png()),), text="Here is your fox, " + "very " * 200)

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize("show", [True, False])
async def test_model_text_and_gated_options(tmp_path: Path, show: bool) -> None:
    settings = load_settings(None, {"IMAGINE__BOT__DATA_DIR": f'"{tmp_path / "data"}"',
                                    "IMAGINE__BOT__SHOW_MODEL_TEXT": str(show).lower()})
    provider = _Talking()
    core = build_core(settings, providers={"demo": provider})  # type: ignore[dict-item]
    await core.start()
    try:
        reply = await jobs(core).imagine(ImageRequest(
            ALICE, CHAT, "a fox", options=Options(search=True, thinking="high")))
        assert reply.ok, reply.text
        assert ("💬 Here is your fox" in reply.text) is show
        assert len(reply.text) < 1024  # fits a Telegram caption
        asked = provider.asked[-1]
        assert asked.search is True and asked.thinking == "high"  # type: ignore[attr-defined]
        lite = await jobs(core).imagine(ImageRequest(
            ALICE, CHAT, "a fox", options=Options(model="nano-banana-2-lite", search=True)))
        assert lite.error == "error.invalid_option" and "nano-banana-2.1" in lite.text
        pro = await jobs(core).imagine(ImageRequest(
            ALICE, CHAT, "a fox", options=Options(model="nano-banana-pro", thinking="low")))
        assert pro.error == "error.invalid_option"
        assert len(provider.asked) == 1  # refused options never reach the model or the books
    finally:
        await core.stop(grace=0)


async def test_a_relative_data_dir_follows_the_config_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bot").mkdir()
    (tmp_path / "elsewhere").mkdir()
    config = write(tmp_path / "bot", 'data_dir = "data"\n'.join(["[bot]\n", ""]))
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.delenv("IMAGINE_CONFIG", raising=False)
    monkeypatch.delenv("IMAGINE_CONSOLE_TOKEN", raising=False)
    assert await cli("console-token", "--config", str(config)) == 0
    assert (tmp_path / "bot" / "data" / "console-token").exists()
    assert not (tmp_path / "elsewhere" / "data").exists()


async def test_search_can_be_a_saved_default(tmp_path: Path) -> None:
    """/settings search = on grounds every job on models that offer it, and only those."""
    settings = load_settings(None, {"IMAGINE__BOT__DATA_DIR": f'"{tmp_path / "data"}"'})
    provider = _Talking()
    core = build_core(settings, providers={"demo": provider})  # type: ignore[dict-item]
    await core.start()
    try:
        prefs = core.prefs
        assert prefs.choices("search", "nano-banana-2-lite") == ["off"]
        saved = await prefs.update(ALICE, "search", "on")
        assert saved.search == "on" and (await core.store.get_user(ALICE.key)).settings == saved
        await jobs(core).imagine(ImageRequest(ALICE, CHAT, "today's sky"))
        assert provider.asked[-1].search is True  # type: ignore[attr-defined]
        await jobs(core).imagine(ImageRequest(ALICE, CHAT, "x", options=Options(search=False)))
        assert provider.asked[-1].search is False  # type: ignore[attr-defined]
        lite = await jobs(core).imagine(ImageRequest(
            ALICE, CHAT, "x", options=Options(model="nano-banana-2-lite")))
        assert lite.ok and provider.asked[-1].search is False  # type: ignore[attr-defined]
    finally:
        await core.stop(grace=0)
