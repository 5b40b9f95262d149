"""Config-time lineup work: retired model names and ids rewritten, a bare exported key as a route.

Both act on the raw TOML table before validation, so every later reader (the service, the
adapters, ``check``) sees only current names, and ``check`` can still name the line to update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.catalog import BUILTIN, bare_id, retired
from bot.providers.routes import ROUTES, ZERO_CONFIG


@dataclass(frozen=True, slots=True, kw_only=True)
class RetiredUse:
    """One place in the config that named a retired model, and what it now means."""

    where: str
    old: str
    new: str
    why: str

    def __str__(self) -> str:
        return (f"{self.where} = {self.old!r} is retired ({self.why}); "
                f"using {self.new!r}: update that line")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Successor:
    """The Google id that replaces a retired one (in the old id's route spelling), and why."""

    id: str
    why: str


def _successor_id(old_id: str) -> _Successor | None:
    """The successor of a retired id, keeping a route prefix it had; None if it is not retired."""
    gone = retired(old_id)
    if gone is None or old_id in BUILTIN:
        return None
    prefix = old_id[: len(old_id) - len(bare_id(old_id))]
    return _Successor(id=prefix + BUILTIN[gone.successor].id, why=gone.why)


def hoist_dotted_names(models: dict[str, Any], fields: frozenset[str]) -> None:
    """``[models.nano-banana-2.1]`` unquoted is TOML for ``models."nano-banana-2"."1"``: undo that.

    A model table's own keys are its fields; any other sub-table is the rest of a dotted name.
    """
    for name in list(models):
        section = models[name]
        if not isinstance(section, dict):
            continue
        for key in [k for k, v in section.items() if k not in fields and isinstance(v, dict)]:
            models.setdefault(f"{name}.{key}", {}).update(section.pop(key))
        if not section and any(k.startswith(name + ".") for k in models):
            del models[name]


def rewrite_retired(data: dict[str, Any], fields: frozenset[str] = frozenset()) -> list[RetiredUse]:
    """Replace retired names and ids in a raw config table; return what was replaced."""
    uses: list[RetiredUse] = []
    if isinstance(data.get("models"), dict) and fields:
        hoist_dotted_names(data["models"], fields)
    bot = data.get("bot")
    if isinstance(bot, dict) and isinstance(bot.get("default_model"), str):
        old = bot["default_model"]
        gone = retired(old)
        if gone is not None and old not in BUILTIN and old not in (data.get("models") or {}):
            bot["default_model"] = gone.successor
            uses.append(RetiredUse(where="[bot] default_model", old=old, new=gone.successor,
                                   why=gone.why))
    models = data.get("models")
    if not isinstance(models, dict):
        return uses
    for name in list(models):
        section = models[name]
        if not isinstance(section, dict):
            continue
        gone = retired(name) if name not in BUILTIN else None
        if gone is not None and "id" not in section:
            # [models.nano-banana] overrides now apply to its successor.
            merged = models.setdefault(gone.successor, {})
            for key, value in section.items():
                merged.setdefault(key, value)
            del models[name]
            uses.append(RetiredUse(where=f"[models.{name}]", old=name, new=gone.successor,
                                   why=gone.why))
            section, name = merged, gone.successor
        if isinstance(section.get("id"), str) and (new := _successor_id(section["id"])):
            uses.append(RetiredUse(where=f"[models.{name}] id", old=section["id"], new=new.id,
                                   why=new.why))
            section["id"] = new.id
        ids = section.get("ids")
        for route_name, route_id in (ids.items() if isinstance(ids, dict) else ()):
            if isinstance(route_id, str) and (new := _successor_id(route_id)):
                uses.append(RetiredUse(where=f"[models.{name}] ids.{route_name}", old=route_id,
                                       new=new.id, why=new.why))
                ids[route_name] = new.id
    return uses


def zero_config_provider(data: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    """The route an exported key turns on when the config names no provider (else None).

    A provider table named after a route takes that route as its ``api``: so
    ``IMAGINE__PROVIDERS__GEMINI__BASE_URL=...`` alone points the Gemini route elsewhere.
    """
    providers = data.get("providers")
    if isinstance(providers, dict):
        for name, section in providers.items():
            if isinstance(section, dict) and "api" not in section and name in ROUTES:
                section["api"] = name
    if providers:
        return None
    for api in ZERO_CONFIG:
        env = ROUTES[api].key_env
        if env and environ.get(env, "").strip():
            return api
    return None
