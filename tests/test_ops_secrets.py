"""No API key or bot token ever shows up in logs, errors, CLI output or chat replies.

The fake upstream here is hostile: every answer echoes the request back, ``Authorization``
header value included, in an error message (400, 401, 429, 500 HTML page), in the model's text
reply, and in a refusal's reason. ``imagine-bot run`` serves Telegram and Discord from one
process (logs captured in text format at DEBUG, then in JSON), with both the usual secret env
var names and names that give no hint of holding a secret; ``generate`` and ``check --online``
run against the same upstream. Nothing anyone can read may contain a secret, or a long piece of
one.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.fake_discord import FakeDiscord, private_answer
from tests.fake_telegram import FakeTelegram, FakeUser
from tests.fake_upstream import FakeUpstream, Reply, chat_body, gemini_body, google_error, openai_error
from tests.test_ops_chaos import first_answer
from tests.test_ops_crash import ROOT, BotProcess, bot_sections, free_port, write_config

API_KEY = "sk-live-SECRETKEY-4d9a7c1e2b3f5a6d"
TG_TOKEN = "7700112233:AAHsecretTelegramTokenValue-xyz789"
DC_TOKEN = "MTAxSECRETdiscordTOKEN.GhXyZw.secretSignatureValue42"
SECRETS = (API_KEY, TG_TOKEN, DC_TOKEN)
#: Modes the echoing upstream understands (``mode=NAME`` in the prompt picks one).
CHAT_MODES = ("400", "401", "429", "html", "text", "refusal")

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


def leaks(text: str) -> list[str]:
    """Every secret (or a 12-character piece of one) found in ``text``."""
    found = []
    for secret in SECRETS:
        pieces = {secret[i:i + 12] for i in range(0, len(secret) - 11, 4)}
        if secret in text or any(p in text for p in pieces):
            found.append(secret[:6] + "…")
    return found


class EchoUpstream(FakeUpstream):
    """Answers with the request echoed back: headers (the key) and body, in every shape."""

    async def _scripted(self, route: str, request: web.Request,
                        default: Reply) -> web.StreamResponse:
        raw = (await request.read()).decode(errors="replace")
        auth = request.headers.get("Authorization") or request.headers.get("x-goog-api-key", "")
        echo = f"you sent Authorization: {auth}; x-goog-api-key: {auth.removeprefix('Bearer ')}"
        echo += f"; body: {raw[:300]}"
        found = re.search(r"mode=(\w+)", raw)
        mode = found.group(1) if found else ("401" if "models" in route else "ok")
        return await super()._scripted(route, request, self.answer(route, mode, echo, default))

    @staticmethod
    def answer(route: str, mode: str, echo: str, default: Reply) -> Reply:
        """The echoing answer for ``route`` in ``mode``."""
        native = route.startswith("gemini")
        if mode == "html":
            return Reply(status=500, content_type="text/html",
                         body=f"<html><title>Error {echo}</title><body>{echo}</body></html>")
        if mode in ("400", "401", "429"):
            status = int(mode)
            if native:
                kind = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 429: "RESOURCE_EXHAUSTED"}
                text = ("API key not valid. " if status == 401 else "") + echo
                return google_error(status, kind[status], text)
            return openai_error(status, ("Incorrect API key provided: " if status == 401 else "")
                                + echo, code="invalid_api_key" if status == 401 else None)
        if mode == "text":
            return Reply(json=gemini_body([{"text": echo}]) if native else chat_body(echo))
        if mode == "refusal":
            if native:
                return Reply(json=gemini_body([{"text": echo}], finish="IMAGE_SAFETY",
                                              finishMessage=echo))
            return Reply(json=chat_body("", refusal=echo, finish="content_filter"))
        return default


def sections(data_dir: Path, telegram: FakeTelegram, upstream_url: str, *, http_port: int,
             discord: FakeDiscord, names: dict[str, str], log: dict[str, str],
             api: str) -> dict[str, dict[str, Any]]:
    """Both platforms in one process; secrets under the env var names given."""
    out = bot_sections(data_dir, telegram, upstream_url, http_port=http_port,
                       key_env=names["key"], token_env=names["telegram"], api=api)
    out["log"] = log
    out["discord"] = {"enabled": True, "token_env": names["discord"],
                      "api_base_url": discord.api_url, "gateway_url": discord.gateway_url}
    return out


async def run_bot_round(tmp_path: Path, *, names: dict[str, str], log: dict[str, str],
                        api: str) -> tuple[str, list[str]]:
    """Run the bot through every echo mode on both platforms; return its output and the chats."""
    telegram = FakeTelegram(token=TG_TOKEN)
    upstream = EchoUpstream()
    discord = FakeDiscord(token=DC_TOKEN)
    await telegram.start()
    await upstream.start()
    await discord.start()
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    config = write_config(tmp_path / "config.toml", sections(
        tmp_path / "data", telegram, upstream.url, http_port=port, discord=discord, names=names,
        log=log, api=api))
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGINE")}
    env.update({names["key"]: API_KEY, names["telegram"]: TG_TOKEN, names["discord"]: DC_TOKEN})
    bot = BotProcess(config, env, port, logs)
    seen: list[str] = []
    try:
        await bot.start()
        await bot.ready()
        users = [FakeUser(6100 + i, f"Echo{i}") for i in range(len(CHAT_MODES))]
        for user, mode in zip(users, CHAT_MODES, strict=True):
            telegram.user_sends(f"/imagine a cat mode={mode}", user=user)
        answers = await asyncio.gather(*(first_answer(telegram, u.id, 30) for u in users))
        assert all(a.startswith("text:") for a in answers), answers
        someone = discord.user("echo")
        interactions = [await discord.slash("imagine", prompt=f"a dog mode={mode}", user=someone)
                        for mode in ("text", "refusal", "401")]
        for ix in interactions:  # each fails: told privately, as a follow-up since 2-call jobs
            await private_answer(discord, ix, timeout=30)
        bot.kill(signal.SIGTERM)
        assert await bot.exit_code() == 0
        seen += [json.dumps(c.params, ensure_ascii=False) for c in telegram.calls]
        seen += [json.dumps(e.data, ensure_ascii=False, default=str) for e in discord.events]
        seen += [m.text for m in discord.messages.values()]
        print(f"\n{log['format']} logs, {api}: telegram answers {[a[:70] for a in answers]}")
        return bot.output(), seen
    finally:
        await bot.close()
        await discord.close()
        await upstream.stop()
        await telegram.stop()


USUAL = {"key": "GEMINI_API_KEY", "telegram": "TELEGRAM_BOT_TOKEN", "discord": "DISCORD_BOT_TOKEN"}
UNHINTED = {"key": "RELAY_CREDENTIAL", "telegram": "TG_BOT", "discord": "DC_BOT"}


@pytest.mark.parametrize(("names", "log", "api"), [
    (UNHINTED, {"format": "text", "level": "DEBUG"}, "gemini"),
    (USUAL, {"format": "json", "level": "INFO"}, "openai-chat"),
], ids=["unhinted-names-text-debug-gemini", "usual-names-json-openai-chat"])
async def test_no_secret_in_logs_or_chats(tmp_path: Path, names: dict[str, str],
                                          log: dict[str, str], api: str) -> None:
    output, chats = await run_bot_round(tmp_path, names=names, log=log, api=api)
    assert "telegram: connected" in output
    assert not leaks(output), [line for line in output.splitlines() if leaks(line)][:5]
    leaked = [text for text in chats if leaks(text)]
    assert not leaked, leaked[:5]
    if log["format"] == "json":
        for line in output.splitlines():
            json.loads(line)  # every line is one JSON object


async def cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run the CLI; its exit code and everything it printed."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("IMAGINE")} | env
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.cli", *args, cwd=cwd, env=full | {"PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def test_no_secret_in_cli_output(tmp_path: Path) -> None:
    upstream = EchoUpstream()
    await upstream.start()
    try:
        env = {"IMAGE_API_KEY": API_KEY}
        runs = [("gemini", upstream.url, mode) for mode in ("401", "text", "refusal")]
        runs += [("openai-chat", upstream.v1, mode) for mode in ("400", "text")]
        # check --online probes the provider (the echo answers 401 with the key in it), and a
        # key pasted where its env var's name belongs is refused without being echoed.
        config = write_config(tmp_path / "config.toml", {
            "providers.up": {"api": "gemini", "base_url": upstream.url,
                             "api_key_env": "RELAY_CREDENTIAL"}})
        pasted = write_config(tmp_path / "pasted.toml", {
            "providers.up": {"api": "gemini", "api_key_env": API_KEY}})
        *results, online, refused = await asyncio.gather(
            *(cli("generate", f"a bird mode={mode}", "--api", api, "--base-url", url,
                  "--out", str(tmp_path / f"{api}-{mode}.png"), env=env, cwd=tmp_path)
              for api, url, mode in runs),
            cli("check", "--online", "--config", str(config),
                env={"RELAY_CREDENTIAL": API_KEY}, cwd=tmp_path),
            cli("check", "--config", str(pasted), env={}, cwd=tmp_path))
        for (api, _, mode), (code, text) in zip(runs, results, strict=True):
            assert code in (3, 4), (api, mode, code, text)
            assert "Traceback" not in text, text
            assert not leaks(text), (api, mode, text)
        code, text = online
        assert code == 4 and "FAILED" in text, text
        assert not leaks(text), text
        code, text = refused
        assert code == 2 and "api_key_env" in text, text
        assert not leaks(text), text
    finally:
        await upstream.stop()
