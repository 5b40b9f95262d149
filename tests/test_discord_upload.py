"""Result files over the image's own bytes (adapters/discord/upload.py): read, seek, upload."""

from __future__ import annotations

import gc
import io
import os
import weakref

import aiohttp
import discord
from aiohttp import payload, web

from adapters.discord.upload import MemoryFile, MemoryPayload


def test_reads_and_seeks_as_bytesio_does() -> None:
    data = os.urandom(1000)
    mine, theirs = MemoryFile(data), io.BytesIO(data)
    for op, arg in [("read", 10), ("seek", 5), ("read", 0), ("read", 100), ("tell", None),
                    ("seek", 990), ("read", 50), ("read", 5), ("seek", 2000), ("read", -1),
                    ("seek", 0), ("read", None), ("tell", None)]:
        args = () if arg is None and op == "tell" else (arg,)
        assert getattr(mine, op)(*args) == getattr(theirs, op)(*args), (op, arg)
    assert mine.seek(-10, io.SEEK_END) == theirs.seek(-10, io.SEEK_END)
    assert mine.seek(3, io.SEEK_CUR) == theirs.seek(3, io.SEEK_CUR)
    assert mine.read() == theirs.read()


def test_aiohttp_uploads_it_from_the_caller_bytes() -> None:
    data = os.urandom(5000)
    file = MemoryFile(data)
    file.seek(100)
    part = payload.get_payload(file, filename="a.png")
    assert isinstance(part, MemoryPayload) and part.size == 4900
    # The payload is a view of the caller's bytes, not a copy of them.
    assert part._rest.obj is data


def test_a_file_discord_py_is_done_with_is_freed_with_its_last_reference() -> None:
    """discord.File puts the file's own bound close back into the file when it closes: kept
    there, that was a cycle holding the image until a full collection."""
    gc.disable()  # what a busy bot looks like: full collections are rare
    try:
        file = discord.File(MemoryFile(os.urandom(1000)), filename="imagine-1.png")
        gone = weakref.ref(file.fp)
        assert file.fp.close() is None and not file.fp.closed  # discord.py's stub meanwhile
        file.close()  # as discord.py does after each request
        assert not gone().closed  # type: ignore[union-attr]  # not the caller's to close
        del file
        assert gone() is None
    finally:
        gc.enable()


async def test_a_retried_upload_sends_the_whole_file_again() -> None:
    data = os.urandom(1_600_000)  # a 1K result's size: several of the payload's writes
    received: list[bytes] = []

    async def upload(request: web.Request) -> web.Response:
        form = await request.post()
        field = form["files[0]"]
        assert isinstance(field, web.FileField)
        received.append(field.file.read())
        return web.Response(status=429 if len(received) == 1 else 200)

    app = web.Application(client_max_size=10 * 1024 * 1024)
    app.router.add_post("/", upload)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    # discord.py's way with a file: a form per attempt, the File reset in between.
    file = discord.File(MemoryFile(data), filename="imagine-1.png")
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(2):
                file.reset()
                form = aiohttp.FormData(quote_fields=False)
                form.add_field("files[0]", file.fp, filename=file.filename,
                               content_type="application/octet-stream")
                async with http.post(f"http://127.0.0.1:{port}/", data=form) as resp:
                    status = resp.status
        assert status == 200
        assert received == [data, data]
    finally:
        file.close()
        await runner.cleanup()
