"""TOML file plus environment -> validated, typed settings, with one clear error per bad key.

Secrets never live in the file: each is named by an env var (``api_key_env``, ``token_env``)
and read with :meth:`Settings.secret`. Any non-secret key can also be overridden by an env var
``IMAGINE__SECTION__KEY`` (its value parsed as a TOML value, falling back to a plain string).
"""

from __future__ import annotations

import copy
import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from bot.catalog import ASPECTS, BUILTIN, ModelSpec, normalize_size
from bot.config_sections import (
    ApiKind,
    BlobsSection,
    BotSection,
    DiscordSection,
    FailoverSection,
    HttpSection,
    LimitsSection,
    Locale,
    LogSection,
    ModelSection,
    ProviderSection,
    QuotaSection,
    SafetySection,
    StoreSection,
    StyleSection,
    TelegramSection,
    WebSection,
    _Section,
)
from bot.describe_config import DescribeSection
from bot.errors import ConfigError
from bot.lineup_config import RetiredUse, rewrite_retired, zero_config_provider
from bot.providers.routes import ROUTES
from bot.redis_config import RedisSection
from bot.shop_config import ShopSection

__all__ = ["ApiKind", "BlobsSection", "BotSection", "DiscordSection", "FailoverSection", "HttpSection",
           "LimitsSection", "Locale", "LogSection", "ModelSection", "ProviderSection",
           "QuotaSection", "SafetySection", "Settings", "ShopSection", "StoreSection", "TelegramSection",
           "WebSection", "load_settings"]
log = logging.getLogger(__name__)


class Settings(_Section):
    """The whole validated configuration."""

    bot: BotSection = BotSection()
    limits: LimitsSection = LimitsSection()
    quota: QuotaSection = QuotaSection()
    providers: dict[str, ProviderSection] = Field(default_factory=dict)
    models: dict[str, ModelSection] = Field(default_factory=dict)
    styles: dict[str, StyleSection] = Field(default_factory=dict)
    telegram: TelegramSection = TelegramSection()
    discord: DiscordSection = DiscordSection()
    web: WebSection = WebSection()
    http: HttpSection = HttpSection()
    log: LogSection = LogSection()
    failover: FailoverSection = FailoverSection()
    safety: SafetySection = SafetySection()
    store: StoreSection = StoreSection()
    blobs: BlobsSection = BlobsSection()
    shop: ShopSection = ShopSection()
    describe: DescribeSection = DescribeSection()
    redis: RedisSection = RedisSection()

    _retired: tuple[RetiredUse, ...] = PrivateAttr(default=())
    _auto_route: str | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _current_names(cls, data: Any) -> Any:
        """Retired names and ids mean their successors however Settings is built."""
        if isinstance(data, dict) and isinstance(data.get("models") or data.get("bot"), dict):
            data = copy.deepcopy(data)
            rewrite_retired(data, frozenset(ModelSection.model_fields))
        return data

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Settings:
        self._auto_route = (info.context or {}).get("auto_route")
        names = set(BUILTIN) | set(self.models)
        if self.bot.default_model not in names:
            raise ValueError(
                f"[bot] default_model = {self.bot.default_model!r} is not a model "
                f"(allowed: {', '.join(sorted(names))})"
            )
        for name, model in self.models.items():
            if name not in BUILTIN and (model.id is None or model.sizes is None):
                raise ValueError(f"[models.{name}] is a new model: it needs 'id' and 'sizes'")
            if model.provider is not None and model.provider not in self.provider_table():
                raise ValueError(
                    f"[models.{name}] provider = {model.provider!r} is not a configured provider "
                    f"(allowed: {', '.join(sorted(self.provider_table()))})"
                )
            for via in (*model.routes, *model.route_prices):
                if via not in self.provider_table():
                    raise ValueError(f"[models.{name}] routes: {via!r} is not a configured provider "
                                     f"(allowed: {', '.join(sorted(self.provider_table()))})")
        default = self.catalog()[self.bot.default_model]
        if self.bot.default_size not in default.sizes:
            raise ValueError(
                f"[bot] default_size = {self.bot.default_size!r} is not offered by the default "
                f"model {default.name!r} (allowed: {', '.join(default.sizes)})")
        return self

    @property
    def retired_uses(self) -> tuple[RetiredUse, ...]:
        """Lines of the config that named a retired model (``check`` lists them)."""
        return self._retired

    @property
    def auto_route(self) -> str | None:
        """The route an exported key turned on when no provider is configured, if any."""
        return self._auto_route

    def provider_table(self) -> dict[str, ProviderSection]:
        """Configured providers; else the route an exported key names; else one ``demo``."""
        if self.providers:
            return dict(self.providers)
        api = self._auto_route or "demo"
        return {api: ProviderSection.model_validate({"api": api})}

    def catalog(self) -> dict[str, ModelSpec]:
        """Every usable model, built-ins merged with ``[models.*]``, ids spelled per route."""
        table = self.provider_table()
        default_provider = next(iter(table))
        result: dict[str, ModelSpec] = {}
        for name in [*BUILTIN, *[n for n in self.models if n not in BUILTIN]]:
            over = self.models.get(name, ModelSection())
            base = BUILTIN.get(name)
            provider = over.provider or (over.routes[0] if over.routes else default_provider)
            api = table[provider].api
            model_id = (over.ids.get(provider) or over.ids.get(api)
                        or ROUTES[api].model_id(over.id or (base.id if base else name)))
            sizes = over.sizes or (base.sizes if base else ("1K",))
            result[name] = ModelSpec(
                name=name,
                id=model_id,
                provider=provider,
                sizes=tuple(normalize_size(s) for s in sizes),
                aspects=over.aspects or (base.aspects if base else ASPECTS),
                max_references=(over.max_references if over.max_references is not None
                                else (base.max_references if base else 4)),
                prices=dict(over.prices or (base.prices if base else {})),
                credits=dict(over.credits or {}),
                send_size=over.send_size if over.send_size is not None else (
                    base.send_size if base else True),
                status=over.status or (base.status if base else "ga"),
                search=over.search if over.search is not None else bool(base and base.search),
                thinking=over.thinking if over.thinking is not None else (
                    base.thinking if base else ()),
            )
        return result

    def is_admin(self, actor_key: str) -> bool:
        """True when ``actor_key`` (``platform:id``) is listed in ``[bot] admins``."""
        return actor_key in self.bot.admins

    @staticmethod
    def secret(env_name: str) -> str:
        """Read a secret from the environment; a missing one names the env var, never a value."""
        value = os.environ.get(env_name, "").strip()
        if not value:
            raise ConfigError(f"environment variable {env_name} is not set", env=env_name)
        return value

    def zone(self) -> ZoneInfo:
        """The quota time zone."""
        return ZoneInfo(self.quota.timezone)


def _format_error(exc: ValidationError, source: str) -> str:
    """One line per bad key: where, the bad value, and what is allowed."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        if loc:
            table = ".".join(loc[:-1])
            where = f"[{table}] {loc[-1]}" if table else loc[-1]
        else:
            where = ""
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc)
            message = ("unknown key (allowed: " + ", ".join(allowed) + ")" if allowed
                       else "unknown key (check the spelling against config.example.toml)")
        got = err.get("input")
        # A pasted secret (an *_env key) or a database URL with its password: never echoed.
        hidden = bool(loc) and (loc[-1].endswith("_env") or loc[0] == "store")
        shown = "" if err["type"] == "missing" or isinstance(got, dict) or hidden else (
            f" = {got!r}"
        )
        lines.append(f"{source}: {where}{shown}: {message}" if where else f"{source}: {message}")
    return "\n".join(lines)


def _allowed_keys(loc: list[str]) -> list[str]:
    """The keys the table at ``loc[:-1]`` accepts (walking models and ``dict[str, Model]``)."""
    node: Any = Settings
    for part in loc[:-1]:
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(part)
            if field is None:
                return []
            node = field.annotation
        else:
            args = [a for a in get_args(node) if a is not Ellipsis]  # tuple[X, ...] holds X
            node = args[-1] if args else None
    if isinstance(node, type) and issubclass(node, BaseModel):
        return list(node.model_fields)
    return []


def _apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith("IMAGINE__"):
            continue
        path = [p.lower() for p in name.removeprefix("IMAGINE__").split("__") if p]
        if not path:
            continue
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {'.'.join(path[:-1])} is not a table")
        node[path[-1]] = value


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Load ``path`` (if given and present) plus env overrides; raise ConfigError with every problem."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = str(path) if path else "built-in defaults"
    if path is not None:
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} not found") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    _apply_env_overrides(data, env)
    uses = rewrite_retired(data, frozenset(ModelSection.model_fields))
    auto = zero_config_provider(data, env)
    try:
        settings = Settings.model_validate(data, context={"auto_route": auto})
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from None
    if path is not None and not settings.bot.data_dir.is_absolute():
        # Relative to the file, so every command finds the same data wherever it runs from.
        bot = settings.bot.model_copy(update={"data_dir": path.parent / settings.bot.data_dir})
        settings = settings.model_copy(update={"bot": bot})
    for use in uses:
        log.warning("%s: %s", source, use)
    settings._retired = tuple(uses)
    return settings
