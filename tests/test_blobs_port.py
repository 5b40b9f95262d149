"""The Blobs port on each backend, and S3's failure modes: bounded size, time and attempts; a
missing object is an expired image, an unreachable service is StoreUnavailable; keys stay secret."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.blobs import Blobs, BlobStore, BlobTooLarge
from bot.blobs import s3 as s3_module
from bot.blobs.base import MIB
from bot.blobs.s3 import S3Blobs, S3Credentials
from bot.bootstrap import build_blobs
from bot.domain import ImageData
from bot.errors import ConfigError, StoreUnavailable
from bot.storage.base import BlobInfo
from bot.storage.sqlite import SqliteStore
from tests.blob_backends import (  # noqa: F401 - fixtures
    ACCESS_KEY,
    SECRET_KEY,
    MakeBlobs,
    aws_env_fixture,
    backend_fixture,
    blobs_table_fixture,
    make_objects_fixture,
    new_bucket,
    objects_fixture,
    plant,
    s3_endpoint_fixture,
    stored,
)
from tests.conftest import make_settings
from tests.helpers import png

FAKE_KEYS = S3Credentials(ACCESS_KEY, SECRET_KEY)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "imagine.sqlite3")
    await opened.open()
    yield opened
    await opened.close()


# ----- the contract, on every backend ---------------------------------------------------------


async def test_round_trip_absent_and_repeated_calls(objects: Blobs) -> None:
    data = png()
    await objects.probe()
    await objects.put(sha(data), data)
    await objects.put(sha(data), data)  # the same content again: nothing changes
    assert await objects.get(sha(data)) == data
    assert await objects.get(sha(b"never stored")) is None
    await objects.delete([sha(b"never stored"), sha(data), sha(data)])
    assert await objects.get(sha(data)) is None
    await objects.delete([sha(data)])  # already gone: no error
    assert await stored(objects) == set()


async def test_only_digests_name_objects(objects: Blobs) -> None:
    for bad in ("../../etc/passwd", "AB" * 32, "ab", ""):
        with pytest.raises(ValueError):
            await objects.get(bad)
        with pytest.raises(ValueError):
            await objects.put(bad, b"x")


async def test_an_object_over_the_limit_is_refused_unread(make_objects: MakeBlobs,
                                                          store: SqliteStore) -> None:
    objects = make_objects(max_object_mb=1)
    big = b"\x89PNG" + b"\0" * MIB  # 1 MiB + 4 bytes, stored under its true digest elsewhere
    await plant(objects, sha(big), big)
    with pytest.raises(BlobTooLarge) as refused:
        await objects.get(sha(big))
    assert refused.value.size == len(big) and refused.value.limit == MIB
    with pytest.raises(BlobTooLarge):
        await objects.put(sha(big), big)
    # Through the image store: a write is a store error (the user is told, credits refunded);
    # a read is an image that is gone.
    images = BlobStore(objects, store)
    with pytest.raises(StoreUnavailable):
        await images.put(ImageData(data=big, mime="image/png"))
    await store.put_blob(BlobInfo(sha(big), "image/png", len(big), 8, 8))
    assert await images.get(sha(big)) is None


async def test_bytes_that_do_not_match_their_digest_are_gone(objects: Blobs,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    good = png()
    await plant(objects, sha(good), good[:-1] + b"\x00")  # a flipped byte, a torn copy
    assert await objects.get(sha(good)) is None
    assert "does not match its digest" in caplog.text


# ----- S3: unreachable, slow, misconfigured ---------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def every_call_fails(objects: Blobs) -> list[str]:
    errors = []
    calls = (objects.probe(), objects.put(sha(b"a"), b"a"), objects.get(sha(b"a")),
             objects.delete([sha(b"a")]))
    for call in calls:
        with pytest.raises(StoreUnavailable) as info:
            await call
        errors.append(info.value.detail)
    return errors


async def test_unreachable_s3_is_store_unavailable() -> None:
    objects = S3Blobs("s3://imagine/x", credentials=FAKE_KEYS, timeout=1, max_attempts=2,
                      endpoint_url=f"http://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    try:
        errors = await every_call_fails(objects)
    finally:
        await objects.aclose()
    assert all("EndpointConnectionError" in e for e in errors), errors
    assert time.monotonic() - started < 20


async def test_a_silent_s3_times_out_after_its_attempts() -> None:
    accepted: list[socket.socket] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer.get_extra_info("socket"))
        await reader.read(-1)  # never answers; holds the connection until the client leaves

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    objects = S3Blobs("s3://imagine/x", credentials=FAKE_KEYS, timeout=0.3, max_attempts=2,
                      endpoint_url=f"http://127.0.0.1:{port}")
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable) as info:
            await objects.get(sha(b"a"))
    finally:
        await objects.aclose()
        server.close()
    assert "ReadTimeoutError" in info.value.detail
    assert len(accepted) == 2  # one connection per attempt, no more
    assert time.monotonic() - started < 5


async def test_a_missing_bucket_is_store_unavailable(aws_env: None, s3_endpoint: str) -> None:
    objects = S3Blobs("s3://no-such-bucket-here/x", credentials=FAKE_KEYS,
                      endpoint_url=s3_endpoint)
    try:
        errors = await every_call_fails(objects)
    finally:
        await objects.aclose()
    assert errors[0] == "S3 probe failed: 404" and "NoSuchBucket" in errors[1], errors


async def test_deletes_go_in_batches(aws_env: None, s3_endpoint: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_module, "DELETE_BATCH", 2)
    objects = S3Blobs(f"s3://{new_bucket(s3_endpoint)}/p/", credentials=FAKE_KEYS,
                      endpoint_url=s3_endpoint)
    try:
        items = [f"image {i}".encode() for i in range(5)]
        for data in items:
            await objects.put(sha(data), data)
        assert await stored(objects) == {sha(d) for d in items}
        await objects.delete([sha(d) for d in items[:4]])
        assert await stored(objects) == {sha(items[4])}
    finally:
        await objects.aclose()


# ----- configuration and secrets --------------------------------------------------------------


def test_keys_come_only_from_the_aws_variables(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as info:
        S3Credentials.from_env({})
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set" in info.value.detail
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY is not set"):
        S3Credentials.from_env({"AWS_ACCESS_KEY_ID": ACCESS_KEY})
    keys = S3Credentials.from_env({"AWS_ACCESS_KEY_ID": ACCESS_KEY,
                                   "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_SESSION_TOKEN": "t" * 20})
    assert keys.session_token == "t" * 20
    assert ACCESS_KEY not in repr(keys) and SECRET_KEY not in repr(keys)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    settings = make_settings(tmp_path, blobs={"url": "s3://imagine/prod"})
    with pytest.raises(ConfigError):
        build_blobs(settings)
    local = build_blobs(make_settings(tmp_path))
    assert local.describe() == f"local {tmp_path / 'blobs'}"


async def test_settings_reach_the_client_and_keys_never_show(
        aws_env: None, s3_endpoint: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bucket = new_bucket(s3_endpoint)
    settings = make_settings(tmp_path, blobs={
        "url": f"s3://{bucket}/prod/images/", "endpoint_url": s3_endpoint, "region": "eu-west-1",
        "addressing_style": "path", "max_object_mb": 2})
    objects = build_blobs(settings)
    assert isinstance(objects, S3Blobs)
    assert (objects.bucket, objects.prefix, objects.max_bytes) == (bucket, "prod/images", 2 * MIB)
    assert objects.key("ab" * 32) == f"prod/images/ab/{'ab' * 32}"
    assert objects.describe() == f"s3://{bucket}/prod/images ({s3_endpoint}, eu-west-1)"
    caplog.set_level(logging.DEBUG)  # botocore at its most talkative
    try:
        data = png()
        await objects.put(sha(data), data)
        assert await objects.get(sha(data)) == data
    finally:
        await objects.aclose()
    shown = caplog.text + repr(objects) + objects.describe()
    assert SECRET_KEY not in shown
