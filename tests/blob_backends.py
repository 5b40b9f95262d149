"""The blob store under test, once per backend: a local directory, and S3 served by moto.

moto's server runs in this process on 127.0.0.1 with a port the OS picks; every test gets a new
bucket. Credentials are fake and the AWS config files are pointed away, so nothing reaches AWS.
A test module imports the ``*_fixture`` functions (``# noqa: F401``) to use ``objects`` etc.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from bot.blobs import Blobs, LocalBlobs, blob_key
from bot.blobs.s3 import S3Blobs
from bot.bootstrap import build_blobs
from tests.conftest import make_settings

BACKENDS = ("local", "s3")
ACCESS_KEY = "AKIAFAKETESTKEY00001"
SECRET_KEY = "fake/Secret+Key/For/Tests/Only/0123456789"


@pytest.fixture(scope="session", name="s3_endpoint")
def s3_endpoint_fixture() -> Iterator[str]:
    """moto's S3 on loopback for the whole session; its URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(name="aws_env")
def aws_env_fixture(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake keys in the standard variables; no profile, config file or instance metadata."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def raw_client(endpoint: str) -> Any:
    """A plain boto3 client for what the test does behind the store's back."""
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY)


def new_bucket(endpoint: str) -> str:
    """A fresh, empty bucket."""
    name = f"imagine-test-{secrets.token_hex(6)}"
    raw_client(endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(params=BACKENDS, name="backend")
def backend_fixture(request: pytest.FixtureRequest) -> str:
    """Which backend this run of the test uses."""
    return str(request.param)


@pytest.fixture(name="blobs_table")
def blobs_table_fixture(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``[blobs]`` table for the backend under test (empty: the local directory)."""
    if backend == "local":
        return {}
    request.getfixturevalue("aws_env")
    endpoint = request.getfixturevalue("s3_endpoint")
    return {"url": f"s3://{new_bucket(endpoint)}/images", "endpoint_url": endpoint,
            "timeout_seconds": 5, "max_attempts": 2}


MakeBlobs = Callable[..., Blobs]


@pytest.fixture(name="make_objects")
async def make_objects_fixture(blobs_table: dict[str, Any],
                               tmp_path: Path) -> AsyncIterator[MakeBlobs]:
    """``make_objects(**[blobs] keys)``: the backend as the composition root builds it."""
    made: list[Blobs] = []

    def make(**overrides: Any) -> Blobs:
        table = {**blobs_table, **overrides}
        made.append(build_blobs(make_settings(tmp_path / "data", blobs=table)))
        return made[-1]

    yield make
    for built in made:
        await built.aclose()


@pytest.fixture(name="objects")
def objects_fixture(make_objects: MakeBlobs) -> Blobs:
    """The backend with the default settings."""
    return make_objects()


async def stored(objects: Blobs) -> set[str]:
    """Digests whose bytes the backend holds (listed behind its back)."""
    if isinstance(objects, LocalBlobs):
        root = objects.root
        return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()
    assert isinstance(objects, S3Blobs) and objects.endpoint_url

    def listing() -> set[str]:
        pages = raw_client(str(objects.endpoint_url)).get_paginator("list_objects_v2").paginate(
            Bucket=objects.bucket, Prefix=f"{objects.prefix}/")
        return {o["Key"].rsplit("/", 1)[-1] for page in pages for o in page.get("Contents", [])}

    return await asyncio.to_thread(listing)


async def plant(objects: Blobs, digest: str, data: bytes) -> None:
    """Write ``data`` under ``digest`` directly, as a bad disk or another writer might."""
    if isinstance(objects, LocalBlobs):
        path = objects.path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return
    assert isinstance(objects, S3Blobs) and objects.endpoint_url
    await asyncio.to_thread(raw_client(objects.endpoint_url).put_object, Bucket=objects.bucket,
                            Key=f"{objects.prefix}/{blob_key(digest)}", Body=data)
