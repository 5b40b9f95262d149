"""A whole Core on each blob backend (settings as an operator writes them): a job's result is
stored, fetched for an edit, pruned and forgotten; with S3 out of reach the user hears that the
bot cannot save and keeps the credits."""

from __future__ import annotations

import logging
import socket
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.blobs.s3 import S3Blobs
from bot.config import Settings
from tests.blob_backends import (  # noqa: F401 - fixtures
    aws_env_fixture,
    backend_fixture,
    blobs_table_fixture,
    new_bucket,
    raw_client,
    s3_endpoint_fixture,
    stored,
)
from tests.conftest import make_settings
from tests.helpers import FakeClock, png_data
from tests.outcomes import jobs
from tests.test_service import ALICE, BOB, EN, FakeProvider, ask, delivered, kinds, running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2025, 3, 1, 9, 0, tzinfo=UTC))


def settings_for(tmp_path: Path, blobs: dict[str, Any]) -> Settings:
    return make_settings(tmp_path / "data", blobs=blobs, bot={"retention_days": 7})


async def test_result_stored_edited_pruned_and_forgotten(blobs_table: dict[str, Any],
                                                         tmp_path: Path, clock: FakeClock) -> None:
    provider = FakeProvider()
    async with running(settings_for(tmp_path, blobs_table), clock=clock,
                       providers={"demo": provider}) as core:
        objects = core.conversations.blobs.objects
        assert isinstance(objects, S3Blobs) == bool(blobs_table)
        first = await jobs(core).imagine(replace(ask("a fox"), references=(png_data(),)))
        message = await delivered(core, first)
        turn = await core.conversations.get(first.turn_id or "")
        assert turn is not None
        assert await stored(objects) == {*turn.input_hashes, *turn.output_hashes}

        # The edit reads the earlier turn's images back from the store for the model.
        edit = await jobs(core).edit(ask("now at night"), reply_to=message)
        assert edit.ok, edit.text
        history = provider.requests[-1].history
        assert [h.prompt for h in history] == ["a fox"]
        assert history[0].outputs == provider.outcome().images
        assert history[0].inputs[0].data == (await core.conversations.inputs(turn) or ())[0].data

        # A week unused: retention removes the bytes, and an edit of that turn is refused free.
        clock.advance(days=8)
        night = await core.conversations.get(edit.turn_id or "")
        assert night is not None
        held = {*turn.input_hashes, *turn.output_hashes, *night.output_hashes}
        assert await core.conversations.blobs.prune() == len(held)
        assert await stored(objects) == set()
        before = await core.store.ledger()
        late = await jobs(core).edit(ask("add stars"), reply_to=message)
        assert late.error == "error.not_found"
        assert await core.store.ledger() == before

        # Forget removes what a newer job stored, and leaves another user's images.
        mine = await jobs(core).imagine(ask("a cat"))
        theirs = await jobs(core).imagine(ask("a dog", actor=BOB))
        assert mine.ok and theirs.ok
        assert await core.service.forget(ALICE) == 3
        bob_turn = await core.conversations.get(theirs.turn_id or "")
        assert bob_turn is not None
        assert await stored(objects) == set(bob_turn.output_hashes)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_s3_refunds_and_says_so(aws_env: None, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    down = {"url": "s3://imagine-images/prod", "endpoint_url": f"http://127.0.0.1:{closed_port()}",
            "timeout_seconds": 1, "max_attempts": 1}
    caplog.set_level(logging.ERROR, logger="bot.bootstrap")
    async with running(settings_for(tmp_path, down), providers={"demo": FakeProvider()}) as core:
        assert "image store s3://imagine-images/prod" in caplog.text  # start goes on, says why
        reply = await jobs(core).imagine(ask("a fox"))
        assert reply.error == "error.store"
        assert reply.text == EN["error.store"]
        assert await kinds(core) == ["reserve", "refund"]
        assert (await core.service.usage(ALICE)).window("user_daily").used == 0  # type: ignore[union-attr]


async def test_a_bucket_gone_mid_run_refuses_the_edit_free(aws_env: None, s3_endpoint: str,
                                                           tmp_path: Path) -> None:
    bucket = new_bucket(s3_endpoint)
    table = {"url": f"s3://{bucket}/prod", "endpoint_url": s3_endpoint, "max_attempts": 1}
    async with running(settings_for(tmp_path, table), providers={"demo": FakeProvider()}) as core:
        message = await delivered(core, await jobs(core).imagine(ask("a fox")))
        client = raw_client(s3_endpoint)
        for key in await stored(core.conversations.blobs.objects):
            client.delete_object(Bucket=bucket, Key=f"prod/{key[:2]}/{key}")
        client.delete_bucket(Bucket=bucket)  # the operator's mistake, or a revoked key
        before = await core.store.ledger()
        edit = await jobs(core).edit(ask("at night"), reply_to=message)
        assert edit.error == "error.store"
        assert await core.store.ledger() == before  # read before any credit was held
