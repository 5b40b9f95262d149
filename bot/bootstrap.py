"""The one place concrete classes are chosen and wired (the composition root)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from redis.asyncio import Redis

from bot import images
from bot.account import AdminOps, Preferences
from bot.api import BotApi
from bot.blobs import Blobs, BlobStore, LocalBlobs
from bot.blobs.base import MIB
from bot.catalog import Lineup
from bot.config import Settings
from bot.conversations import Conversations
from bot.errors import StoreUnavailable
from bot.handoff import Handoffs
from bot.instance import Instance, new_instance_id
from bot.jobs import JobScheduler, Scheduler
from bot.leader import Leadership
from bot.messages import Messages
from bot.metrics import Metrics
from bot.present import Presenter
from bot.providers.base import ImageProvider
from bot.providers.factory import build_provider
from bot.quotas import Clock, Quotas, utc_now
from bot.redact import Redactor, secret_names, secret_values
from bot.service import ImagineService
from bot.shop import Shop
from bot.storage.base import Store
from bot.storage.sqlite import SqliteStore
from bot.storage.urls import url_secrets

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Core:
    """Everything the adapters need, built once from settings."""

    settings: Settings
    store: Store
    quotas: Quotas
    conversations: Conversations
    scheduler: Scheduler
    providers: dict[str, ImageProvider]
    messages: Messages
    presenter: Presenter
    service: ImagineService
    prefs: Preferences
    admin: AdminOps
    metrics: Metrics
    instance: Instance
    api: BotApi
    shop: Shop
    leader: Leadership

    async def start(self) -> None:
        """Open the store, take a lease, refund what dead instances held, apply blob retention."""
        await self.store.open()
        refunded = await self.instance.start()
        if refunded:
            log.warning("refunded %d reservation(s) left by an earlier crash", refunded)
        await self.scheduler.open()
        await self.shop.catch_up()  # payments recorded but never credited (the store failed)
        blobs = self.conversations.blobs
        try:  # as with a disk that turns read-only: users are told, the process keeps running
            await blobs.objects.probe()
        except StoreUnavailable as exc:
            log.error("image store %s unusable (%s): images cannot be saved or read until it "
                      "is back", blobs.objects.describe(), exc.detail)
            return
        await blobs.prune()

    async def stop(self, grace: float | None = None) -> None:
        """Drain jobs (finish running ones up to ``grace``, refund the rest), then close."""
        wait = self.settings.limits.shutdown_grace_seconds if grace is None else grace
        await self.scheduler.drain(wait)
        # drain() decides every job's outcome; the refunds run in the requests' own tasks.
        await self.service.wait_idle(5.0)
        for provider in self.providers.values():
            await provider.aclose()
        await self.scheduler.aclose()
        await self.leader.release()
        await self.instance.stop()
        await self.conversations.blobs.objects.aclose()
        await self.store.close()


def build_providers(settings: Settings, metrics: Metrics | None = None) -> dict[str, ImageProvider]:
    """One provider per ``[providers.NAME]`` (secrets read from their env vars)."""
    out: dict[str, ImageProvider] = {}
    for name, section in settings.provider_table().items():
        key = Settings.secret(section.key_env) if section.key_env else None
        on_retry = metrics.retries.labels(name).inc if metrics is not None else None
        out[name] = build_provider(name, section, api_key=key, on_retry=on_retry)
    return out


def build_store(settings: Settings, redact: Redactor) -> Store:
    """PostgreSQL when ``[store] url`` is set, else SQLite in ``data_dir``."""
    if settings.store.url:
        from bot.storage.postgres import PostgresStore

        return PostgresStore(settings.store.url, pool_size=settings.store.pool_size, redact=redact)
    return SqliteStore(settings.bot.data_dir / "imagine.sqlite3", redact=redact)


def build_scheduler(settings: Settings, instance_id: str) -> Scheduler:
    """Admission shared through Redis when ``[redis] url`` is set, else in this process."""
    limits = settings.limits
    if not settings.redis.url:
        return JobScheduler(global_concurrency=limits.global_concurrency,
                            per_user_concurrency=limits.per_user_concurrency,
                            per_user_queued=limits.per_user_queued, queue_size=limits.queue_size)
    from bot.scheduler_redis import RedisScheduler

    return RedisScheduler(redis_client(settings.redis.url), process=instance_id,
                          prefix=settings.redis.prefix, lease_seconds=settings.store.lease_seconds,
                          global_concurrency=limits.global_concurrency,
                          per_user_concurrency=limits.per_user_concurrency,
                          per_user_queued=limits.per_user_queued, queue_size=limits.queue_size)


def build_leadership(settings: Settings) -> Leadership:
    """Roles decided among processes by Redis locks, or all held here without Redis."""
    if not settings.redis.url:
        return Leadership()
    return Leadership(redis_client(settings.redis.url), prefix=settings.redis.prefix,
                      ttl=settings.store.lease_seconds)


def redis_client(url: str) -> Redis:
    """An asyncio client answering str (redis-py)."""
    return Redis.from_url(url, decode_responses=True, socket_connect_timeout=5,
                          health_check_interval=30)


def build_blobs(settings: Settings) -> Blobs:
    """An S3 bucket when ``[blobs] url`` is set (keys from the AWS env vars), else data_dir/blobs."""
    section = settings.blobs
    max_bytes = int(section.max_object_mb * MIB)
    if not section.url:
        return LocalBlobs(settings.bot.data_dir / "blobs", max_bytes=max_bytes)
    from bot.blobs.s3 import S3Blobs, S3Credentials

    return S3Blobs(section.url, credentials=S3Credentials.from_env(), max_bytes=max_bytes,
                   endpoint_url=section.endpoint_url, region=section.region,
                   addressing_style=section.addressing_style, timeout=section.timeout_seconds,
                   max_attempts=section.max_attempts)


def build_core(settings: Settings, *, store: Store | None = None,
               providers: dict[str, ImageProvider] | None = None,
               clock: Clock = utc_now, scheduler: Scheduler | None = None,
               blobs: Blobs | None = None) -> Core:
    """Wire the core; tests pass fakes for any part."""
    # Chat text and the store alike; the store URL's password too, should an error quote it.
    redact = Redactor([*secret_values(secret_names(settings)), *url_secrets(settings.store.url),
                       *url_secrets(settings.redis.url)])
    store = store or build_store(settings, redact)
    instance_id = new_instance_id()
    scheduler = scheduler or build_scheduler(settings, instance_id)
    quotas = Quotas(store, settings.quota, admins=frozenset(settings.bot.admins), clock=clock,
                    owner=instance_id, paid_expire_days=settings.shop.credits_expire_days)
    shop = Shop(settings.shop, store, quotas, admins=frozenset(settings.bot.admins))
    image_store = BlobStore(blobs or build_blobs(settings), store,
                            retention_days=settings.bot.retention_days,
                            cap_bytes=settings.bot.blob_cap_mb * MIB, clock=clock)
    conversations = Conversations(store, image_store, history_turns=settings.bot.history_turns,
                                  clock=clock)
    messages = Messages()
    presenter = Presenter(messages, clock, redact)
    metrics = Metrics()
    providers = providers if providers is not None else build_providers(settings, metrics)
    lineup = Lineup(settings.catalog())
    metrics.watch_queue(lambda: scheduler.snapshot().queued, lambda: scheduler.snapshot().running)
    # Several processes (Redis shares the queue): a queued job another can finish if this one
    # stops. One process has nobody to hand it to (its restart refunds what it held).
    handoffs = Handoffs(store, quotas, image_store, owner=instance_id,
                        enabled=bool(settings.redis.url),
                        max_age=timedelta(hours=settings.limits.delivery_retry_hours),
                        sweep=scheduler.sweep, metrics=metrics)
    service = ImagineService(
        settings=settings, store=store, quotas=quotas, conversations=conversations,
        providers=providers, scheduler=scheduler, presenter=presenter,
        prepare_reference=images.prepare_reference, metrics=metrics, lineup=lineup,
        handoffs=handoffs)
    prefs = Preferences(settings, store, lineup)
    admin = AdminOps(settings, store, quotas, scheduler, presenter)
    api = BotApi(settings=settings, service=service, prefs=prefs, admin=admin, messages=messages,
                 presenter=presenter, quotas=quotas, shop=shop)
    instance = Instance(store, quotas, instance_id=instance_id,
                        lease_seconds=settings.store.lease_seconds)
    leader = build_leadership(settings)
    api.leader = leader
    return Core(settings=settings, store=store, quotas=quotas, conversations=conversations,
                scheduler=scheduler, providers=providers, messages=messages, presenter=presenter,
                service=service, prefs=prefs, admin=admin, metrics=metrics, api=api,
                instance=instance, shop=shop, leader=leader)
