"""``imagine-bot run | generate | check | models | invite | usage | grant | console-token``.

Exit codes: DESIGN.md. ``--config`` (or ``IMAGINE_CONFIG``) may stand before or after the
command; a file named by either that does not exist is an error, never silently skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import os
import re
import signal
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from adapters.cli.lineup_report import availability, catalog_rows, live_routes, operator_reason, table
from adapters.cli.logs import setup_logging
from bot.bootstrap import Core, build_core
from bot.config import Settings, load_settings
from bot.errors import BotError, ConfigError
from bot.generate import GenerateArgs, generate
from bot.providers.routes import ROUTES
from bot.redact import secret_names

log = logging.getLogger("imagine_bot")
EXIT_OK, EXIT_USAGE, EXIT_REFUSED, EXIT_UPSTREAM, EXIT_INPUT = 0, 2, 3, 4, 5


def _parser() -> argparse.ArgumentParser:
    # SUPPRESS: a subcommand's own --config default must not overwrite one given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS,
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
    gen.add_argument("--out", help="a file (.png, .jpg or .webp picks the format) or a directory "
                     "(default: a name made from the prompt, in the current directory)")
    gen.add_argument("--force", action="store_true", help="overwrite the --out file if it exists")
    gen.add_argument("--api", choices=list(ROUTES))
    gen.add_argument("--base-url")
    check = sub.add_parser("check", parents=[common], help="validate config and secrets")
    check.add_argument("--online", action="store_true", help="also make one call per provider")
    models = sub.add_parser("models", parents=[common], help="the model catalog per route")
    models.add_argument("--online", action="store_true",
                        help="ask each route what it serves: available / missing / retired")
    invite = sub.add_parser("invite", parents=[common], help="the Discord invite link")
    invite.add_argument("--client-id", help="application id (default: read from the bot token)")
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
        if env_path:
            path = Path(env_path)  # named, so a missing file is an error
        elif Path("config.toml").exists():
            path = Path("config.toml")
    return load_settings(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = _load(getattr(args, "config", None))
        setup_logging(settings.log, secret_names(settings))
        if args.command == "generate":
            return asyncio.run(_generate(settings, args))
        if args.command == "check":
            return asyncio.run(_check(settings, online=args.online))
        if args.command == "models":
            return asyncio.run(_models(settings, online=args.online))
        if args.command == "invite":
            return _invite(settings, args.client_id)
        if args.command == "usage":
            return asyncio.run(_usage(settings, args.user, as_csv=args.csv))
        if args.command == "grant":
            return asyncio.run(_grant(settings, args.user, args.credits))
        if args.command == "console-token":
            from adapters.web.security import console_token

            named = getattr(args, "config", None) or os.environ.get("IMAGINE_CONFIG")
            if not named and not Path("config.toml").exists() and not settings.bot.data_dir.is_dir():
                print(f"imagine-bot: no data directory at {settings.bot.data_dir.resolve()}: run "
                      "this where the bot runs, or pass the bot's --config", file=sys.stderr)
                return EXIT_USAGE
            print(console_token(settings))
            return EXIT_OK
        from adapters.cli.runner import run

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
                           base_url=args.base_url, force=args.force)
    try:
        paths = await generate(settings, request)
    except BotError as err:
        print(f"imagine-bot: {_describe(err, settings, args.api)}", file=sys.stderr)
        return err.exit_code
    except Exception as exc:  # never a traceback on a failure path
        log.debug("generate failed", exc_info=True)
        print(f"imagine-bot: unexpected error ({type(exc).__name__})", file=sys.stderr)
        return EXIT_UPSTREAM
    for path in paths:
        print(path)
    return EXIT_OK


def _describe(err: BotError, settings: Settings, api: str | None) -> str:
    """One line for the operator at the terminal (adapters.cli.errors), secrets masked."""
    from adapters.cli.errors import describe
    from bot.generate import API_KEY_ENV
    from bot.messages import Messages
    from bot.present import Presenter
    from bot.quotas import utc_now
    from bot.redact import Redactor, secret_values

    redact = Redactor(secret_values(secret_names(settings)))
    presenter = Presenter(Messages(), utc_now, redact)
    key_env = API_KEY_ENV if api else None
    if key_env is None:  # the key of the provider the configured models use
        envs = sorted({s.key_env for s in settings.provider_table().values() if s.key_env})
        key_env = " or ".join(envs) or None
    return redact(describe(err, key_env=key_env, fallback=lambda e: presenter.error("en", e)))


async def _check(settings: Settings, *, online: bool) -> int:
    problems: list[str] = []
    used = {spec.provider for spec in settings.catalog().values()}
    for name, section in settings.provider_table().items():
        if name in used and section.key_env and not os.environ.get(section.key_env):
            problems.append(f"[providers.{name}] needs env var {section.key_env} (api key)")
        if ROUTES[section.api].wire == "chat" and not section.url:
            problems.append(f"[providers.{name}] api = {section.api!r} needs base_url "
                            "(the relay's OpenAI-compatible endpoint, ending in /v1)")
    for platform in ("telegram", "discord"):
        section = getattr(settings, platform)
        if section.enabled and not os.environ.get(section.token_env):
            problems.append(f"[{platform}] is enabled but env var {section.token_env} is not set")
    if not settings.telegram.enabled and not settings.discord.enabled:
        print("note: no platform is enabled ([telegram] or [discord] enabled = true)")
    for line in live_routes(settings):
        print(f"route: {line}")
    if settings.provider_table().keys() == {"demo"}:
        print("note: no image API configured: the demo provider draws placeholders "
              "(export GEMINI_API_KEY or OPENROUTER_API_KEY, or add [providers.*])")
    for use in settings.retired_uses:
        print(f"retired: {use}")
    for line in problems:
        print(f"missing: {line}")
    if problems:
        return EXIT_USAGE
    if online and not await _probe_all(settings, mark_models=True):
        return EXIT_UPSTREAM
    print("config ok")
    return EXIT_OK


async def _probe_all(settings: Settings, *, mark_models: bool) -> dict[str, list[str] | None]:
    """List each provider's models; print failures in an operator's words. Empty dict: failed."""
    from bot.bootstrap import build_providers

    listed: dict[str, list[str] | None] = {}
    failed = False
    for name, provider in build_providers(settings).items():
        lister = getattr(provider, "list_models", None)
        try:
            listed[name] = await lister() if lister else None
            if mark_models:
                count = "nothing to probe" if lister is None else f"{len(listed[name] or [])} models"
                print(f"provider {name}: ok ({count} listed)")
        except BotError as err:
            failed = True
            print(f"provider {name}: FAILED: {_redacted(settings, operator_reason(err))}")
        finally:
            await provider.aclose()
    if mark_models:
        for spec in settings.catalog().values():
            if spec.provider in listed:
                print(f"model {spec.name} ({spec.id}): {availability(spec, listed[spec.provider])}")
    return {} if failed else listed


def _redacted(settings: Settings, text: str) -> str:
    from bot.redact import Redactor, secret_values

    return Redactor(secret_values(secret_names(settings)))(text)


async def _models(settings: Settings, *, online: bool) -> int:
    listed = await _probe_all(settings, mark_models=False) if online else None
    if online and not listed:
        return EXIT_UPSTREAM
    print(table(catalog_rows(settings, listed)))
    for use in settings.retired_uses:
        print(f"retired: {use}")
    return EXIT_OK


def _invite(settings: Settings, client_id: str | None) -> int:
    from adapters.cli.invite import client_id_from_token, invite_url

    if client_id is None:
        token = os.environ.get(settings.discord.token_env, "")
        client_id = client_id_from_token(token)
        if client_id is None:
            print(f"imagine-bot: pass --client-id (the Developer Portal's Application ID), or "
                  f"export {settings.discord.token_env}", file=sys.stderr)
            return EXIT_USAGE
    if not client_id.isdigit():
        print("imagine-bot: --client-id is the numeric Application ID", file=sys.stderr)
        return EXIT_USAGE
    print(invite_url(client_id))
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
        print(f"imagine-bot: {_describe(err, settings, None)}", file=sys.stderr)
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
