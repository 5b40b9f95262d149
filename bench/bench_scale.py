"""Benchmark (scale): throughput and added latency of 1, 2 and 3 ``imagine-bot run`` processes.

Each run starts N processes on one fresh PostgreSQL database and one Redis prefix (the machine's
servers, as the tests use them), all receiving Telegram by webhook through a round-robin
balancer (tests/scale_world.py); this process hosts the Bot API fake and plays the users, and a
Gemini upstream answering every generateContent after ``--delay`` s with a 5504x3072 PNG of
about 20 MB serves from a process of its own (bench/e2e_upstream.py). ``--users`` users each
send ``--rounds`` 4K prompts one after the other (a closed loop, so the bot is never short of work). Per run:

- throughput: jobs finished per second of wall time, from the first prompt to the last result;
- added latency: from the user's message to the result (photo and original file) in the chat,
  minus the upstream delay: what the bots add (queueing, decoding, fitting, uploading);
- CPU seconds per job over all the bot processes, and in this process (the fakes: streaming
  each 27 MB answer out and taking each upload in).

At 4K the bot's own work is decoding, fitting and re-encoding the image, which is CPU-bound, so
throughput can grow with processes only while there are cores for them: on a 2-core machine
expect at most about 2x, less what the fakes in this process take. The scaling factor printed is
throughput(N) / throughput(1).

Run: ``.venv/bin/python bench/bench_scale.py [--processes 1 2 3] [--users 12] [--rounds 3]``.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.e2e_bot import proc_cpu, self_cpu
from bench.e2e_fakes import BenchTelegram, Job
from bench.e2e_upstream import RemoteUpstream
from tests.fake_telegram import FakeUser
from tests.scale_world import cluster

FLAGS = {"4K": "--model nano-banana-pro --size 4K --ar 16:9", "1K": ""}


async def user(telegram: BenchTelegram, uid: int, size: str, rounds: int, start_in: float,
               jobs: list[Job]) -> None:
    """One Telegram user sending ``rounds`` prompts, each after the previous result."""
    person = FakeUser(uid, "Bench")
    await asyncio.sleep(start_in)
    for n in range(rounds):
        job = Job(sent=time.monotonic(), want_document=size == "4K")
        telegram.current[person.id] = job
        telegram.user_sends(f"/imagine a lighthouse at dawn {n} {FLAGS[size]}", user=person)
        await asyncio.wait_for(job.done.wait(), 600)
        if job.error:
            raise RuntimeError(f"job refused: {job.error}")
        jobs.append(job)
    telegram.current.pop(person.id, None)


async def run(count: int, args: argparse.Namespace, upstream: RemoteUpstream) -> dict[str, float]:
    """N processes, a warm-up, then the measured closed loop."""
    telegram = BenchTelegram()
    await telegram.start()
    await upstream.set_delay(args.delay)
    ids = iter(range(10_000 + count * 100_000, 10_000_000))
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            where = Path(tmp) if args.logs is None else args.logs / f"n{count}"
            async with cluster(where, count=count, telegram=telegram, discord=None,
                               upstream_url=upstream.url,
                               limits={"global_concurrency": 32, "per_user_queued": 1,
                                       "delivery_budget_mb": args.budget_mb},
                               quota={"user_daily_credits": 1_000_000,
                                      "global_daily_usd": 1_000_000.0}) as world:
                pids = [p.proc.pid for p in world.procs if p.proc is not None]
                warm: list[Job] = []  # first use of codecs and pools, in every process
                await asyncio.gather(*(user(telegram, next(ids), "1K", 1, 0, warm)
                                       for _ in range(2 * count)))
                cpu0, here0 = sum(proc_cpu(pid) for pid in pids), self_cpu() + upstream.cpu()
                jobs: list[Job] = []
                start = time.monotonic()
                spread = args.delay / max(1, args.users)
                await asyncio.gather(*(user(telegram, next(ids), args.size, args.rounds,
                                            i * spread, jobs) for i in range(args.users)))
                wall = time.monotonic() - start
                cpu = sum(proc_cpu(pid) for pid in pids) - cpu0
                here = self_cpu() + upstream.cpu() - here0
    finally:
        await telegram.stop()
    added = [j.finished - j.sent - args.delay for j in jobs]
    return {"processes": count, "jobs": len(jobs), "wall": wall, "throughput": len(jobs) / wall,
            "added_p50": statistics.median(added), "added_p90": sorted(added)[
                int(0.9 * (len(added) - 1))], "cpu_per_job": cpu / len(jobs),
            "harness_per_job": here / len(jobs)}


async def main(args: argparse.Namespace) -> None:
    """Every process count in turn; the figures and the scaling factor."""
    upstream = RemoteUpstream(["1K", "4K"])  # a process of its own (bench/e2e_upstream.py)
    served = await upstream.start()
    print(f"upstream 4K answer {served['sizes']['4K'] / 1e6:.1f} MB JSON (made in "
          f"{served['made']:.1f} s); {os.cpu_count()} CPUs; {args.users} users x "
          f"{args.rounds} rounds at {args.size}, upstream delay {args.delay:.1f} s", flush=True)
    base = None
    try:
        for count in args.processes:
            r = await run(count, args, upstream)
            base = base or r["throughput"]
            print(f"{count} process(es): {r['jobs']:.0f} jobs in {r['wall']:.1f} s = "
                  f"{r['throughput']:.2f} jobs/s (x{r['throughput'] / base:.2f}); added latency "
                  f"p50 {r['added_p50']:.2f} s, p90 {r['added_p90']:.2f} s; CPU "
                  f"{r['cpu_per_job']:.2f} s/job in the bots, {r['harness_per_job']:.2f} s/job "
                  f"in the fakes", flush=True)
    finally:
        await upstream.stop()


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--size", choices=["1K", "4K"], default="4K")
    parser.add_argument("--logs", type=Path, help="keep each process's config and log here")
    parser.add_argument("--budget-mb", type=float, default=256.0,
                        help="[limits] delivery_budget_mb of each process")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
