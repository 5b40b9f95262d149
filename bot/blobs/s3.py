"""Image bytes as objects in an S3 bucket (AWS S3, MinIO, R2, ...), so every process sees them.

The client is boto3 in a bounded thread pool, not aiobotocore. ``bench/bench_blobs.py`` (moto's
server in a child process on loopback, 8 put+get pairs at a time, after a warm-up; 2 cores shared
with other work, load average ~6) measured the event loop's own CPU per pair, which no other chat
can use meanwhile, and how late a 1 ms ticker woke (p99 / worst, OS scheduling included):

    ==============  =====  ==========  ==========  ===========  ===============
    client          link   objects     pairs / s   loop CPU     ticker late
    ==============  =====  ==========  ==========  ===========  ===============
    boto3, threads  http   1 MiB x64   59          1.0 ms       12 / 24 ms
    aiobotocore     http   1 MiB x64   31          7.3 ms       76 / 260 ms
    boto3, threads  http   20 MiB x16  3.4         12.9 ms      57 / 178 ms
    aiobotocore     http   20 MiB x16  3.9         88 ms        100 / 608 ms
    boto3, threads  https  1 MiB x64   41          1.4 ms       9 / 30 ms
    aiobotocore     https  1 MiB x64   38          12.1 ms      22 / 35 ms
    boto3, threads  https  20 MiB x16  3.7         19.2 ms      30 / 210 ms
    aiobotocore     https  20 MiB x16  2.3         117 ms       120 / 315 ms
    ==============  =====  ==========  ==========  ===========  ===============

(the local directory, for scale: 1 MiB 319 pairs/s at 0.4 ms, 20 MiB 12/s at 8 ms). aiobotocore
signs (a SHA-256 of the whole body over http), parses and copies on the event loop: 6-9 times the
loop CPU per image, ~0.1 s for every 4K result stored and read, at about the same rate. boto3
does it in a worker thread (hashlib and sockets release the GIL). A low-level boto3 client is
thread-safe once made (https://boto3.amazonaws.com/v1/documentation/api/latest/guide/clients.html,
"Multithreading or multiprocessing with clients"): it is made once, in the pool, and shared.

Checksums are ``when_required``: botocore >= 1.36 sends CRC headers by default that several
S3-compatible services refuse (https://github.com/boto/boto3/issues/4392). Integrity is checked
here instead, for every service alike: the key is the SHA-256 of the bytes, verified on each read.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from bot.blobs.base import DEFAULT_MAX_BYTES, BlobTooLarge, blob_key, matches
from bot.errors import ConfigError, StoreUnavailable

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

T = TypeVar("T")
log = logging.getLogger(__name__)
#: Calls in flight at once (and pooled connections). A call is mostly waiting on the network;
#: jobs store a result or two each, so 8 keeps up with the default 32 running jobs.
THREADS = 8
#: DeleteObjects takes at most 1000 keys a request
#: (https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html).
DELETE_BATCH = 1000
#: botocore's standard retry mode waits at most 20 s between attempts.
BACKOFF_ALLOWANCE = 20.0
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


@dataclass(frozen=True)
class S3Credentials:
    """Keys read from the standard AWS environment variables only; never printed."""

    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3Credentials:
        """AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN); ConfigError if unset."""
        env = os.environ if environ is None else environ
        missing = [n for n in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not env.get(n)]
        if missing:
            raise ConfigError(f"[blobs] url is an S3 bucket but env var {' and '.join(missing)} "
                              f"{'is' if len(missing) == 1 else 'are'} not set")
        return cls(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"],
                   env.get("AWS_SESSION_TOKEN") or None)


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> (``bucket``, ``some/prefix``)."""
    if not url.startswith("s3://"):
        raise ValueError("expected s3://bucket/prefix")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


class S3Blobs:
    """Objects ``prefix/ab/abcdef...`` in one bucket; every call bounded in size, time and tries."""

    def __init__(self, url: str, *, credentials: S3Credentials, max_bytes: int = DEFAULT_MAX_BYTES,
                 endpoint_url: str | None = None, region: str = "us-east-1",
                 addressing_style: Literal["auto", "path", "virtual"] = "auto",
                 timeout: float = 10.0, max_attempts: int = 3, threads: int = THREADS) -> None:
        self.bucket, self.prefix = split_url(url)
        self.max_bytes = max_bytes
        self.endpoint_url = endpoint_url
        self.region = region
        self._credentials = credentials
        self._threads = threads
        self._config = Config(
            region_name=region, connect_timeout=timeout, read_timeout=timeout,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            max_pool_connections=threads, s3={"addressing_style": addressing_style},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required")
        # botocore bounds each attempt; this bounds the whole call, queueing and backoff included.
        self._deadline = timeout * max_attempts + BACKOFF_ALLOWANCE
        self._pool: ThreadPoolExecutor | None = None
        self._client: S3Client | None = None
        self._opening = asyncio.Lock()

    def describe(self) -> str:
        """Bucket, prefix and endpoint (no credentials)."""
        where = self.endpoint_url or "AWS"
        return f"s3://{self.bucket}/{self.prefix} ({where}, {self.region})"

    def key(self, digest: str) -> str:
        """The object key of ``digest``."""
        return f"{self.prefix}/{blob_key(digest)}" if self.prefix else blob_key(digest)

    async def put(self, digest: str, data: bytes) -> None:
        """Upload the object (a second upload of the same digest writes the same bytes)."""
        if len(data) > self.max_bytes:
            raise BlobTooLarge(digest, len(data), self.max_bytes)
        key = self.key(digest)
        await self._run("put", lambda s3: s3.put_object(
            Bucket=self.bucket, Key=key, Body=data, ContentType="application/octet-stream"))

    async def get(self, digest: str) -> bytes | None:
        """The object's bytes; None when it is absent or does not hash to ``digest``."""
        key = self.key(digest)
        return await self._run("get", lambda s3: self._read(s3, digest, key))

    async def delete(self, digests: Sequence[str]) -> None:
        """Delete in batches of 1000; an absent key is reported deleted, a refused one raises."""
        keys = [self.key(d) for d in dict.fromkeys(digests)]
        for at in range(0, len(keys), DELETE_BATCH):
            await self._run("delete", functools.partial(self._delete, keys[at:at + DELETE_BATCH]))

    async def probe(self) -> None:
        """HEAD the bucket: the endpoint answers, the keys are good and the bucket exists."""
        # Needs s3:ListBucket (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadBucket.html).
        await self._run("probe", lambda s3: s3.head_bucket(Bucket=self.bucket))

    async def aclose(self) -> None:
        """Close the connection pool and the threads; a later call opens them again."""
        pool, client = self._pool, self._client
        self._pool = self._client = None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if client is not None:
            await asyncio.to_thread(client.close)

    def _read(self, s3: S3Client, digest: str, key: str) -> bytes | None:
        try:
            answer = s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None  # expired, forgotten or never written: the image is gone
            raise
        body = answer["Body"]
        try:
            size = answer.get("ContentLength", 0)
            if size > self.max_bytes:  # refused before a byte of it is read
                raise BlobTooLarge(digest, size, self.max_bytes)
            # read(n) allocates n bytes up front (http.client): ask for the declared length,
            # or read in 1 MiB pieces up to the cap when none was declared.
            data = body.read(size + 1) if size else _read_pieces(body, self.max_bytes + 1)
        finally:
            body.close()
        if len(data) > self.max_bytes:
            raise BlobTooLarge(digest, len(data), self.max_bytes)
        return data if matches(digest, data) else None

    def _delete(self, keys: list[str], s3: S3Client) -> None:
        answer = s3.delete_objects(Bucket=self.bucket, Delete={
            "Objects": [{"Key": k} for k in keys], "Quiet": True})
        errors = answer.get("Errors") or []
        if errors:  # e.g. AccessDenied for some keys: the index keeps them for the next pass
            raise StoreUnavailable(f"S3 delete refused for {len(errors)} object(s): "
                                   f"{errors[0].get('Code', '?')}")

    def _new_client(self) -> S3Client:
        # A session is not thread-safe and loads service models (slow): made once, off the loop.
        session = boto3.session.Session(
            aws_access_key_id=self._credentials.access_key,
            aws_secret_access_key=self._credentials.secret_key,
            aws_session_token=self._credentials.session_token, region_name=self.region)
        return session.client("s3", endpoint_url=self.endpoint_url, config=self._config)

    async def _open(self) -> tuple[ThreadPoolExecutor, S3Client]:
        async with self._opening:
            if self._pool is None or self._client is None:
                pool = ThreadPoolExecutor(self._threads, thread_name_prefix="s3-blobs")
                try:
                    client = await asyncio.get_running_loop().run_in_executor(pool, self._new_client)
                except BaseException:
                    pool.shutdown(wait=False)
                    raise
                self._pool, self._client = pool, client
            return self._pool, self._client

    async def _run(self, op: str, call: Callable[[S3Client], T]) -> T:
        """``call(client)`` in the pool; anything but a clean answer is StoreUnavailable."""
        try:
            async with asyncio.timeout(self._deadline):
                pool, client = await self._open()
                return await asyncio.get_running_loop().run_in_executor(pool, call, client)
        except ClientError as exc:
            raise StoreUnavailable(f"S3 {op} failed: {_code(exc)}") from exc
        except (BotoCoreError, OSError) as exc:  # unreachable, timed out, TLS, refused
            raise StoreUnavailable(f"S3 {op} failed: {type(exc).__name__}") from exc


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "?"))


def _read_pieces(body: Any, limit: int) -> bytes:
    """At most ``limit`` bytes of ``body``, read a piece at a time."""
    parts: list[bytes] = []
    got = 0
    while got < limit:
        piece = body.read(min(1 << 20, limit - got))
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)
