"""Conversation turns (a tree), message bindings and edit history; images via the BlobStore."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

from bot.blobs.store import BlobStore
from bot.domain import Actor, ChatRef, ImageData, MessageRef, RequestKind, Turn
from bot.providers.base import HistoryTurn
from bot.quotas import Clock, utc_now
from bot.storage.base import Store

__all__ = ["BlobStore", "Conversations", "UserLocks"]

class UserLocks:
    """One asyncio lock per user, dropped again once nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s lock for the block."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Conversations:
    """Turns with parent links, bindings from platform messages, and bounded edit history."""

    # A user's turns are written one thing at a time: storing a result (blobs, then the turn),
    # deleting one and /forget take the user's lock, so a forget never meets half of one (it
    # used to delete the turn under a delivery's binding, which failed on the foreign key after
    # the photo had arrived and left the credits held). Binding is one atomic statement.

    def __init__(self, store: Store, blobs: BlobStore, *, history_turns: int = 4,
                 clock: Clock = utc_now) -> None:
        self._store = store
        self.blobs = blobs
        self._history_turns = history_turns
        self._clock = clock
        self.locks = UserLocks()

    async def record(self, *, actor: Actor, chat: ChatRef, prompt: str, model: str,
                     size: str | None, aspect: str | None, parent_id: str | None,
                     inputs: Sequence[ImageData], outputs: Sequence[ImageData],
                     provider_state: str | None = None, kind: RequestKind = "imagine",
                     credits: int = 0, style: str | None = None,
                     negative: tuple[str, ...] = (), reservation_id: str | None = None) -> Turn:
        """Store the images and a new turn (a root if its parent was forgotten meanwhile),
        linked to the reservation that pays for it."""
        async with self.locks.hold(actor.key):
            ins = [await self.blobs.write(i) for i in inputs]
            outs = [await self.blobs.write(o) for o in outputs]
            turn = Turn(
                id=secrets.token_hex(6), actor_key=actor.key, chat_key=chat.key, prompt=prompt,
                model=model, size=size, aspect=aspect, parent_id=parent_id,
                input_hashes=tuple(i.hash for i in ins), output_hashes=tuple(o.hash for o in outs),
                provider_state=provider_state, created_at=self._clock(), kind=kind,
                credits=credits, style=style, negative=negative)
            await self._store.add_result([*ins, *outs], self.blobs.now(), turn, reservation_id)
        return turn

    async def get(self, turn_id: str) -> Turn | None:
        """A turn by id."""
        return await self._store.get_turn(turn_id)

    async def bind(self, turn_id: str, messages: Sequence[MessageRef]) -> None:
        """Map every platform message that shows the turn's output to it (none if it is gone)."""
        # One statement that binds only while the turn exists: atomic against a forget without
        # the user's lock, and as quick as a bare insert (a reply can follow the photo at once).
        if messages:
            await self._store.bind(turn_id, list(messages))

    async def turn_for(self, message: MessageRef) -> Turn | None:
        """The turn shown by ``message``, if it is one of ours."""
        turn_id = await self._store.bound_turn(message)
        return await self._store.get_turn(turn_id) if turn_id else None

    async def bindings(self, turn_id: str) -> list[MessageRef]:
        """Platform messages bound to a turn."""
        return await self._store.bindings_of(turn_id)

    async def chain(self, turn_id: str) -> list[Turn]:
        """The turn and its ancestors, oldest first, bounded to ``history_turns``."""
        chain: list[Turn] = []
        current: str | None = turn_id
        while current and len(chain) < self._history_turns:
            turn = await self._store.get_turn(current)
            if turn is None:
                break
            chain.append(turn)
            current = turn.parent_id
        return list(reversed(chain))

    async def history(self, turn_id: str) -> tuple[HistoryTurn, ...]:
        """Provider history for an edit of ``turn_id`` (turns whose images expired are skipped)."""
        out: list[HistoryTurn] = []
        for turn in await self.chain(turn_id):
            inputs = await self.blobs.get_many(turn.input_hashes)
            outputs = await self.blobs.get_many(turn.output_hashes)
            if inputs is None or outputs is None:
                continue
            out.append(HistoryTurn(prompt=turn.prompt, inputs=inputs, outputs=outputs,
                                   provider_state=turn.provider_state))
        return tuple(out)

    async def outputs(self, turn: Turn) -> tuple[ImageData, ...] | None:
        """The images a turn produced, or None when they are gone."""
        return await self.blobs.get_many(turn.output_hashes)

    async def inputs(self, turn: Turn) -> tuple[ImageData, ...] | None:
        """The reference images a turn used, or None when they are gone."""
        return await self.blobs.get_many(turn.input_hashes)

    async def delete(self, turn_id: str) -> bool:
        """Delete one turn and its images that nothing else uses."""
        turn = await self._store.get_turn(turn_id)
        if turn is None:
            return False
        async with self.locks.hold(turn.actor_key):  # not while a result of theirs is stored
            await self._store.delete_turn(turn_id)
            await self.blobs.drop_unreferenced([*turn.input_hashes, *turn.output_hashes])
        return True

    async def forget(self, actor_key: str) -> int:
        """Delete every turn of a user and the images no other turn uses; returns turns deleted."""
        async with self.locks.hold(actor_key):
            turns = await self._store.turns_of(actor_key)
            digests: list[str] = []
            for turn in turns:
                digests.extend([*turn.input_hashes, *turn.output_hashes])
                await self._store.delete_turn(turn.id)
            await self._store.forget_suggestions(actor_key)
            await self.blobs.drop_unreferenced(digests)
        return len(turns)

    def now(self) -> datetime:
        """The injected clock's time."""
        return self._clock()
