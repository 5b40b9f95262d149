"""What the first user's job would otherwise build, built at start; the collector set for a long run."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image

from bot import images
from bot.bootstrap import Core
from bot.domain import ImageData
from bot.images import Budget
from bot.messages import LOCALES

log = logging.getLogger(__name__)

#: Formats results and references come in and go out as; each Pillow plugin loads on first use
#: (the first WebP save took 23 ms, the first PNG save 8 ms, then well under 1 ms each).
_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")


def _pillow() -> None:
    """Load Pillow's codecs: one tiny save and load per format."""
    tile = Image.new("RGB", (16, 16), (120, 60, 30))
    for fmt in _FORMATS:
        out = io.BytesIO()
        tile.save(out, fmt)
        with Image.open(io.BytesIO(out.getvalue())) as again:
            again.load()


#: Allocations between young collections (CPython's default is 700). A job's objects live as
#: long as its upstream call (seconds), past any young collection, so a bigger young generation
#: costs no more promotions; full collections, which walk every live object (~100 ms with 500
#: jobs in flight), come after ten times as many allocations. bench_e2e, 500 users: no full
#: collection while timed, the worst result 1.3-1.6x its bound (was 1.8-4.0x), the longest
#: young pause 11 ms, and the middle generation's 39 ms.
YOUNG_GENERATION = 7000


@contextmanager
def tuned_collector() -> Iterator[int]:
    """Freeze what start-up built out of every later collection, widen the young generation.

    Modules, classes, catalogs and clients (about 120k objects) live as long as the process, yet
    every full collection walked them again: 30-55 ms of each pause, the event loop stopped while
    results wait (gc.DEBUG_STATS in bench_e2e's 500 users, where the jobs in flight add ~150k
    more). gc.freeze moves them to the permanent generation, which collections skip
    (https://docs.python.org/3/library/gc.html#gc.freeze). Yields how many objects were frozen;
    on leaving, the collector is as it was.
    """
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GENERATION, *before[1:])
    try:
        yield gc.get_freeze_count()
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


async def warm_up(core: Core) -> float:
    """Pillow codecs, the image and default thread pools, the catalogs, one store read.

    Returns the seconds it took (logged). Nothing here reaches the network.
    """
    started = time.monotonic()
    await asyncio.to_thread(_pillow)
    # Spawn the default pool's threads now (JSON, hashing, file writes go there), not per job.
    await asyncio.gather(*(asyncio.to_thread(time.sleep, 0.005)
                           for _ in range(min(32, (os.cpu_count() or 1) + 4))))
    # The image pool (fitting, probing) starts its threads the same way.
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(out, "PNG")
    tiny = ImageData(data=out.getvalue(), mime="image/png")
    budget = Budget(max_bytes=1_000_000, formats=("image/jpeg",))
    await asyncio.gather(*(images.fit(tiny, budget) for _ in range(os.cpu_count() or 2)))
    for locale in LOCALES:
        core.presenter.caption(locale, prompt="warm-up", model="-", size="1K", aspect="1:1",
                               credits=1, left=1, exempt=False, demo=False)
        core.messages.t(locale, "progress.started", elapsed=0)
    await core.store.get_user("cli:warmup")
    seconds = time.monotonic() - started
    log.info("warmed up in %.0f ms", seconds * 1000)
    return seconds
