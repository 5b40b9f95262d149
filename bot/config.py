"""TOML file plus environment -> validated, typed settings, with one clear error per bad key.

Secrets never live in the file: each is named by an env var (``api_key_env``, ``token_env``)
and read with :meth:`Settings.secret`. Any non-secret key can also be overridden by an env var
``IMAGINE__SECTION__KEY`` (its value parsed as a TOML value, falling back to a plain string).
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.catalog import (
    ASPECTS,
    BUILTIN,
    DEFAULT_MODEL,
    THINKING_LEVELS,
    ModelSpec,
    normalize_size,
)
from bot.errors import ConfigError
from bot.lineup_config import RetiredUse, rewrite_retired, zero_config_provider
from bot.providers.routes import ROUTES

Locale = Literal["en", "zh-Hans", "zh-Hant"]
ApiKind = Literal["gemini", "openrouter", "new-api", "litellm", "openai-chat", "openai-images",
                  "demo"]
_ACTOR_RE = re.compile(r"^(telegram|discord|cli|web):[0-9A-Za-z_-]+$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
log = logging.getLogger(__name__)
_KEY_PREFIXES = ("sk-", "sk_", "AIza", "ghp_", "xox")


def _listen(value: str | None) -> str | None:
    """``host:port`` (a bare port such as "8080" is refused here, not when ``run`` binds it)."""
    if value is None:
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected host:port, e.g. 127.0.0.1:8080")
    return value


def _env_name(value: str) -> str:
    """An environment variable's NAME; refuse what looks like the secret pasted in its place."""
    looks_secret = value.startswith(_KEY_PREFIXES) or (
        len(value) >= 30 and any(c.islower() for c in value) and any(c.isupper() for c in value)
        and any(c.isdigit() for c in value))
    if not _ENV_RE.match(value) or looks_secret:
        raise ValueError("must be the NAME of an environment variable, not the key itself")
    return value


class _Section(BaseModel):
    """A config table: unknown keys are errors, values are checked strictly."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BotSection(_Section):
    """``[bot]``: defaults, storage and admins."""

    data_dir: Path = Path("data")
    default_model: str = DEFAULT_MODEL
    default_size: str = "1K"
    default_aspect: str = "1:1"
    locale: Locale = "en"
    admins: tuple[str, ...] = ()
    history_turns: int = Field(default=4, ge=1, le=20)
    retention_days: int = Field(default=30, ge=1)
    blob_cap_mb: int = Field(default=2048, ge=16)
    adapter_failure: Literal["stop", "continue"] = "stop"
    show_model_text: bool = True

    @field_validator("admins")
    @classmethod
    def _admins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not _ACTOR_RE.match(item):
                raise ValueError(f"{item!r} is not of the form 'telegram:ID' or 'discord:ID'")
        return value

    @field_validator("default_size")
    @classmethod
    def _size(cls, value: str) -> str:
        return normalize_size(value)


class LimitsSection(_Section):
    """``[limits]``: concurrency, queue and time limits, input sizes."""

    global_concurrency: int = Field(default=4, ge=1, le=1000)
    per_user_concurrency: int = Field(default=1, ge=1, le=100)
    per_user_queued: int = Field(default=1, ge=0, le=100)
    queue_size: int = Field(default=200, ge=1)
    timeout_seconds: float = Field(default=120.0, gt=0)
    timeout_4k_seconds: float = Field(default=300.0, gt=0)
    shutdown_grace_seconds: float = Field(default=60.0, ge=0)
    max_input_mb: float = Field(default=20.0, gt=0)
    reference_max_mb: float = Field(default=5.0, gt=0)
    #: Result bytes held between the model's answer and the end of their upload (bot/budget.py).
    delivery_budget_mb: float = Field(default=256.0, ge=1)


class QuotaSection(_Section):
    """``[quota]``: credit price and the windows (0 turns a window off)."""

    credit_usd: float = Field(default=0.01, gt=0)
    user_daily_credits: int = Field(default=100, ge=0)
    user_monthly_credits: int = Field(default=1500, ge=0)
    chat_daily_credits: int = Field(default=0, ge=0)
    global_daily_usd: float = Field(default=20.0, ge=0)
    timezone: str = "UTC"
    charge_refusals: bool = False

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("unknown time zone; use an IANA name such as 'Asia/Shanghai'") from exc
        return value


class ProviderSection(_Section):
    """``[providers.NAME]``: one upstream endpoint (base_url and key variable default by route)."""

    api: ApiKind
    base_url: str | None = None
    api_key_env: str | None = None
    auth: Literal["auto", "bearer", "x-goog-api-key"] = "auto"
    max_retries: int = Field(default=3, ge=0, le=10)
    retry_cap_seconds: float = Field(default=30.0, ge=0)
    demo_delay_seconds: float = Field(default=0.0, ge=0)
    #: Largest answer read, counted while it streams (why 128: bot/providers/http.py).
    max_response_mb: int = Field(default=128, ge=1, le=4096)

    @field_validator("api_key_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        return None if value is None else _env_name(value)

    @property
    def key_env(self) -> str | None:
        """The key's variable: ``api_key_env``, else the route's usual one (GEMINI_API_KEY ...)."""
        if self.api == "demo":
            return None
        return self.api_key_env or ROUTES[self.api].key_env

    @property
    def url(self) -> str | None:
        """The endpoint: ``base_url``, else the route's public default."""
        return self.base_url or ROUTES[self.api].base_url

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class ModelSection(_Section):
    """``[models.NAME]``: a model, or overrides of a built-in one."""

    provider: str | None = None
    id: str | None = None
    sizes: tuple[str, ...] | None = None
    aspects: tuple[str, ...] | None = None
    max_references: int | None = Field(default=None, ge=0, le=64)
    prices: dict[str, float] | None = None
    credits: dict[str, int] | None = None
    send_size: bool | None = None
    #: The id on one route, by provider name or route (``{openrouter = "google/x"}``).
    ids: dict[str, str] = Field(default_factory=dict)
    status: Literal["ga", "preview", "deprecated"] | None = None
    search: bool | None = None
    thinking: tuple[str, ...] | None = None

    @field_validator("thinking")
    @classmethod
    def _levels(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for level in value or ():
            if level not in THINKING_LEVELS:
                raise ValueError(f"{level!r} is not a thinking level ({', '.join(THINKING_LEVELS)})")
        return value

    @field_validator("prices", "credits")
    @classmethod
    def _not_negative(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for size, amount in (value or {}).items():
            if amount < 0:
                raise ValueError(f"{size} = {amount}: must not be negative")
        return value


class TelegramSection(_Section):
    """``[telegram]``: the Telegram adapter."""

    enabled: bool = False
    token_env: str = "TELEGRAM_BOT_TOKEN"
    base_url: str | None = None
    base_file_url: str | None = None
    allowed_chats: tuple[int, ...] = ()
    private_plain_text: bool = True
    album_debounce_seconds: float = Field(default=1.0, ge=0)
    webhook_url: str | None = None
    webhook_listen: str = "0.0.0.0:8443"

    _webhook_listen = field_validator("webhook_listen")(classmethod(lambda cls, v: _listen(v)))

    @field_validator("token_env")
    @classmethod
    def _env(cls, value: str) -> str:
        return _env_name(value)


class DiscordSection(_Section):
    """``[discord]``: the Discord adapter."""

    enabled: bool = False
    token_env: str = "DISCORD_BOT_TOKEN"
    api_base_url: str | None = None
    gateway_url: str | None = None
    allowed_guilds: tuple[int, ...] = ()
    allow_dms: bool = True

    @field_validator("token_env")
    @classmethod
    def _env(cls, value: str) -> str:
        return _env_name(value)


class WebSection(_Section):
    """``[web]``: the browser console (playground + operator view)."""

    enabled: Literal["auto", "on", "off"] = "auto"  # auto: on when no chat platform is enabled
    listen: str = "127.0.0.1:8080"

    _listen_ok = field_validator("listen")(classmethod(lambda cls, v: _listen(v)))
    token_env: str = "IMAGINE_CONSOLE_TOKEN"
    #: The address browsers use (``https://bot.example.com``): the Origin POSTs must carry.
    public_url: str | None = None
    #: Host names answered besides loopback, the listen address and ``public_url``'s host.
    allowed_hosts: tuple[str, ...] = ()
    #: Peers whose X-Forwarded-For/-Proto/-Host are believed (addresses or CIDRs).
    trusted_proxies: tuple[str, ...] = ()
    #: Cap on one request body; unset: ``[limits] max_input_mb`` x the most references + 1 MB.
    max_body_mb: float | None = Field(default=None, gt=0)
    visitor_pool: Literal["address", "cookie"] = "address"
    #: Daily credits of one anonymous visitor pool; unset: ``[quota] user_daily_credits``.
    visitor_daily_credits: int | None = Field(default=None, ge=0)

    @field_validator("token_env")
    @classmethod
    def _env(cls, value: str) -> str:
        return _env_name(value)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.fullmatch(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?/?", value):
            raise ValueError("expected scheme://host[:port], e.g. https://bot.example.com")
        return value.rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR") from None
        return value


class HttpSection(_Section):
    """``[http]``: health, readiness and metrics endpoint (off unless ``listen`` is set)."""

    listen: str | None = None

    _listen_ok = field_validator("listen")(classmethod(lambda cls, v: _listen(v)))


class LogSection(_Section):
    """``[log]``: level and format."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Settings(_Section):
    """The whole validated configuration."""

    bot: BotSection = BotSection()
    limits: LimitsSection = LimitsSection()
    quota: QuotaSection = QuotaSection()
    providers: dict[str, ProviderSection] = Field(default_factory=dict)
    models: dict[str, ModelSection] = Field(default_factory=dict)
    telegram: TelegramSection = TelegramSection()
    discord: DiscordSection = DiscordSection()
    web: WebSection = WebSection()
    http: HttpSection = HttpSection()
    log: LogSection = LogSection()

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
            provider = over.provider or default_provider
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
        hidden = bool(loc) and loc[-1].endswith("_env")  # may be a pasted secret: never echo it
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
            args = get_args(node)
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
