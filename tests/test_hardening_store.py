"""Issue 12, items 9-13: sniffed MIME types, secrets masked before storage, forget during
delivery, bounded grants, and readiness that notices a database it cannot write (the store's
tests here run on SQLite and on PostgreSQL)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from adapters.cli.health import HealthServer
from bot.blobs import BlobStore, LocalBlobs
from bot.bootstrap import Core, build_core
from bot.config import QuotaSection, Settings
from bot.domain import Actor, ChatRef, ImageData, ImageRequest, MessageRef, UserSettings
from bot.errors import BadGrant, BadUser, StoreUnavailable
from bot.images import verify_image
from bot.messages import load_catalog
from bot.providers.base import ProviderRequest, ProviderResult
from bot.providers.extract import extract
from bot.quotas import MAX_GRANT, Quotas
from bot.storage.postgres import PostgresStore
from bot.storage.sqlite import SqliteStore
from tests.conftest import StoreFactory
from tests.fake_telegram import ADMIN, ALICE, running_bot
from tests.fake_upstream import (  # noqa: F401 - the fixture
    FakeUpstream,
    Reply,
    chat_body,
    data_url,
    fake_upstream_fixture,
)
from tests.helpers import png
from tests.outcomes import jobs
from tests.store_engines import AnyStore, execute, fetch, read_only
from tests.test_cli import run_cli, run_cli_all
from tests.test_web_harness import running_console, turn_of, visitor

Factory = Callable[..., Settings]
USER = Actor("telegram", "1", "alice")
CHAT = ChatRef("telegram", "1", "private")
SECRET = "sk-relay-9f8e7d6c5b4a3928-SECRET"
ADMINS = {"admins": ["telegram:9001"]}
T = TypeVar("T")


class LabelProvider:
    """Answers with a real PNG under whatever MIME label (and provider state) it is given."""

    name = "demo"

    def __init__(self, label: str, state: str | None = None) -> None:
        self.label = label
        self.state = state

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        image = ImageData(png(), self.label, 8, 8)
        return ProviderResult(images=(image,), text="ok", finish_reason="STOP",
                              provider_state=self.state)

    async def aclose(self) -> None:
        pass


async def started(settings: Settings, **kwargs: Any) -> Core:
    core = build_core(settings, **kwargs)
    await core.start()
    return core


# ----- 9: the MIME type is what the bytes are, never the upstream's label --------------------


@pytest.mark.parametrize("label", ["image/svg+xml", "text/html", "image/png\r\nSet-Cookie: a=b",
                                   "image/*", ""])
def test_image_data_takes_its_type_from_the_bytes(label: str) -> None:
    assert ImageData(png(), label).mime == "image/png"
    assert ImageData(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/png").mime == (
        "application/octet-stream")


async def test_upstream_label_is_not_trusted() -> None:
    answer = chat_body(f"![x]({data_url(png(), 'image/svg+xml')})")
    assert (await extract(answer)).images[0].mime == "image/png"
    assert (await verify_image(png())).mime == "image/png"


async def test_blob_store_keeps_and_serves_the_sniffed_type(tmp_path: Path,
                                                           store: AnyStore) -> None:
    blobs = BlobStore(LocalBlobs(tmp_path / "blobs"), store)
    digest = await blobs.put(ImageData(png(), "image/svg+xml"))
    info = await store.get_blob(digest)
    assert info is not None and info.mime == "image/png"
    # A row written by an older version with a hostile label is served by its bytes.
    await execute(store, "UPDATE blobs SET mime = ? WHERE hash = ?", "text/html\r\nX-Evil: 1",
                  digest)
    again = await blobs.get(digest)
    assert again is not None and again.mime == "image/png"


@pytest.mark.parametrize("label", ["image/svg+xml", "image/png\r\nSet-Cookie: evil=1"])
async def test_web_image_route_serves_the_sniffed_type(settings_factory: Factory,
                                                       label: str) -> None:
    async with running_console(settings_factory, fakes={"demo": LabelProvider(label)}) as run, \
            visitor(run) as v:
        result = await v.imagine("a teal square")
        turn = turn_of(result)
        async with v.http.get(f"{run.url}/img/{turn}/0") as original:
            assert original.status == 200
            assert original.headers["Content-Type"] == "image/png"
            assert original.headers["X-Content-Type-Options"] == "nosniff"
            assert "Set-Cookie" not in original.headers
            assert await original.read() == png()


# ----- 10: secrets are masked before anything is stored ------------------------------------


async def test_key_echoed_in_a_successful_answer_is_not_stored(
        settings_factory: Factory, fake_upstream: FakeUpstream,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_AUTH", SECRET)  # a name with no hint of a secret in it
    echo = f"Here is your image. (You authenticated with {SECRET}.)"
    fake_upstream.push("chat", Reply(json=chat_body(
        echo, images=[{"type": "image_url", "image_url": {"url": data_url(png())}}])))
    settings = settings_factory(providers={"relay": {
        "api": "openai-chat", "base_url": fake_upstream.v1, "api_key_env": "RELAY_AUTH",
        "max_retries": 0}})
    core = await started(settings)
    try:
        reply = await jobs(core).imagine(ImageRequest(USER, CHAT, f"a fox {SECRET[:6]}"))
        assert reply.ok and reply.turn_id, reply.text
        assert fake_upstream.seen("chat")[0].headers["Authorization"] == f"Bearer {SECRET}"
        turn = await core.conversations.get(reply.turn_id)
        assert turn is not None and turn.provider_state and "***" in turn.provider_state
        assert turn.prompt == f"a fox {SECRET[:6]}"  # the user's own words are kept
    finally:
        await core.stop(grace=0)
    raw = (Path(settings.bot.data_dir) / "imagine.sqlite3").read_bytes()
    wal = Path(settings.bot.data_dir) / "imagine.sqlite3-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert SECRET.encode() not in raw


async def test_store_masks_every_free_text_column(store_factory: StoreFactory) -> None:
    store = store_factory(redact=lambda t: t.replace(SECRET, "***"))
    await store.open()
    try:
        quotas = Quotas(store, QuotaSection())
        await quotas.grant("telegram:1", 5, by=f"token {SECRET}")
        spec = next(iter(Settings().catalog().values()))
        res = await quotas.reserve(USER, CHAT, quotas.price(spec, spec.sizes[0]))
        await quotas.refund(res.id, f"upstream said {SECRET}")
        notes = [e.note or "" for e in await store.ledger()]
        assert not any(SECRET in n for n in notes) and any("***" in n for n in notes)
    finally:
        await store.close()


# ----- 11: /forget while a result is being delivered ------------------------------------------


async def test_forget_during_delivery_settles_and_binds_nothing(settings_factory: Factory) -> None:
    core = await started(settings_factory())
    try:
        reply = await jobs(core).imagine(ImageRequest(USER, CHAT, "a lighthouse"))
        assert reply.ok and reply.turn_id
        # The photo is on its way when the user forgets everything; then the upload finishes.
        assert await core.service.forget(USER) == 1
        await core.service.bind(reply.turn_id, [MessageRef("telegram", "1", "77")])
        assert [e.kind for e in await core.store.ledger(USER.key)] == ["reserve", "settle"]
        assert await core.store.held_reservations() == []
        assert await core.conversations.get(reply.turn_id) is None
        assert await core.service.turn_for(MessageRef("telegram", "1", "77")) is None
    finally:
        await core.stop(grace=0)


async def after(seconds: float, work: Awaitable[T]) -> T:
    """``work`` after ``seconds`` (to land it between the steps of another)."""
    await asyncio.sleep(seconds)
    return await work


async def test_forget_and_delivery_at_the_same_moment(settings_factory: Factory) -> None:
    core = await started(settings_factory())
    try:
        rounds = 16
        for i in range(rounds):
            reply = await jobs(core).imagine(ImageRequest(USER, CHAT, f"a lighthouse {i}"))
            assert reply.turn_id
            ref = MessageRef("telegram", "1", str(100 + i))
            # The delivery's report lands before, between and after the forget's steps.
            _, forgotten = await asyncio.gather(after(i * 0.0005, core.service.bind(
                reply.turn_id, [ref])), core.service.forget(USER))
            assert forgotten == 1  # whichever ran first, the turn was there to forget
            assert await core.store.held_reservations() == []
            assert await core.service.turn_for(ref) is None
            assert await core.store.turns_of(USER.key) == []
        kinds = [e.kind for e in await core.store.ledger(USER.key)]
        assert kinds == ["reserve", "settle"] * rounds
    finally:
        await core.stop(grace=0)


async def test_edit_of_a_forgotten_parent_is_stored_as_a_root(settings_factory: Factory) -> None:
    core = await started(settings_factory())
    try:
        first = await jobs(core).imagine(ImageRequest(USER, CHAT, "a lighthouse"))
        assert first.turn_id
        await core.service.bind(first.turn_id, [MessageRef("telegram", "1", "5")])
        parent = await core.conversations.get(first.turn_id)
        assert parent is not None
        await core.service.forget(USER)
        # A turn whose parent vanished while it ran is kept, as a root (like children of a
        # deleted turn), instead of failing on the foreign key.
        turn = await core.conversations.record(
            actor=USER, chat=CHAT, prompt="at night", model=parent.model, size=parent.size,
            aspect=parent.aspect, parent_id=parent.id, inputs=(), outputs=(ImageData(png(), ""),))
        stored = await core.conversations.get(turn.id)
        assert stored is not None and stored.parent_id is None
    finally:
        await core.stop(grace=0)


async def test_telegram_forget_while_the_photo_uploads(settings_factory: Factory) -> None:
    async with running_bot(settings_factory) as bot:
        service = bot.c.service
        real_bind = service.deliveries.bind

        async def bind_after_forget(turn_id: str, messages: Any, timings: Any = None) -> None:
            await service.forget(ALICE.actor)  # the user's /forget lands during the upload
            await real_bind(turn_id, messages, timings)

        service.deliveries.bind = bind_after_forget  # type: ignore[method-assign]
        bot.fake.user_sends("/imagine a lighthouse")
        await bot.fake.wait_for("sendPhoto")
        await bot.fake.expect_none("sendMessage", lambda c: "went wrong" in c.text)
        assert await bot.ledger(ALICE, ["reserve", "settle"]) == ["reserve", "settle"]
        assert await bot.c.store.held_reservations() == []


# ----- 12: grants are bounded, on every path ----------------------------------------------------


async def test_grant_limit_in_the_core(settings_factory: Factory) -> None:
    core = await started(settings_factory())
    try:
        for amount in (2**63 - 1, MAX_GRANT + 1, -(MAX_GRANT + 1), 0):
            with pytest.raises(BadGrant):
                await core.quotas.grant(USER.key, amount)
        for target in ("foo:bar", "telegram:4 2", " telegram:42", "telegram:", "telegram:x"):
            with pytest.raises(BadUser):
                await core.quotas.grant(target, 5)
        await core.quotas.grant(USER.key, MAX_GRANT)
        await core.quotas.grant(USER.key, MAX_GRANT)
        assert (await core.quotas.usage(USER)).bonus == 2 * MAX_GRANT
        assert await core.store.ledger(USER.key) != []
        text = core.presenter.error("en", BadGrant(0, MAX_GRANT))
        assert str(MAX_GRANT) in text.replace(",", "")
        for locale in ("zh-Hans", "zh-Hant"):
            assert core.presenter.error(locale, BadGrant(0, MAX_GRANT)) != text
    finally:
        await core.stop(grace=0)


async def test_telegram_huge_grants_are_refused_and_the_user_keeps_working(
        settings_factory: Factory) -> None:
    async with running_bot(settings_factory, bot=ADMINS) as bot:
        fake = bot.fake
        for _ in range(2):
            fake.user_sends(f"/grant {ALICE.id} {2**63 - 1}", user=ADMIN)
            refused = await fake.wait_for("sendMessage")
            assert str(MAX_GRANT) in refused.text.replace(",", ""), refused.text
        fake.user_sends(f"/grant {ALICE.id} ²", user=ADMIN)  # a digit to isdigit(), not to int()
        assert (await fake.wait_for("sendMessage")).text.startswith("Usage: /grant")
        fake.user_sends("/imagine a trophy")
        await fake.wait_for("sendPhoto")
        assert await bot.ledger(ALICE, ["reserve", "settle"]) == ["reserve", "settle"]


BAD_GRANTS = [
    ("foo:bar", "5"), ("telegram:4 2", "5"), (" telegram:42", "5"), ("telegram: 42", "5"),
    ("slack:42", "5"), ("telegram:42", "0"), ("telegram:42", "1.5"), ("telegram:42", "ten"),
    ("telegram:42", str(2**63 - 1)), ("telegram:42", "5 0"),
]


def test_cli_grant_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    procs = run_cli_all([("grant", user, credits) for user, credits in BAD_GRANTS], cwd=tmp_path)
    for case, proc in zip(BAD_GRANTS, procs, strict=True):
        assert proc.returncode == 2, (case, proc.stdout + proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("imagine-bot: "), (case, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stdout == "", case


def test_cli_grant_accepts_a_good_one(tmp_path: Path) -> None:
    proc = run_cli("grant", "discord:1234567890", "25", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "bonus now 25" in proc.stdout


# ----- 13: a database that cannot be written -------------------------------------------------


async def test_write_probe_detects_a_read_only_database(store: AnyStore) -> None:
    assert await store.writable()
    async with read_only(store):
        assert await store.ledger() == []  # reads still work...
        assert not await store.writable()  # ...but the probe notices
        with pytest.raises(StoreUnavailable):  # and a write is a store error, not a crash
            await store.save_user_settings("telegram:1", UserSettings(locale="en"))
    if isinstance(store, SqliteStore):
        await store.close()
        await store.open()
    assert await store.writable()
    # The probe left nothing behind.
    assert await fetch(store, "SELECT COUNT(*) FROM users") == [(0,)]


async def test_readyz_fails_when_the_store_cannot_write(store: AnyStore) -> None:
    health = HealthServer("127.0.0.1:0", lambda: True, writable=store.writable)
    await health.start()
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{health.port}/readyz"
            async with http.get(url) as ok:
                assert ok.status == 200
            async with read_only(store), http.get(url) as bad:
                assert bad.status == 503 and "database" in await bad.text()
    finally:
        await health.stop()


async def test_users_are_told_the_bot_cannot_save(settings_factory: Factory,
                                                   store_factory: StoreFactory) -> None:
    core = await started(settings_factory(), store=store_factory())
    try:
        assert isinstance(core.store, SqliteStore | PostgresStore)
        async with read_only(core.store):
            reply = await jobs(core).imagine(ImageRequest(USER, CHAT, "a lighthouse"))
        assert reply.error == StoreUnavailable.key
        assert reply.text == load_catalog("en")["error.store"]
        assert "went wrong" not in reply.text and "nothing was charged" in reply.text.lower()
    finally:
        await core.stop(grace=0)


async def test_blob_write_failure_is_a_store_error(tmp_path: Path, store: AnyStore) -> None:
    (tmp_path / "blobs").write_text("not a directory")  # the blob root cannot be created
    blobs = BlobStore(LocalBlobs(tmp_path / "blobs"), store)
    with pytest.raises(StoreUnavailable):
        await blobs.put(ImageData(png(), ""))


async def test_readyz_also_fails_when_the_image_store_is_gone(settings_factory: Factory) -> None:
    from adapters.cli.runner import writable

    core = await started(settings_factory())
    try:
        assert await writable(core)
        objects = core.conversations.blobs.objects
        assert isinstance(objects, LocalBlobs)
        if objects.root.exists():
            shutil.rmtree(objects.root)
        objects.root.write_bytes(b"")  # the mount point is gone: a file where the directory was
        assert not await writable(core)
        objects.root.unlink()
        assert await writable(core)
    finally:
        await core.stop(grace=0)
