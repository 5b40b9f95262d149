"""Result files uploaded straight from the image's bytes: no copy, no read loop.

discord.py wants a file object and hands it to aiohttp's form; aiohttp wraps an ``io.BytesIO``
in ``BytesIOPayload``, whose ``getbuffer()`` un-shares the 1.6 MB a 1K result is (a copy on the
event loop), and which then re-reads it in 64 KiB pieces with a loop turn between each. A
:class:`MemoryFile` is a read-only file over the bytes themselves, and aiohttp writes it as
memoryview slices (:class:`MemoryPayload`, registered for that type alone).
"""

from __future__ import annotations

import io
from typing import Any

from aiohttp import payload
from aiohttp.abc import AbstractStreamWriter

#: How much of the file goes to the connection per write (aiohttp drains between writes).
CHUNK = 256 * 1024


class MemoryFile(io.BufferedIOBase):
    """A seekable, read-only file over ``data`` that never copies it for an upload."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._view = memoryview(data)
        self._pos = 0

    def __setattr__(self, name: str, value: Any) -> None:
        # discord.File stubs fp.close out during an upload, then puts fp's own bound close back
        # (discord/file.py: File.__init__, File.close). Kept in the instance, that bound method
        # made a reference cycle with the file, which held the image until a full collection
        # (bench_e2e, Discord's 500 users: ~600 MB of RSS). Putting ours back drops the stub.
        if name == "close" and getattr(value, "__self__", None) is self:
            self.__dict__.pop("close", None)
            return
        super().__setattr__(name, value)

    def readable(self) -> bool:
        """Yes."""
        return True

    def seekable(self) -> bool:
        """Yes (discord.py seeks back before retrying a rate-limited upload)."""
        return True

    def tell(self) -> int:
        """The current position."""
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the position as ``io.BytesIO.seek`` does."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes from the position (all that is left when negative or None)."""
        end = len(self._view) if size is None or size < 0 else min(len(self._view),
                                                                    self._pos + size)
        chunk = bytes(self._view[self._pos:end])
        self._pos = max(self._pos, end)
        return chunk

    def read1(self, size: int = -1) -> bytes:
        """As :meth:`read`."""
        return self.read(size)

    def rest(self) -> memoryview:
        """What is left from the position on, without a copy."""
        return self._view[self._pos:]


class MemoryPayload(payload.Payload):
    """aiohttp's payload for a :class:`MemoryFile`: the rest of the file, as slices of it."""

    _autoclose = True  # nothing to release

    def __init__(self, value: MemoryFile, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("content_type", "application/octet-stream")
        self._rest = value.rest()
        super().__init__(value, *args, **kwargs)
        self._size = len(self._rest)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        """The bytes as text (aiohttp asks only when logging or re-encoding a form)."""
        return bytes(self._rest).decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        """All of it."""
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: AbstractStreamWriter,
                                content_length: int | None) -> None:
        """At most ``content_length`` bytes of it (all when None)."""
        view = self._rest if content_length is None else self._rest[:content_length]
        for at in range(0, len(view), CHUNK):
            await writer.write(view[at:at + CHUNK])


payload.register_payload(MemoryPayload, MemoryFile)
