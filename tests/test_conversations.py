"""Conversations on a real SQLite file and blob directory: bindings, the turn tree, bounded
history, forget, retention and the size cap, content addressing."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.blobs import BlobStore, LocalBlobs
from bot.conversations import Conversations
from bot.domain import Actor, ChatRef, ImageData, MessageRef, Turn
from bot.storage.sqlite import SqliteStore
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
def blobs(tmp_path: Path, store: SqliteStore, clock: FakeClock) -> BlobStore:
    return BlobStore(LocalBlobs(tmp_path / "blobs"), store, retention_days=30, cap_bytes=1 << 20,
                     clock=clock)


@pytest.fixture
def convo(store: SqliteStore, blobs: BlobStore, clock: FakeClock) -> Conversations:
    return Conversations(store, blobs, history_turns=4, clock=clock)


def files(root: Path) -> set[str]:
    return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


async def record(convo: Conversations, prompt: str, *, parent: Turn | None = None,
                 actor: Actor = ALICE, inputs: tuple[ImageData, ...] = (),
                 outputs: tuple[ImageData, ...] | None = None) -> Turn:
    return await convo.record(
        actor=actor, chat=CHAT, prompt=prompt, model="nano-banana", size="1K", aspect="1:1",
        parent_id=parent.id if parent else None, inputs=inputs,
        outputs=outputs if outputs is not None else (img(f"out:{prompt}"),),
        provider_state=f'{{"prompt": "{prompt}"}}', kind="edit" if parent else "imagine",
        credits=4)


# ----- bindings -------------------------------------------------------------------------------


async def test_record_bind_and_find_the_turn(convo: Conversations, clock: FakeClock) -> None:
    turn = await record(convo, "a red fox", inputs=(img("ref"),))
    assert turn.actor_key == ALICE.key and turn.chat_key == CHAT.key
    assert turn.created_at == clock.now
    assert turn.input_hashes == (digest(img("ref")),)
    assert await convo.get(turn.id) == turn
    photo = MessageRef("telegram", "-100", "10")
    document = MessageRef("telegram", "-100", "11")
    follow_up = MessageRef("telegram", "-100", "12")
    await convo.bind(turn.id, [photo, document, follow_up])
    await convo.bind(turn.id, [])  # nothing to bind is fine
    for message in (photo, document, follow_up):
        found = await convo.turn_for(message)
        assert found is not None and found.id == turn.id
    assert set(await convo.bindings(turn.id)) == {photo, document, follow_up}
    # Same message id elsewhere is another message.
    assert await convo.turn_for(MessageRef("telegram", "-200", "10")) is None
    assert await convo.turn_for(MessageRef("discord", "-100", "10")) is None
    assert await convo.turn_for(MessageRef("telegram", "-100", "13")) is None
    assert await convo.outputs(turn) == (img("out:a red fox"),)
    assert await convo.inputs(turn) == (img("ref"),)


async def test_a_rebound_message_moves_to_the_new_turn(convo: Conversations) -> None:
    first = await record(convo, "one")
    second = await record(convo, "two")
    message = MessageRef("discord", "5", "77")
    await convo.bind(first.id, [message])
    await convo.bind(second.id, [message])
    assert (await convo.turn_for(message)).id == second.id  # type: ignore[union-attr]
    assert await convo.bindings(first.id) == []


# ----- the tree and bounded history -----------------------------------------------------------


async def test_reply_to_an_older_turn_branches(convo: Conversations) -> None:
    root = await record(convo, "a cat")
    night = await record(convo, "make it night", parent=root)
    stars = await record(convo, "add stars", parent=night)
    # The user replies to the first result again: a second branch from the root.
    hat = await record(convo, "give it a hat", parent=root)
    assert hat.parent_id == root.id and night.parent_id == root.id
    assert [t.id for t in await convo.chain(stars.id)] == [root.id, night.id, stars.id]
    assert [t.id for t in await convo.chain(hat.id)] == [root.id, hat.id]
    history = await convo.history(hat.id)
    assert [h.prompt for h in history] == ["a cat", "give it a hat"]
    assert history[0].outputs == (img("out:a cat"),)
    assert history[1].provider_state == '{"prompt": "give it a hat"}'


async def test_history_is_bounded(store: SqliteStore, blobs: BlobStore,
                                  clock: FakeClock) -> None:
    for limit in (1, 2, 4):
        convo = Conversations(store, blobs, history_turns=limit, clock=clock)
        turn: Turn | None = None
        prompts = [f"step {limit}.{i}" for i in range(7)]
        for prompt in prompts:
            clock.advance(seconds=1)
            turn = await record(convo, prompt, parent=turn)
        assert turn is not None
        chain = await convo.chain(turn.id)
        assert [t.prompt for t in chain] == prompts[-limit:]  # the newest, oldest first
        assert [h.prompt for h in await convo.history(turn.id)] == prompts[-limit:]


async def test_history_skips_turns_whose_images_expired(convo: Conversations,
                                                        blobs: BlobStore) -> None:
    first = await record(convo, "first", inputs=(img("ref-1"),))
    second = await record(convo, "second", parent=first)
    third = await record(convo, "third", parent=second)
    await blobs.drop([digest(img("ref-1"))])  # an input of the first turn is gone
    assert [h.prompt for h in await convo.history(third.id)] == ["second", "third"]
    await blobs.drop(list(second.output_hashes))
    assert [h.prompt for h in await convo.history(third.id)] == ["third"]
    assert await convo.outputs(second) is None
    assert len(await convo.chain(third.id)) == 3  # the turns themselves are still there


async def test_missing_file_counts_as_expired(convo: Conversations, blobs: BlobStore) -> None:
    turn = await record(convo, "fox")
    path = blobs.objects.root / turn.output_hashes[0][:2] / turn.output_hashes[0]
    path.unlink()
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
    assert root.output_hashes[0] not in files(blobs.objects.root)
    assert child.output_hashes[0] in files(blobs.objects.root)


async def test_forget_removes_rows_and_files(convo: Conversations, blobs: BlobStore,
                                             store: SqliteStore) -> None:
    shared = img("the same photo")
    a1 = await record(convo, "a1", inputs=(shared, img("alice-ref")))
    a2 = await record(convo, "a2", parent=a1)
    b1 = await record(convo, "b1", actor=BOB, inputs=(shared,))
    await convo.bind(a1.id, [MessageRef("telegram", "-100", "1")])
    await convo.bind(a2.id, [MessageRef("telegram", "-100", "2")])
    await convo.bind(b1.id, [MessageRef("telegram", "-100", "3")])
    alice_only = {digest(img("alice-ref")), *a1.output_hashes, *a2.output_hashes}
    assert alice_only <= files(blobs.objects.root)

    assert await convo.forget(ALICE.key) == 2
    assert await store.turns_of(ALICE.key) == []
    assert await convo.get(a1.id) is None and await convo.get(a2.id) is None
    assert await convo.turn_for(MessageRef("telegram", "-100", "1")) is None
    assert await convo.turn_for(MessageRef("telegram", "-100", "2")) is None
    on_disk = files(blobs.objects.root)
    assert not alice_only & on_disk
    for gone in alice_only:
        assert await store.get_blob(gone) is None
    # Bob's turn shares an image with Alice's: it stays, and his conversation still works.
    assert digest(shared) in on_disk
    assert (await convo.turn_for(MessageRef("telegram", "-100", "3"))).id == b1.id  # type: ignore[union-attr]
    assert [h.prompt for h in await convo.history(b1.id)] == ["b1"]
    assert await convo.forget(ALICE.key) == 0
    assert await convo.forget(BOB.key) == 1
    assert files(blobs.objects.root) == set()
    rows = await store.db.execute_fetchall("SELECT COUNT(*) FROM blobs")
    assert next(iter(rows))[0] == 0


# ----- retention, size cap, content addressing ------------------------------------------------


async def test_retention_prunes_unused_blobs(convo: Conversations, blobs: BlobStore,
                                             clock: FakeClock) -> None:
    old = await record(convo, "old")
    clock.advance(days=20)
    new = await record(convo, "new", parent=old)
    clock.advance(days=11)  # old is 31 days unused, new 11
    assert await blobs.prune() == 1
    assert old.output_hashes[0] not in files(blobs.objects.root)
    assert new.output_hashes[0] in files(blobs.objects.root)
    assert [h.prompt for h in await convo.history(new.id)] == ["new"]
    clock.advance(days=30)
    assert await blobs.prune() == 1
    assert files(blobs.objects.root) == set()


async def test_storing_again_refreshes_a_blob(convo: Conversations, blobs: BlobStore,
                                              clock: FakeClock) -> None:
    photo = img("reused reference")
    await record(convo, "first use", inputs=(photo,))
    clock.advance(days=25)
    await record(convo, "second use", inputs=(photo,))
    clock.advance(days=25)  # 50 days since the first use, 25 since the last
    await blobs.prune()
    assert digest(photo) in files(blobs.objects.root)


async def test_size_cap_drops_least_recently_used_first(tmp_path: Path, store: SqliteStore,
                                                        clock: FakeClock) -> None:
    capped = BlobStore(LocalBlobs(tmp_path / "capped"), store, retention_days=365, cap_bytes=250,
                       clock=clock)
    order = []
    for label in ("a", "b", "c", "d", "e"):
        clock.advance(minutes=1)
        order.append(await capped.put(img(label, size=100)))
    assert len(files(capped.objects.root)) == 5
    assert await capped.prune() == 3  # 500 bytes -> 200 <= 250
    assert files(capped.objects.root) == set(order[-2:])
    assert await capped.prune() == 0


async def test_content_addressing_dedups(convo: Conversations, blobs: BlobStore,
                                         store: SqliteStore) -> None:
    photo = img("one photo", size=300_000)  # large enough to be hashed in a thread
    first = await blobs.put(photo)
    second = await blobs.put(ImageData(data=bytes(photo.data), mime="image/png"))
    assert first == second == hashlib.sha256(photo.data).hexdigest()
    assert files(blobs.objects.root) == {first}
    path = blobs.objects.root / first[:2] / first
    assert path.read_bytes() == photo.data
    assert not [p for p in blobs.objects.root.rglob("*.tmp")]  # atomic writes leave nothing behind
    t1 = await record(convo, "one", inputs=(photo,))
    t2 = await record(convo, "two", inputs=(photo,), outputs=(photo,))
    assert t1.input_hashes == t2.input_hashes == t2.output_hashes == (first,)
    assert await store.blob_refs(first) == 2
    await convo.delete(t1.id)
    assert first in files(blobs.objects.root)  # still used by the second turn
    await convo.delete(t2.id)
    assert first not in files(blobs.objects.root)
    rows = await store.db.execute_fetchall("SELECT COUNT(*) FROM blobs WHERE hash = ?", (first,))
    assert next(iter(rows))[0] == 0
