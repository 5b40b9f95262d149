"""Conversation turns (a tree), message bindings, edit history, and the on-disk image blob store."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

from bot.domain import Actor, ChatRef, ImageData, MessageRef, RequestKind, Turn
from bot.errors import StoreUnavailable
from bot.providers.base import HistoryTurn
from bot.quotas import Clock, utc_now
from bot.storage.base import BlobInfo, Store

_HASH_IN_THREAD = 256 * 1024


class BlobStore:
    """Content-addressed image files under ``root`` (``ab/abcdef…``), indexed in the Store."""

    def __init__(self, root: Path, store: Store, *, retention_days: int = 30,
                 cap_bytes: int = 2 << 30, clock: Clock = utc_now) -> None:
        self.root = root
        self._store = store
        self._retention = timedelta(days=retention_days)
        self._cap = cap_bytes
        self._clock = clock

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    async def put(self, image: ImageData) -> str:
        """Store ``image`` once; return its SHA-256 hex digest."""
        data = image.data
        if len(data) > _HASH_IN_THREAD:
            digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        else:
            digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if not path.exists():
            try:
                await asyncio.to_thread(_atomic_write, path, data)
            except OSError as exc:  # read-only volume, disk full: the user is told, not "oops"
                raise StoreUnavailable(f"image store write failed: {exc}") from exc
        # image.mime was sniffed from these bytes by ImageData, never taken from a label.
        await self._store.put_blob(BlobInfo(digest, image.mime, len(data), image.width,
                                            image.height), used_at=self._clock())
        return digest

    async def get(self, digest: str) -> ImageData | None:
        """The image stored under ``digest``; None when it expired or was forgotten."""
        info = await self._store.get_blob(digest)
        if info is None:
            return None
        try:
            data = await asyncio.to_thread(self._path(digest).read_bytes)
        except FileNotFoundError:
            return None
        # ImageData sniffs the type from the bytes again, so a label stored by an older
        # version (or tampered with) is never what gets served.
        return ImageData(data=data, mime=info.mime, width=info.width, height=info.height)

    async def get_many(self, digests: Sequence[str]) -> tuple[ImageData, ...] | None:
        """All images for ``digests``, or None when any is gone."""
        found = [await self.get(d) for d in digests]
        if any(item is None for item in found):
            return None
        return tuple(item for item in found if item is not None)

    async def drop(self, digests: Sequence[str]) -> int:
        """Delete the files and index rows of ``digests``; returns how many existed."""
        removed = 0
        for digest in digests:
            try:
                await asyncio.to_thread(self._path(digest).unlink)
                removed += 1
            except FileNotFoundError:
                pass
        await self._store.delete_blobs(list(digests))
        return removed

    async def drop_unreferenced(self, digests: Sequence[str]) -> int:
        """Delete those of ``digests`` that no turn references any more."""
        orphans = [d for d in set(digests) if await self._store.blob_refs(d) == 0]
        return await self.drop(orphans)

    async def prune(self) -> int:
        """Apply retention (unused for ``retention_days``) and the size cap (least recent first)."""
        expired = await self._store.prunable_blobs(self._clock() - self._retention)
        removed = await self.drop(expired)
        blobs = await self._store.blobs_by_age()
        total = sum(b.size for b in blobs)
        over: list[str] = []
        for blob in blobs:
            if total <= self._cap:
                break
            over.append(blob.hash)
            total -= blob.size
        return removed + await self.drop(over)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


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
                     credits: int = 0) -> Turn:
        """Store the images and a new turn (a root if its parent was forgotten meanwhile)."""
        async with self.locks.hold(actor.key):
            turn = Turn(
                id=secrets.token_hex(6), actor_key=actor.key, chat_key=chat.key, prompt=prompt,
                model=model, size=size, aspect=aspect, parent_id=parent_id,
                input_hashes=tuple([await self.blobs.put(i) for i in inputs]),
                output_hashes=tuple([await self.blobs.put(o) for o in outputs]),
                provider_state=provider_state, created_at=self._clock(), kind=kind,
                credits=credits)
            await self._store.add_turn(turn)
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
            await self.blobs.drop_unreferenced(digests)
        return len(turns)

    def now(self) -> datetime:
        """The injected clock's time."""
        return self._clock()
