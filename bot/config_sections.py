"""The config tables one by one: ``[bot]``, ``[limits]``, ``[providers.NAME]`` ... each a strict model.

:mod:`bot.config` assembles them into :class:`~bot.config.Settings` and loads files.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from bot.catalog import DEFAULT_MODEL, THINKING_LEVELS, normalize_size
from bot.ingress_config import DiscordShards, WebhookOwner
from bot.providers.routes import ROUTES

Locale = Literal["en", "zh-Hans", "zh-Hant"]
ApiKind = Literal["gemini", "openrouter", "new-api", "litellm", "openai-chat", "openai-images",
                  "demo"]
_ACTOR_RE = re.compile(r"^(telegram|discord|cli|web):[0-9A-Za-z_-]+$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
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
    #: A visible "AI-generated" line under every result (EU AI Act Art. 50 transparency).
    ai_label: bool = True

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

    #: Upstream calls in flight at once. 32: the image models are I/O-bound (10-140 s of waiting
    #: on Google), so a small cap only queues users; Google's own limits are per project and per
    #: minute, plus a spend cap per 10 minutes ($10 on Tier 1, $50 Tier 2, $200 Tier 3), and
    #: past them it answers 429 RESOURCE_EXHAUSTED, which the retry policy waits out
    #: (https://ai.google.dev/gemini-api/docs/rate-limits). Memory is the delivery budget's job.
    global_concurrency: int = Field(default=32, ge=1, le=1000)
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
    #: How long a finished result the platform refuses for now (rate limits) is offered again,
    #: across restarts, before it is refunded as undeliverable.
    delivery_retry_hours: float = Field(default=12.0, gt=0)


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
    #: Largest answer read, counted while it streams (why 128: bot/providers/wire/clients.py).
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
    #: Providers that may serve it, tried in order (failover); empty: ``provider`` alone.
    routes: tuple[str, ...] = ()
    #: USD per image on one route, by provider name, where it differs from ``prices``.
    route_prices: dict[str, dict[str, float]] = Field(default_factory=dict)

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


class FailoverSection(_Section):
    """``[failover]``: when a route's circuit opens, for how long, and retries before moving on."""

    #: Consecutive 5xx / timeouts / busy answers that open a route's circuit.
    failure_threshold: int = Field(default=3, ge=1, le=100)
    #: How long an open circuit (after 5xx / timeouts) waits before one trial job.
    cooldown_seconds: float = Field(default=60.0, gt=0)
    #: How long a route that is out of credit or rejects its key waits before a trial.
    credit_cooldown_seconds: float = Field(default=600.0, gt=0)
    #: Retries on one route before the next route is tried (when there is one).
    retries_before_failover: int = Field(default=1, ge=0, le=10)
    #: Failovers kept for the operator view.
    history: int = Field(default=50, ge=1, le=1000)


class SafetySection(_Section):
    """``[safety]``: the level jobs run at, and where groups may choose ``relaxed``."""

    level: Literal["strict", "default", "relaxed"] = "default"
    #: Where a group admin may pick ``relaxed``: nowhere, Discord age-restricted channels, anywhere.
    relaxed: Literal["nowhere", "age-restricted", "anywhere"] = "nowhere"


class TelegramSection(_Section, WebhookOwner):
    """``[telegram]``: the Telegram adapter."""

    enabled: bool = False
    token_env: str = "TELEGRAM_BOT_TOKEN"
    base_url: str | None = None
    base_file_url: str | None = None
    allowed_chats: tuple[int, ...] = ()
    private_plain_text: bool = True
    #: Progress in private chats as a native draft (Bot API 9.3+); false: a status message.
    drafts: bool = True
    album_debounce_seconds: float = Field(default=1.0, ge=0)
    webhook_url: str | None = None
    webhook_listen: str = "0.0.0.0:8443"
    #: A private chat the bot uploads guest-mode results to (their file ids answer the query);
    #: unset: guest queries are not subscribed to.
    cache_chat_id: int | None = None
    #: Pay Stars to send results past the free ~30 messages/s when they would otherwise wait
    #: longer than paid_broadcast_after_seconds (allow_paid_broadcast: 0.1 Star a message).
    paid_broadcast: bool = False
    paid_broadcast_after_seconds: float = Field(default=10.0, gt=0)

    _webhook_listen = field_validator("webhook_listen")(classmethod(lambda cls, v: _listen(v)))

    @field_validator("token_env")
    @classmethod
    def _env(cls, value: str) -> str:
        return _env_name(value)


class DiscordSection(_Section, DiscordShards):
    """``[discord]``: the Discord adapter."""

    enabled: bool = False
    token_env: str = "DISCORD_BOT_TOKEN"
    api_base_url: str | None = None
    gateway_url: str | None = None
    allowed_guilds: tuple[int, ...] = ()
    allow_dms: bool = True
    #: Ask for the privileged Message Content intent (the Developer Portal must allow it too).
    message_content_intent: bool = False

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


class StoreSection(_Section):
    """``[store]``: SQLite in ``data_dir`` unless ``url`` names a PostgreSQL database."""

    #: ``postgresql://user@host:5432/db``; it may carry a password, so it is never logged whole
    #: (leave the password out and export ``PGPASSWORD`` to keep it out of the file as well).
    url: str | None = None
    #: Connections this process keeps open to PostgreSQL.
    pool_size: int = Field(default=10, ge=1, le=200)
    #: How long a silent process keeps its reservations before another one refunds them.
    lease_seconds: float = Field(default=60.0, ge=5, le=3600)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        # The message never quotes the value: it may hold the password.
        if not re.match(r"postgres(ql)?://[^/?#]", value.strip()):
            raise ValueError("expected postgresql://user@host:port/database (or leave it unset "
                             "for SQLite)")
        return value.strip()


class BlobsSection(_Section):
    """``[blobs]``: image bytes in ``data_dir/blobs`` unless ``url`` names an S3 bucket (keys
    only from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY); the index stays in ``[store]``."""

    url: str | None = None  # s3://bucket/prefix on AWS S3, MinIO, R2, ...
    endpoint_url: str | None = None  # a non-AWS service, e.g. http://minio:9000
    region: str = Field(default="us-east-1", min_length=1, max_length=40)
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)  # per attempt
    max_attempts: int = Field(default=3, ge=1, le=10)
    max_object_mb: float = Field(default=128.0, ge=1)  # a bigger image is refused, never loaded

    @field_validator("url", "endpoint_url")
    @classmethod
    def _urls(cls, value: str | None, info: ValidationInfo) -> str | None:
        value = (value or "").strip() or None
        # Bucket names: 3-63 of a-z 0-9 . -; an endpoint never carries credentials.
        form, hint = ((r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?", "s3://bucket/prefix")
                      if info.field_name == "url" else
                      (r"https?://[^\s/?#@]+(/[^\s?#]*)?", "http(s)://host[:port]"))
        if value is not None and not re.fullmatch(form, value):
            raise ValueError(f"expected {hint} (or leave it unset)")
        return value


class StyleSection(_Section):
    """``[styles.NAME]``: a style preset (a new one, or a replacement of a built-in one)."""

    #: The prompt around the user's words: must contain ``{prompt}``.
    template: str = Field(min_length=8, max_length=1000)
    #: The name shown in menus; else the catalogs' ``style.NAME``, else NAME.
    label: str | None = Field(default=None, max_length=40)

    @field_validator("template")
    @classmethod
    def _has_prompt(cls, value: str) -> str:
        if "{prompt}" not in value:
            raise ValueError("must contain {prompt} (where the user's words go)")
        return value

