"""Start-up warm-up: what the first job would build lazily is built before any job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# In a fresh interpreter (this process has long loaded every Pillow plugin): nothing is
# loaded after build_core, everything is after warm_up; then the start-up heap is frozen, so a
# full collection walks only what jobs make (bot/warmup.py::tuned_collector).
SCRIPT = """
import asyncio, gc, os, sys
from PIL import Image
from bot import images
from bot.bootstrap import build_core
from tests.conftest import make_settings
from bot.warmup import YOUNG_GENERATION, tuned_collector, warm_up

async def main():
    core = build_core(make_settings(__import__("pathlib").Path(sys.argv[1])))
    await core.start()
    before = ("WEBP" in Image.SAVE, images._pool is not None)
    seconds = await warm_up(core)
    pool = images._pool
    after = ("WEBP" in Image.SAVE and "GIF" in Image.OPEN, pool is not None and
             len(pool._threads) >= 1)
    with tuned_collector() as frozen:
        # what start-up built is out of every later collection's walk
        walked = len(gc.get_objects())
        young = gc.get_threshold()[0]
    await core.stop(grace=0)
    print(before, after, seconds < 10, frozen > 20 * walked, young == YOUNG_GENERATION)

asyncio.run(main())
"""


def test_warm_up_loads_codecs_and_starts_the_pools_and_the_heap_is_frozen(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "data")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "(False, False) (True, True) True True True", done.stdout
