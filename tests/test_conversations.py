"""Conversations on a real SQLite file and blob directory: bindings, the turn tree and bounded
history (images, delete, forget and retention on each blob backend: test_blobs.py)."""

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
