"""The image store on each backend (a local directory, S3 served by moto): expired images,
delete and forget, retention, the size cap and content addressing, through Conversations."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.blobs import Blobs, BlobStore, LocalBlobs
from bot.conversations import Conversations
from bot.domain import Actor, ChatRef, ImageData, MessageRef, Turn
from bot.storage.sqlite import SqliteStore
from tests.blob_backends import (  # noqa: F401 - fixtures
    aws_env_fixture,
    backend_fixture,
    blobs_table_fixture,
    make_objects_fixture,
    objects_fixture,
    s3_endpoint_fixture,
    stored,
)
from tests.helpers import FakeClock

ALICE = Actor("telegram", "1")
BOB = Actor("telegram", "2")
CHAT = ChatRef("telegram", "-100", "group")


def img(label: str, size: int = 64) -> ImageData:
    """Distinct bytes per label (the blob store does not decode images)."""
    data = (label.encode() * size)[:size]
    return ImageData(data=data, mime="image/png", width=8, height=8)


def digest(image: ImageData) -> str:
    return hashlib.sha256(image.data).hexdigest()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2024, 5, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "imagine.sqlite3")
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def blobs(objects: Blobs, store: SqliteStore, clock: FakeClock) -> BlobStore:
    return BlobStore(objects, store, retention_days=30, cap_bytes=1 << 20, clock=clock)


@pytest.fixture
def convo(store: SqliteStore, blobs: BlobStore, clock: FakeClock) -> Conversations:
    return Conversations(store, blobs, history_turns=4, clock=clock)


async def record(convo: Conversations, prompt: str, *, parent: Turn | None = None,
                 actor: Actor = ALICE, inputs: tuple[ImageData, ...] = (),
                 outputs: tuple[ImageData, ...] | None = None) -> Turn:
    return await convo.record(
        actor=actor, chat=CHAT, prompt=prompt, model="nano-banana", size="1K", aspect="1:1",
        parent_id=parent.id if parent else None, inputs=inputs,
        outputs=outputs if outputs is not None else (img(f"out:{prompt}"),),
        provider_state=f'{{"prompt": "{prompt}"}}', kind="edit" if parent else "imagine",
        credits=4)


# ----- expired images -------------------------------------------------------------------------


async def test_history_skips_turns_whose_images_expired(convo: Conversations,
                                                        blobs: BlobStore) -> None:
    first = await record(convo, "first", inputs=(img("ref-1"),))
    second = await record(convo, "second", parent=first)
    third = await record(convo, "third", parent=second)
    assert await blobs.drop([digest(img("ref-1"))]) == 1  # an input of the first turn is gone
    assert [h.prompt for h in await convo.history(third.id)] == ["second", "third"]
    await blobs.drop(list(second.output_hashes))
    assert [h.prompt for h in await convo.history(third.id)] == ["third"]
    assert await convo.outputs(second) is None
    assert len(await convo.chain(third.id)) == 3  # the turns themselves are still there
    assert await blobs.drop([digest(img("ref-1"))]) == 0  # gone already


async def test_bytes_gone_behind_the_index_count_as_expired(convo: Conversations,
                                                            blobs: BlobStore) -> None:
    turn = await record(convo, "fox")
    await blobs.objects.delete(list(turn.output_hashes))  # a lifecycle rule, an operator's rm
    assert await blobs.get(turn.output_hashes[0]) is None
    assert await convo.history(turn.id) == ()


# ----- delete and forget ----------------------------------------------------------------------


async def test_delete_one_turn(convo: Conversations, blobs: BlobStore) -> None:
    root = await record(convo, "root")
    child = await record(convo, "child", parent=root)
    message = MessageRef("telegram", "-100", "1")
    await convo.bind(root.id, [message])
    assert await convo.delete(root.id) is True
    assert await convo.delete(root.id) is False
    assert await convo.get(root.id) is None
    assert await convo.turn_for(message) is None
    orphan = await convo.get(child.id)
    assert orphan is not None and orphan.parent_id is None  # children live on as roots
    held = await stored(blobs.objects)
    assert root.output_hashes[0] not in held and child.output_hashes[0] in held


async def test_forget_removes_rows_and_bytes(convo: Conversations, blobs: BlobStore,
                                             store: SqliteStore) -> None:
    shared = img("the same photo")
    a1 = await record(convo, "a1", inputs=(shared, img("alice-ref")))
    a2 = await record(convo, "a2", parent=a1)
    b1 = await record(convo, "b1", actor=BOB, inputs=(shared,))
    await convo.bind(a1.id, [MessageRef("telegram", "-100", "1")])
    await convo.bind(a2.id, [MessageRef("telegram", "-100", "2")])
    await convo.bind(b1.id, [MessageRef("telegram", "-100", "3")])
    alice_only = {digest(img("alice-ref")), *a1.output_hashes, *a2.output_hashes}
    assert alice_only <= await stored(blobs.objects)

    assert await convo.forget(ALICE.key) == 2
    assert await store.turns_of(ALICE.key) == []
    assert await convo.get(a1.id) is None and await convo.get(a2.id) is None
    assert await convo.turn_for(MessageRef("telegram", "-100", "1")) is None
    held = await stored(blobs.objects)
    assert not alice_only & held
    for gone in alice_only:
        assert await store.get_blob(gone) is None
    # Bob's turn shares an image with Alice's: it stays, and his conversation still works.
    assert digest(shared) in held
    assert (await convo.turn_for(MessageRef("telegram", "-100", "3"))).id == b1.id  # type: ignore[union-attr]
    assert [h.prompt for h in await convo.history(b1.id)] == ["b1"]
    assert await convo.forget(ALICE.key) == 0
    assert await convo.forget(BOB.key) == 1
    assert await stored(blobs.objects) == set()
    assert await store.blobs_by_age() == []


# ----- retention, size cap, content addressing ------------------------------------------------


async def test_retention_prunes_unused_blobs(convo: Conversations, blobs: BlobStore,
                                             clock: FakeClock) -> None:
    old = await record(convo, "old")
    clock.advance(days=20)
    new = await record(convo, "new", parent=old)
    clock.advance(days=11)  # old is 31 days unused, new 11
    assert await blobs.prune() == 1
    assert await stored(blobs.objects) == {new.output_hashes[0]}
    assert [h.prompt for h in await convo.history(new.id)] == ["new"]
    clock.advance(days=30)
    assert await blobs.prune() == 1
    assert await stored(blobs.objects) == set()


async def test_storing_again_refreshes_a_blob(convo: Conversations, blobs: BlobStore,
                                              clock: FakeClock) -> None:
    photo = img("reused reference")
    await record(convo, "first use", inputs=(photo,))
    clock.advance(days=25)
    await record(convo, "second use", inputs=(photo,))
    clock.advance(days=25)  # 50 days since the first use, 25 since the last
    await blobs.prune()
    assert digest(photo) in await stored(blobs.objects)


async def test_size_cap_drops_least_recently_used_first(objects: Blobs, store: SqliteStore,
                                                        clock: FakeClock) -> None:
    capped = BlobStore(objects, store, retention_days=365, cap_bytes=250, clock=clock)
    order = []
    for label in ("a", "b", "c", "d", "e"):
        clock.advance(minutes=1)
        order.append(await capped.put(img(label, size=100)))
    assert len(await stored(objects)) == 5
    assert await capped.prune() == 3  # 500 bytes -> 200 <= 250
    assert await stored(objects) == set(order[-2:])
    assert await capped.prune() == 0


async def test_content_addressing_dedups(convo: Conversations, blobs: BlobStore,
                                         store: SqliteStore) -> None:
    photo = img("one photo", size=300_000)  # large enough to be hashed in a thread
    first = await blobs.put(photo)
    second = await blobs.put(ImageData(data=bytes(photo.data), mime="image/png"))
    assert first == second == hashlib.sha256(photo.data).hexdigest()
    assert await stored(blobs.objects) == {first}
    assert await blobs.objects.get(first) == photo.data
    t1 = await record(convo, "one", inputs=(photo,))
    t2 = await record(convo, "two", inputs=(photo,), outputs=(photo,))
    assert t1.input_hashes == t2.input_hashes == t2.output_hashes == (first,)
    assert await store.blob_refs(first) == 2
    await convo.delete(t1.id)
    assert first in await stored(blobs.objects)  # still used by the second turn
    await convo.delete(t2.id)
    assert first not in await stored(blobs.objects)
    assert await store.get_blob(first) is None


async def test_local_layout_and_atomic_writes(tmp_path: Path, store: SqliteStore) -> None:
    local = LocalBlobs(tmp_path / "blobs")
    blobs = BlobStore(local, store)
    first = await blobs.put(img("on disk", size=1000))
    path = tmp_path / "blobs" / first[:2] / first  # the layout every version has used
    assert path.read_bytes() == img("on disk", size=1000).data
    assert not list(local.root.rglob("*.tmp"))  # atomic writes leave nothing behind
