"""``imagine-bot run | generate | check | usage | grant | console-token`` (exit codes: DESIGN.md)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import os
import signal
import sys
from collections import defaultdict
from collections.abc import Sequence
import re
from pathlib import Path

from bot.bootstrap import Core, build_core
from bot.config import Settings, load_settings
from bot.errors import BotError, ConfigError
from bot.generate import GenerateArgs, generate
from bot.logs import setup_logging
from bot.redact import secret_names

log = logging.getLogger("imagine_bot")
EXIT_OK, EXIT_USAGE, EXIT_REFUSED, EXIT_UPSTREAM, EXIT_INPUT = 0, 2, 3, 4, 5


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=None,
                        help="TOML config (default: ./config.toml if present, else built-in)")
    parser = argparse.ArgumentParser(prog="imagine-bot", parents=[common],
                                     description="Gemini image bot for Discord and Telegram")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[common], help="start every enabled adapter")
    run.add_argument("--sync-commands", action="store_true",
                     help="register Discord slash commands on start-up (needed once per change)")
    gen = sub.add_parser("generate", parents=[common], help="one generation, no chat platform")
    gen.add_argument("prompt")
    gen.add_argument("--model")
    gen.add_argument("--size")
    gen.add_argument("--aspect")
    gen.add_argument("--ref", action="append", type=Path, default=[], help="reference image")
    gen.add_argument("--out", type=Path)
    gen.add_argument("--api", choices=["openai-chat", "gemini", "openai-images", "demo"])
    gen.add_argument("--base-url")
    check = sub.add_parser("check", parents=[common], help="validate config and secrets")
    check.add_argument("--online", action="store_true", help="also make one call per provider")
    usage = sub.add_parser("usage", parents=[common], help="credits and spend from the ledger")
    usage.add_argument("user", nargs="?", help="platform:ID, e.g. telegram:42")
    usage.add_argument("--csv", action="store_true", help="CSV for spreadsheets")
    sub.add_parser("console-token", parents=[common],
                   help="print the web console's operator token (made once, kept in data_dir)")
    grant = sub.add_parser("grant", parents=[common], help="give a user bonus credits")
    grant.add_argument("user", help="platform:ID, e.g. telegram:42")
    grant.add_argument("credits", help="a whole number; negative takes credits back")
    return parser


def _load(path: Path | None) -> Settings:
    if path is None:
        env_path = os.environ.get("IMAGINE_CONFIG")
        path = Path(env_path) if env_path else Path("config.toml")
        if not path.exists():
            path = None
    return load_settings(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = _load(args.config)
        setup_logging(settings.log, secret_names(settings))
        if args.command == "generate":
            return asyncio.run(_generate(settings, args))
        if args.command == "check":
            return asyncio.run(_check(settings, online=args.online))
        if args.command == "usage":
            return asyncio.run(_usage(settings, args.user, as_csv=args.csv))
        if args.command == "grant":
            return asyncio.run(_grant(settings, args.user, args.credits))
        if args.command == "console-token":
            from adapters.web.security import console_token

            print(console_token(settings))
            return EXIT_OK
        from bot.runner import run

        return asyncio.run(run(settings, sync_commands=args.sync_commands,
                               install_signals=_install_signals))
    except ConfigError as err:
        print(f"imagine-bot: {err.detail}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


async def _generate(settings: Settings, args: argparse.Namespace) -> int:
    request = GenerateArgs(prompt=args.prompt, model=args.model, size=args.size,
                           aspect=args.aspect, refs=tuple(args.ref), out=args.out, api=args.api,
                           base_url=args.base_url)
    try:
        paths = await generate(settings, request)
    except BotError as err:
        print(f"imagine-bot: {_describe(err, settings)}", file=sys.stderr)
        return err.exit_code
    except Exception as exc:  # never a traceback on a failure path
        log.debug("generate failed", exc_info=True)
        print(f"imagine-bot: unexpected error ({type(exc).__name__})", file=sys.stderr)
        return EXIT_UPSTREAM
    for path in paths:
        print(path)
    return EXIT_OK


def _describe(err: BotError, settings: Settings) -> str:
    """One English line for the terminal from an error's catalog message, secrets masked."""
    from bot.messages import Messages
    from bot.present import Presenter
    from bot.quotas import utc_now
    from bot.redact import Redactor, secret_values

    redact = Redactor(secret_values(secret_names(settings)))
    text = Presenter(Messages(), utc_now, redact).error("en", err)
    # Operators see the upstream's detail too; users only the category.
    operator_detail = err.key in ("error.upstream", "error.unavailable", "error.internal")
    return redact(f"{text} [{err.detail}]" if operator_detail and err.detail else text)


async def _check(settings: Settings, *, online: bool) -> int:
    problems: list[str] = []
    used = {spec.provider for spec in settings.catalog().values()}
    for name, section in settings.provider_table().items():
        if name in used and section.api_key_env and not os.environ.get(section.api_key_env):
            problems.append(f"[providers.{name}] needs env var {section.api_key_env} (api key)")
    for platform in ("telegram", "discord"):
        section = getattr(settings, platform)
        if section.enabled and not os.environ.get(section.token_env):
            problems.append(f"[{platform}] is enabled but env var {section.token_env} is not set")
    if not settings.telegram.enabled and not settings.discord.enabled:
        print("note: no platform is enabled ([telegram] or [discord] enabled = true)")
    if not settings.providers:
        print("note: no [providers.*] configured: the demo provider draws placeholders")
    for line in problems:
        print(f"missing: {line}")
    if problems:
        return EXIT_USAGE
    if online:
        from bot.bootstrap import build_providers

        failed = False
        for name, provider in build_providers(settings).items():
            probe = getattr(provider, "probe", None)
            try:
                result = await probe() if probe else "ok (nothing to probe)"
                print(f"provider {name}: {result}")
            except BotError as err:
                failed = True
                print(f"provider {name}: FAILED: {_describe(err, settings)}")
            finally:
                await provider.aclose()
        if failed:
            return EXIT_UPSTREAM
    print("config ok")
    return EXIT_OK


async def _open_core(settings: Settings) -> Core:

    core = build_core(settings, providers={})
    await core.store.open()
    return core


async def _usage(settings: Settings, user: str | None, *, as_csv: bool) -> int:
    core = await _open_core(settings)
    try:
        rows = await core.store.ledger(user)
    finally:
        await core.store.close()
    table: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in rows:
        cell = table[(row.day, row.actor_key)]
        if row.kind == "grant":
            cell[3] += row.bonus
        elif row.kind in ("reserve", "refund"):
            # A reserve row holds +allowance and -bonus; its refund row mirrors it.
            cell[0] += 1 if row.kind == "reserve" else -1
            cell[1] += row.credits - row.bonus
            cell[2] += row.usd
    header = ["day", "user", "jobs", "credits", "usd", "granted"]
    lines: list[list[str]] = [
        [day, actor, str(int(v[0])), str(int(v[1])), f"{v[2]:.4f}", str(int(v[3]))]
        for (day, actor), v in sorted(table.items())]
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(lines)
        return EXIT_OK
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    for line in [header, *lines]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
    if not lines:
        print("(no usage yet)")
    return EXIT_OK


async def _grant(settings: Settings, user: str, credits: str) -> int:
    from bot.domain import Actor
    from bot.errors import BadGrant
    from bot.quotas import MAX_GRANT, user_key

    try:
        user_key(user)  # before opening anything: a typo must not create a user row
        if not re.fullmatch(r"-?[0-9]{1,30}", credits):
            raise BadGrant(credits, MAX_GRANT)
        core = await _open_core(settings)
        try:
            await core.quotas.grant(user, int(credits), by="cli")  # the core's one limit
            platform, _, user_id = user.partition(":")
            usage = await core.quotas.usage(Actor(platform, user_id))
        finally:
            await core.store.close()
    except BotError as err:
        print(f"imagine-bot: {_describe(err, settings)}", file=sys.stderr)
        return err.exit_code
    print(f"granted {int(credits)} credits to {user}; bonus now {usage.bonus}")
    return EXIT_OK


def _install_signals(stop: asyncio.Event) -> None:
    """First SIGTERM/SIGINT: stop taking work and drain; a second one exits at once."""
    loop = asyncio.get_running_loop()

    def handler() -> None:
        if stop.is_set():
            os._exit(130)
        log.info("stopping: finishing running jobs (signal again to exit now)")
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handler)
