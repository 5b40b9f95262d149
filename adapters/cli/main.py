"""``imagine-bot run | generate | check | models | invite | usage | grant | console-token``.

Exit codes (README, Commands): 0 ok, 2 usage or configuration, 3 refused or no image, 4 upstream
failed, 5 bad input, 130 interrupted. ``--config`` (or ``IMAGINE_CONFIG``) may stand before or
after the command; a file named by either that does not exist is an error, never silently
skipped. The bodies of the commands are in commands.py; ``run`` is runner.py.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from adapters.cli import commands
from adapters.cli.commands import EXIT_USAGE
from adapters.cli.logs import setup_logging
from bot.api import ConfigError, Settings
from bot.config import load_settings
from bot.providers.routes import ROUTES
from bot.redact import secret_names

log = logging.getLogger("imagine_bot")


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
    usage.add_argument("--revenue", action="store_true",
                       help="packs sold by day (Stars, USD) next to spend, alone")
    sub.add_parser("console-token", parents=[common],
                   help="print the web console's operator token (made once, kept in data_dir)")
    grant = sub.add_parser("grant", parents=[common], help="give a user bonus credits")
    grant.add_argument("user", help="platform:ID, e.g. telegram:42")
    grant.add_argument("credits", help="a whole number; negative takes credits back")
    return parser


def _named_config(args: argparse.Namespace) -> Path | None:
    """The config file the operator named (``--config``, else ``IMAGINE_CONFIG``), if any."""
    named = getattr(args, "config", None)
    if named is None and os.environ.get("IMAGINE_CONFIG"):
        named = Path(os.environ["IMAGINE_CONFIG"])
    return named


def _load(named: Path | None) -> Settings:
    # A named file that is missing is an error; ./config.toml only when it is there.
    if named is None and Path("config.toml").exists():
        named = Path("config.toml")
    return load_settings(named)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        named = _named_config(args)
        settings = _load(named)
        setup_logging(settings.log, secret_names(settings))
        if args.command == "generate":
            return asyncio.run(commands.generate_files(settings, args))
        if args.command == "check":
            return asyncio.run(commands.check(settings, online=args.online))
        if args.command == "models":
            return asyncio.run(commands.models(settings, online=args.online))
        if args.command == "invite":
            return commands.invite(settings, args.client_id)
        if args.command == "usage":
            return asyncio.run(commands.usage(settings, args.user, as_csv=args.csv,
                                              revenue=args.revenue))
        if args.command == "grant":
            return asyncio.run(commands.grant(settings, args.user, args.credits))
        if args.command == "console-token":
            return commands.console_token(settings, named=named is not None)
        from adapters.cli.runner import run

        return asyncio.run(run(settings, sync_commands=args.sync_commands,
                               install_signals=_install_signals))
    except ConfigError as err:
        print(f"imagine-bot: {err.detail}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


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
