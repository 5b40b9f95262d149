"""Benchmark (c): 1000 concurrent jobs through JobScheduler against a slow fake upstream.

The fake upstream is an aiohttp server on 127.0.0.1 in a child process (so the figures below are
the bot side only) that sleeps ``--delay`` seconds, then answers what Gemini answers for a 1K
image: a 1.6 MB generateContent body with a 1.5 MB PNG. Each job's work POSTs to it through one
shared aiohttp client session and parses the answer (JSON and base64, in a thread), as a
provider would, so the jobs finishing meanwhile load the process as real ones do.

Time to first progress is measured where a user would see it: the first progress event makes
the call an adapter makes (a Telegram draft: one small POST to the same child, answered at
once), and the clock stops when that call is answered, not when the event is raised.

Each limit runs in a fresh process (``--one``), after a warm-up of its own that is not counted.
A p99 is printed only from 100 samples up, else the max of N.

Run: ``.venv/bin/python bench/bench_jobs.py [--quick]``. Prints figures; asserts nothing.
Default: 1000 jobs, 10 s upstream, global_concurrency 1000 (all in flight) then 50.
``--quick``: 200 jobs, 1 s upstream, limits 200 then 50.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from aiohttp import web

from bench.e2e_fakes import gemini_answer, image_1k
from bot.domain import Progress
from bot.jobs import JobScheduler

PAGE = os.sysconf("SC_PAGE_SIZE")
WARM_UP = 20


def rss_mb() -> float:
    """Current resident set size in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 1e6


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] if ordered else 0.0


def tail(values: list[float]) -> str:
    """p99 from 100 samples up; below that the max of what there is."""
    if len(values) >= 100:
        return f"p99 {pct(values, 0.99) * 1000:.1f} ms"
    return f"max of {len(values)} {max(values, default=0.0) * 1000:.1f} ms"


# -- fake upstream and platform (child process) ------------------------------------------------

async def serve(delay: float) -> None:
    """Answer every generate after ``delay`` seconds with a 1K image, every draft at once."""
    body = gemini_answer(image_1k())

    async def generate(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(delay)
        return web.Response(body=body, content_type="application/json")

    async def draft(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True, "result": True})

    app = web.Application()
    app.router.add_post("/v1/generate", generate)
    app.router.add_post("/sendMessageDraft", draft)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = runner.addresses[0][1]
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


# -- the bot side ----------------------------------------------------------------------------

def parse(raw: bytes) -> int:
    """What a provider does with the answer: JSON, then the image's base64."""
    part = json.loads(raw)["candidates"][0]["content"]["parts"][1]["inlineData"]["data"]
    return len(base64.b64decode(part))


async def loop_lag(samples: list[float], stop: asyncio.Event) -> None:
    """Measure how late a 10 ms sleep wakes up, until ``stop`` is set."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(0.01)
        samples.append(loop.time() - start - 0.01)


async def one_run(base: str, jobs: int, limit: int, delay: float) -> dict[str, Any]:
    """Submit ``jobs`` jobs from distinct owners at once; collect timings."""
    sched = JobScheduler(global_concurrency=limit, per_user_concurrency=1, per_user_queued=1,
                         queue_size=jobs)
    shown: dict[str, float] = {}
    first_stage: dict[str, str] = {}
    submitted: dict[str, float] = {}
    in_flight = peak_in_flight = 0
    progress_events = 0
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None)
    lag: list[float] = []
    stop = asyncio.Event()
    feedback: set[asyncio.Task[None]] = set()

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def show(job_id: str) -> None:
            async with session.post(f"{base}/sendMessageDraft", json={"draft_id": 1}) as resp:
                await resp.read()
            shown[job_id] = time.perf_counter() - submitted[job_id]

        async def on_progress(event: Progress) -> None:
            nonlocal progress_events
            progress_events += 1
            if event.job_id not in first_stage:  # the adapter's first call, in its own task
                first_stage[event.job_id] = event.stage
                task = asyncio.create_task(show(event.job_id))
                feedback.add(task)
                task.add_done_callback(feedback.discard)

        async def call_upstream() -> int:
            nonlocal in_flight, peak_in_flight
            in_flight += 1
            peak_in_flight = max(peak_in_flight, in_flight)
            try:
                async with session.post(f"{base}/v1/generate", json={"prompt": "a banana"}) as resp:
                    resp.raise_for_status()
                    raw = await resp.read()
                return await asyncio.to_thread(parse, raw)
            finally:
                in_flight -= 1

        async def job(i: int) -> int:
            job_id = f"job{i}"
            submitted[job_id] = time.perf_counter()
            return await sched.run(f"user{i}", call_upstream, timeout=delay * 3 + 60,
                                   on_progress=on_progress, job_id=job_id)

        lag_task = asyncio.create_task(loop_lag(lag, stop))
        start = time.perf_counter()
        results = await asyncio.gather(*(job(i) for i in range(jobs)), return_exceptions=True)
        wall = time.perf_counter() - start
        await asyncio.gather(*feedback)
        stop.set()
        await lag_task

    errors = [r for r in results if isinstance(r, BaseException)]
    ttfp = list(shown.values())
    return {
        "limit": limit, "jobs": jobs, "ok": jobs - len(errors), "errors": len(errors),
        "error_kinds": sorted({type(e).__name__ for e in errors}),
        "wall": wall, "throughput": (jobs - len(errors)) / wall,
        "ttfp": ttfp, "first_queued": sum(1 for s in first_stage.values() if s == "queued"),
        "peak_in_flight": peak_in_flight, "progress_events": progress_events, "lag": lag,
        "rss_now": rss_mb(), "rss_peak": peak_rss_mb(),
    }


def report(r: dict[str, Any], delay: float) -> None:
    """Print one run's figures."""
    ideal = r["jobs"] / (r["jobs"] / r["limit"] * delay) if r["limit"] < r["jobs"] else None
    ttfp, lag = r["ttfp"], r["lag"]
    print(f"\n== {r['jobs']} jobs, global_concurrency={r['limit']}, upstream {delay:g} s "
          f"(1K answers), fresh process, after {WARM_UP} warm-up jobs ==")
    print(f"  completed            {r['ok']} ok, {r['errors']} failed {r['error_kinds'] or ''}")
    print(f"  wall time            {r['wall']:.2f} s")
    print(f"  throughput           {r['throughput']:.1f} jobs/s"
          + (f"  (ideal {ideal:.1f} at this limit)" if ideal else ""))
    print(f"  peak jobs in flight  {r['peak_in_flight']}")
    print(f"  time to first progress, shown  p50 {pct(ttfp, 0.5) * 1000:.1f} ms, {tail(ttfp)} "
          f"({r['first_queued']} jobs saw 'queued' first)")
    print(f"  progress events      {r['progress_events']}")
    print(f"  event-loop lag       p50 {pct(lag, 0.5) * 1000:.1f} ms, {tail(lag)}")
    print(f"  RSS                  now {r['rss_now']:.0f} MB, peak {r['rss_peak']:.0f} MB")


async def run_one(base: str, jobs: int, delay: float, limit: int) -> None:
    """This process's one timed run, after a warm-up that is not counted."""
    await one_run(base, WARM_UP, limit, min(delay, 0.2))
    report(await one_run(base, jobs, limit, delay), delay)


def main() -> None:
    """Parse arguments; start the child upstream; run each limit in a fresh process."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 jobs, 1 s upstream")
    parser.add_argument("--jobs", type=int, help="number of jobs (default 1000; quick 200)")
    parser.add_argument("--delay", type=float, help="upstream delay in s (default 10; quick 1)")
    parser.add_argument("--limits", help="comma-separated global limits (default JOBS,50)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args()
    jobs = args.jobs or (200 if args.quick else 1000)
    delay = args.delay if args.delay is not None else (1.0 if args.quick else 10.0)
    if args.serve:
        asyncio.run(serve(delay))
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < jobs * 2 + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, jobs * 2 + 100), hard))
    if args.one is not None:
        asyncio.run(run_one(args.base, jobs, delay, args.one))
        return
    limits = [int(x) for x in args.limits.split(",")] if args.limits else [jobs, 50]
    child = subprocess.Popen([sys.executable, __file__, "--serve", "--delay", str(delay)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdin is not None
    try:
        base = f"http://127.0.0.1:{int(child.stdout.readline())}"
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
              f"aiohttp {aiohttp.__version__}; fake upstream at {base} (child process), "
              f"delay {delay:g} s")
        for limit in limits:
            subprocess.run([sys.executable, __file__, "--one", str(limit), "--base", base,
                            "--jobs", str(jobs), "--delay", str(delay)], check=True)
    finally:
        child.stdin.close()
        child.wait(timeout=10)


if __name__ == "__main__":
    main()
