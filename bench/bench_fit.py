"""Benchmarks for bot.images: (a) fitting 1K/2K/4K results, (b) event-loop lag during 20 4K fits.

Run: ``.venv/bin/python bench/bench_fit.py [--quick]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import PIL
from PIL import Image, ImageChops

from bot import images
from bot.domain import ImageData
from bot.images import Budget, fit

BUDGETS = {
    "telegram-photo": Budget(max_bytes=10_000_000, max_side=2560, max_sum_wh=10_000, max_ratio=20),
    "discord": Budget(max_bytes=10 * 1024 * 1024),
    "jpeg-only": Budget(max_bytes=10 * 1024 * 1024, formats=("image/jpeg",)),
}
SIZES = {"1K": (1024, 1024), "2K": (2048, 2048), "4K": (4096, 4096), "4K-16:9": (5504, 3072)}
PAGE = os.sysconf("SC_PAGE_SIZE")


def photo_png(w: int, h: int, bits: int) -> bytes:
    """A Gemini-like PNG result: smooth gradients plus ``bits`` bits of per-channel noise."""
    gx = Image.linear_gradient("L").resize((w, h))
    gy = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize((w, h))
    mask = (1 << bits) - 1

    def noise() -> Image.Image:
        return Image.frombytes("L", (w, h), os.urandom(w * h)).point(lambda v: v & mask)

    im = Image.merge("RGB", (ImageChops.add(gx, noise()), ImageChops.add(gy, noise()),
                             ImageChops.add(ImageChops.invert(gx), noise())))
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def rss() -> int:
    """Current resident set size in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class RssPeak:
    """Samples RSS every 2 ms in a thread; ``peak`` is the highest value seen."""

    def __init__(self) -> None:
        self.base = rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss())

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def bench_fit(results: dict[str, bytes], runs: int) -> None:
    """(a) Sequential fit of each result size to each budget: median, p99, peak memory."""
    print(f"\n(a) fit() of PNG results, {runs} timed runs each, one at a time; memory from "
          "one more run (RSS sampled every 2 ms above the run's start; py = tracemalloc)")
    print(f"{'result':9} {'input':>9} {'budget':15} {'output':>22} {'median':>9} {'p99':>9} "
          f"{'peak RSS +':>11} {'py peak':>8}")
    for label, data in results.items():
        for bname, budget in BUDGETS.items():
            image = ImageData(data, "image/png", name="result.png")
            times: list[float] = []
            out = image
            for _ in range(runs):  # timed runs: no tracing, no sampler thread
                start = time.perf_counter()
                out = await fit(image, budget)
                times.append((time.perf_counter() - start) * 1000)
            tracemalloc.start()
            with RssPeak() as mem:  # one more run, for memory only
                await fit(image, budget)
            _, py_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            shown = "pass-through" if out is image else (
                f"{out.width}x{out.height} {out.size_bytes / 1e6:.1f}MB")
            print(f"{label:9} {len(data) / 1e6:7.1f}MB {bname:15} {shown:>22} "
                  f"{statistics.median(times):7.1f}ms {pct(times, 99):7.1f}ms "
                  f"{(mem.peak - mem.base) / 1e6:9.0f}MB {py_peak / 1e6:6.0f}MB")


async def measure_lag(work: Callable[[], Awaitable[Any]]) -> tuple[list[float], float]:
    """Run ``work`` while a ticker sleeps 5 ms at a time; returns the lags (ms) and wall time."""
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            start = loop.time()
            await asyncio.sleep(0.005)
            lags.append((loop.time() - start - 0.005) * 1000)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    start = time.perf_counter()
    await work()
    wall = time.perf_counter() - start
    done.set()
    await task
    return lags, wall


async def bench_lag(variant: str, count: int = 20) -> None:
    """(b) Event-loop lag while ``count`` 4K results are fitted concurrently (fresh process)."""
    bits = 5 if variant == "detail" else 2
    data = photo_png(*SIZES["4K-16:9"], bits) if bits == 2 else photo_png(4096, 4096, bits)
    if variant == "to-thread":
        images._run = to_thread_run
    label = {"pool": "bounded pool, 4K-16:9 (21 MB PNG)", "detail": "bounded pool, 4K-detail",
             "to-thread": "asyncio.to_thread, 4K-16:9"}[variant]
    budgets = [BUDGETS["telegram-photo"], BUDGETS["discord"]]

    async def work() -> None:
        await asyncio.gather(*(fit(ImageData(data, "image/png"), budgets[i % 2])
                               for i in range(count)))

    with RssPeak() as mem:
        lags, wall = await measure_lag(work)
    print(f"{label:34} lag p50 {pct(lags, 50):4.1f}ms  p99 {pct(lags, 99):5.1f}ms  "
          f"max {max(lags):5.1f}ms | {count} fits in {wall:4.1f}s ({count / wall:3.1f}/s) | "
          f"peak RSS {mem.peak / 1e6:4.0f}MB (+{(mem.peak - mem.base) / 1e6:.0f}MB over the "
          "inputs)", flush=True)


async def to_thread_run(fn: Callable[..., Any], *args: object) -> Any:
    """The naive alternative: unbounded ``asyncio.to_thread`` (default executor)."""
    return await asyncio.to_thread(fn, *args)


async def part_a(runs: int) -> None:
    """Build the inputs, then run (a)."""
    start = time.perf_counter()
    results = {label: photo_png(w, h, 2) for label, (w, h) in SIZES.items()}
    results["4K-detail"] = photo_png(4096, 4096, 5)
    print(f"inputs built in {time.perf_counter() - start:.1f}s (PNG, compress_level 1; "
          "'detail' has 5 noise bits per channel)")
    await bench_fit(results, runs)


def main() -> None:
    """Run (a) here and each (b) variant in a fresh process, so its memory figures are clean."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs, for a smoke test")
    parser.add_argument("--lag", choices=("pool", "detail", "to-thread"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lag:
        asyncio.run(bench_lag(args.lag))
        return
    runs = 3 if args.quick else 15
    print(f"Pillow {PIL.__version__}, {os.cpu_count()} CPUs, image pool of "
          f"{os.cpu_count()} threads, {'quick' if args.quick else 'full'} run, load average "
          f"{os.getloadavg()[0]:.1f} at start", flush=True)
    asyncio.run(part_a(runs))
    print("\n(b) event-loop lag: a ticker sleeps 5 ms at a time while 20 4K results are fitted "
          "concurrently (alternating telegram-photo and discord budgets), one process each",
          flush=True)
    variants = ["pool", "detail"] if args.quick else ["pool", "detail", "to-thread"]
    for variant in variants:
        subprocess.run([sys.executable, __file__, "--lag", variant], check=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end (other processes skew figures)")


if __name__ == "__main__":
    main()
