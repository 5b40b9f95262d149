"""Benchmark (c): 1000 concurrent jobs through JobScheduler against a slow fake upstream.

The fake upstream is an aiohttp server on 127.0.0.1 in a child process (so the figures below are
the bot side only) that sleeps ``--delay`` seconds, then answers a small JSON body. Each job's
work POSTs to it through one shared aiohttp client session, as a provider would.

Run: ``.venv/bin/python bench/bench_jobs.py [--quick]``. Prints figures; asserts nothing.
Default: 1000 jobs, 10 s upstream, global_concurrency 1000 (all in flight) then 50.
``--quick``: 200 jobs, 1 s upstream, limits 200 then 50.
"""

from __future__ import annotations

import argparse
import asyncio
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

from bot.domain import Progress
from bot.jobs import JobScheduler

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """Current resident set size in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 1e6


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size in MB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(who).ru_maxrss * 1024 / 1e6


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] if ordered else 0.0


# -- fake upstream (child process) -----------------------------------------------------------

async def serve(delay: float) -> None:
    """Answer every POST after ``delay`` seconds; print the port, run until stdin closes."""

    async def generate(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(delay)
        return web.json_response({"id": "img-1", "data": [{"url": "https://example.invalid/1"}]})

    app = web.Application()
    app.router.add_post("/v1/generate", generate)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = runner.addresses[0][1]
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


# -- the bot side ----------------------------------------------------------------------------

async def loop_lag(samples: list[float], stop: asyncio.Event) -> None:
    """Measure how late a 10 ms sleep wakes up, until ``stop`` is set."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(0.01)
        samples.append(loop.time() - start - 0.01)


async def one_run(url: str, jobs: int, limit: int, delay: float) -> dict[str, Any]:
    """Submit ``jobs`` jobs from distinct owners at once; collect timings."""
    sched = JobScheduler(global_concurrency=limit, per_user_concurrency=1, per_user_queued=1,
                         queue_size=jobs)
    first_progress: dict[str, float] = {}
    first_stage: dict[str, str] = {}
    submitted: dict[str, float] = {}
    in_flight = peak_in_flight = 0
    progress_events = 0
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None)
    lag: list[float] = []
    stop = asyncio.Event()

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def on_progress(event: Progress) -> None:
            nonlocal progress_events
            progress_events += 1
            if event.job_id not in first_progress:
                first_progress[event.job_id] = time.perf_counter() - submitted[event.job_id]
                first_stage[event.job_id] = event.stage

        async def call_upstream() -> dict[str, Any]:
            nonlocal in_flight, peak_in_flight
            in_flight += 1
            peak_in_flight = max(peak_in_flight, in_flight)
            try:
                async with session.post(url, json={"prompt": "a banana", "size": "1K"}) as resp:
                    resp.raise_for_status()
                    body: dict[str, Any] = await resp.json()
                    return body
            finally:
                in_flight -= 1

        async def job(i: int) -> dict[str, Any]:
            job_id = f"job{i}"
            submitted[job_id] = time.perf_counter()
            return await sched.run(f"user{i}", call_upstream, timeout=delay * 3 + 30,
                                   on_progress=on_progress, job_id=job_id)

        lag_task = asyncio.create_task(loop_lag(lag, stop))
        start = time.perf_counter()
        results = await asyncio.gather(*(job(i) for i in range(jobs)), return_exceptions=True)
        wall = time.perf_counter() - start
        stop.set()
        await lag_task

    errors = [r for r in results if isinstance(r, BaseException)]
    ttfp = list(first_progress.values())
    return {
        "limit": limit, "jobs": jobs, "ok": jobs - len(errors), "errors": len(errors),
        "error_kinds": sorted({type(e).__name__ for e in errors}),
        "wall": wall, "throughput": (jobs - len(errors)) / wall,
        "ttfp_p50": pct(ttfp, 0.5), "ttfp_p99": pct(ttfp, 0.99), "ttfp_max": max(ttfp, default=0),
        "first_queued": sum(1 for s in first_stage.values() if s == "queued"),
        "peak_in_flight": peak_in_flight, "progress_events": progress_events,
        "lag_p99": pct(lag, 0.99), "lag_max": max(lag, default=0.0),
        "rss_now": rss_mb(), "rss_peak": peak_rss_mb(),
    }


def report(r: dict[str, Any], delay: float) -> None:
    """Print one run's figures."""
    ideal = r["jobs"] / (r["jobs"] / r["limit"] * delay) if r["limit"] < r["jobs"] else None
    print(f"\n== {r['jobs']} jobs, global_concurrency={r['limit']}, upstream {delay:g} s ==")
    print(f"  completed            {r['ok']} ok, {r['errors']} failed {r['error_kinds'] or ''}")
    print(f"  wall time            {r['wall']:.2f} s")
    print(f"  throughput           {r['throughput']:.1f} jobs/s"
          + (f"  (ideal {ideal:.1f} at this limit)" if ideal else ""))
    print(f"  peak jobs in flight  {r['peak_in_flight']}")
    print(f"  time-to-first-progress  p50 {r['ttfp_p50'] * 1000:.1f} ms, "
          f"p99 {r['ttfp_p99'] * 1000:.1f} ms, max {r['ttfp_max'] * 1000:.1f} ms "
          f"({r['first_queued']} jobs saw 'queued' first)")
    print(f"  progress events      {r['progress_events']}")
    print(f"  event-loop lag       p99 {r['lag_p99'] * 1000:.1f} ms, max {r['lag_max'] * 1000:.1f} ms")
    print(f"  RSS                  now {r['rss_now']:.0f} MB, peak so far {r['rss_peak']:.0f} MB")


async def bench(url: str, jobs: int, delay: float, limits: list[int]) -> None:
    """Run each limit in turn against the fake upstream at ``url`` and print figures."""
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, aiohttp {aiohttp.__version__}")
    print(f"fake upstream at {url} (child process), delay {delay:g} s")
    print(f"baseline RSS {rss_mb():.0f} MB (interpreter + imports)")
    for limit in limits:
        report(await one_run(url, jobs, limit, delay), delay)


def main() -> None:
    """Parse arguments and run the benchmark (or the fake upstream with --serve)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 jobs, 1 s upstream")
    parser.add_argument("--jobs", type=int, help="number of jobs (default 1000; quick 200)")
    parser.add_argument("--delay", type=float, help="upstream delay in s (default 10; quick 1)")
    parser.add_argument("--limits", help="comma-separated global limits (default JOBS,50)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    jobs = args.jobs or (200 if args.quick else 1000)
    delay = args.delay if args.delay is not None else (1.0 if args.quick else 10.0)
    if args.serve:
        asyncio.run(serve(delay))
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < jobs * 2 + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, jobs * 2 + 100), hard))
    limits = [int(x) for x in args.limits.split(",")] if args.limits else [jobs, 50]
    child = subprocess.Popen([sys.executable, __file__, "--serve", "--delay", str(delay)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdin is not None
    try:
        port = int(child.stdout.readline())
        asyncio.run(bench(f"http://127.0.0.1:{port}/v1/generate", jobs, delay, limits))
    finally:
        child.stdin.close()
        child.wait(timeout=10)
    print(f"\nfake upstream peak RSS {peak_rss_mb(resource.RUSAGE_CHILDREN):.0f} MB (not included)")


if __name__ == "__main__":
    main()
