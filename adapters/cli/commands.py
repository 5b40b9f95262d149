"""The operator's commands at the terminal: generate, check, models, invite, usage, grant, token.

Each returns its exit code and prints one line per failure in an operator's words (errors.py),
secrets masked. Account commands go through the port (``core.api``) like any adapter's.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import re
import sys
from collections import defaultdict
from pathlib import Path

from adapters.cli import revenue as money
from adapters.cli.errors import describe
from adapters.cli.lineup_report import availability, catalog_rows, live_routes, operator_reason, table
from bot.api import MAX_GRANT, Actor, BadGrant, BotError, ConfigError, Settings, user_key
from bot.bootstrap import Core, build_blobs, build_core, build_providers
from bot.errors import StoreUnavailable
from bot.generate import API_KEY_ENV, GenerateArgs, generate
from bot.providers.routes import ROUTES
from bot.redact import Redactor, secret_names, secret_values

log = logging.getLogger("imagine_bot")
EXIT_OK, EXIT_USAGE, EXIT_REFUSED, EXIT_UPSTREAM, EXIT_INPUT = 0, 2, 3, 4, 5
#: Who the terminal acts as: the operator, an admin by being at the machine (ledger notes
#: "by cli:operator", as the web console's say "by web:operator").
OPERATOR = Actor("cli", "operator", display_name="operator", is_admin=True)


def _redacted(settings: Settings, text: str) -> str:
    return Redactor(secret_values(secret_names(settings)))(text)


def _describe(err: BotError, settings: Settings, api: str | None) -> str:
    """One line for the operator at the terminal (errors.py), secrets masked."""
    key_env = API_KEY_ENV if api else None
    if key_env is None:  # the key of the provider the configured models use
        envs = sorted({s.key_env for s in settings.provider_table().values() if s.key_env})
        key_env = " or ".join(envs) or None

    def words(unknown: BotError) -> str:
        """What errors.py does not word: the chat's English sentence (a core built only for it)."""
        return build_core(settings, providers={}).api.error_text("en", unknown)

    return _redacted(settings, describe(err, key_env=key_env, fallback=words))


async def generate_files(settings: Settings, args: argparse.Namespace) -> int:
    """``generate``: one image written to files; their paths printed."""
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


async def check(settings: Settings, *, online: bool) -> int:
    """``check``: what is missing from the config and the environment; ``--online`` probes."""
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
    blobs_ok = await _blob_store(settings, problems)
    for line in problems:
        print(f"missing: {line}")
    if problems:
        return EXIT_USAGE
    if online and not await _probe_all(settings, mark_models=True):
        return EXIT_UPSTREAM
    if not blobs_ok:
        return EXIT_UPSTREAM
    print("config ok")
    return EXIT_OK


async def _blob_store(settings: Settings, problems: list[str]) -> bool:
    """Print where images live ([blobs]) and whether that answers; missing keys are problems."""
    try:
        blobs = build_blobs(settings)
    except ConfigError as err:
        problems.append(err.detail)
        return False
    try:
        await blobs.probe()
        print(f"blobs: {blobs.describe()}: reachable")
        return True
    except StoreUnavailable as err:
        print(f"blobs: {blobs.describe()}: UNREACHABLE ({_redacted(settings, err.detail)})")
        return False
    finally:
        await blobs.aclose()


async def _probe_all(settings: Settings, *, mark_models: bool) -> dict[str, list[str] | None]:
    """List each provider's models; print failures in an operator's words. Empty dict: failed."""
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


async def models(settings: Settings, *, online: bool) -> int:
    """``models``: the catalog per route; ``--online`` asks each route what it serves."""
    listed = await _probe_all(settings, mark_models=False) if online else None
    if online and not listed:
        return EXIT_UPSTREAM
    print(table(catalog_rows(settings, listed)))
    for use in settings.retired_uses:
        print(f"retired: {use}")
    return EXIT_OK


def invite(settings: Settings, client_id: str | None) -> int:
    """``invite``: the Discord invite link (the application id read from the token if not given)."""
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


def console_token(settings: Settings, *, named: bool) -> int:
    """``console-token``: the web console's operator token, from the bot's data directory."""
    from adapters.web.security import console_token as token

    if not named and not Path("config.toml").exists() and not settings.bot.data_dir.is_dir():
        print(f"imagine-bot: no data directory at {settings.bot.data_dir.resolve()}: run "
              "this where the bot runs, or pass the bot's --config", file=sys.stderr)
        return EXIT_USAGE
    print(token(settings))
    return EXIT_OK


async def _open_core(settings: Settings) -> Core:
    """A core with its store open and no providers, for one command (no lease, no jobs)."""
    core = build_core(settings, providers={})
    await core.store.open()
    return core


async def usage(settings: Settings, user: str | None, *, as_csv: bool,
                revenue: bool = False) -> int:
    """``usage``: jobs, credits, USD and grants per day and user; revenue by day beside spend."""
    core = await _open_core(settings)
    try:
        rows = await core.api.ledger(user)
        days = await core.api.shop.revenue(None, actor_key=user)
    finally:
        await core.store.close()
    if revenue:  # --revenue: the shop's table alone (CSV too)
        return _table(money.HEADER, money.rows(days), as_csv, "(no sales yet)",
                      money.totals(days))
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in rows:
        cell = totals[(row.day, row.actor_key)]
        if row.kind == "grant":
            cell[3] += row.bonus
        elif row.kind in ("reserve", "refund"):
            # A reserve row holds +allowance, -bonus and -purchased; its refund row mirrors it.
            cell[0] += 1 if row.kind == "reserve" else -1
            cell[1] += row.credits - row.bonus - row.paid
            cell[2] += row.usd
    header = ["day", "user", "jobs", "credits", "usd", "granted"]
    lines: list[list[str]] = [
        [day, actor, str(int(v[0])), str(int(v[1])), f"{v[2]:.4f}", str(int(v[3]))]
        for (day, actor), v in sorted(totals.items())]
    code = _table(header, lines, as_csv, "(no usage yet)")
    if not as_csv and any(d.sales or d.refunds for d in days):
        print("\nrevenue by day (USD-equivalent; Stars at [shop] usd_per_star):")
        _table(money.HEADER, money.rows(days), False, "", money.totals(days))
    return code


def _table(header: list[str], lines: list[list[str]], as_csv: bool, empty: str,
           footer: list[str] | None = None) -> int:
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(lines)
        return EXIT_OK
    shown = [header, *lines, *([footer] if footer and lines else [])]
    widths = [max(len(row[i]) for row in shown) for i in range(len(header))]
    for line in shown:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
    if not lines and empty:
        print(empty)
    return EXIT_OK


async def grant(settings: Settings, user: str, credits: str) -> int:
    """``grant``: bonus credits for a user (negative takes them back), as the operator."""
    try:
        user_key(user)  # before opening anything: a typo must not create a user row
        if not re.fullmatch(r"-?[0-9]{1,30}", credits):
            raise BadGrant(credits, MAX_GRANT)
        core = await _open_core(settings)
        try:
            await core.api.admin.grant(OPERATOR, user, int(credits), "en")  # the core's one limit
            platform, _, user_id = user.partition(":")
            bonus = (await core.api.usage(Actor(platform, user_id))).bonus
        finally:
            await core.store.close()
    except BotError as err:
        print(f"imagine-bot: {_describe(err, settings, None)}", file=sys.stderr)
        return err.exit_code
    print(f"granted {int(credits)} credits to {user}; bonus now {bonus}")
    return EXIT_OK
