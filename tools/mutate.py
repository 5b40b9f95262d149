"""A repeatable mutation run over the paths where a silent bug costs money or leaks a secret.

Usage: ``.venv/bin/python tools/mutate.py [--only NAME_PREFIX] [--list] [--timeout S]``

Why hand-written rather than mutmut or cosmic-ray: neither is a dependency of the project (the
run must work offline on any developer machine and in CI with what ``pip install -e .[dev]``
brings), and both mutate every operator in a file, which on these modules means hundreds of
runs of slow end-to-end tests. Here each mutant is one deliberate, plausible bug on the money
path (quotas, delivery), the scheduler, fitting, masking, conversation lookup and the platform
limits, with the test files that must catch it. Each mutant is applied to a private copy of the
tree (other people keep working in the checkout), its tests run, and it counts as killed when
they fail or time out. Equivalent mutants are not listed; the argument for any left out is in
``EQUIVALENT`` below. Exit status 1 when a mutant survives.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"


@dataclass(frozen=True, slots=True)
class Mutant:
    """One bug: ``old`` (exactly once in ``path``) becomes ``new``; ``tests`` must catch it."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


QUOTAS = ("tests/test_quotas.py",)
DELIVERY = ("tests/test_service.py", "tests/test_budget.py")
JOBS = ("tests/test_jobs.py",)
FIT = ("tests/test_fit_budget_edges.py", "tests/test_images.py")
REDACT = ("tests/test_redact.py",)
CONVERSATIONS = ("tests/test_conversations.py",)
DISCORD = ("tests/test_discord_rules.py",)
TELEGRAM = ("tests/test_telegram_rules.py",)
HANDOFF = ("tests/test_handoff.py",)

MUTANTS: tuple[Mutant, ...] = (
    # ----- quotas: reserve -> settle | refund
    Mutant("quotas.free_left_ignores_month", "bot/quotas.py",
           "free_left = max(0, min(day_left, month_left))", "free_left = max(0, day_left)", QUOTAS),
    Mutant("quotas.bonus_check_off_by_one", "bot/quotas.py",
           "if take_bonus > bonus:", "if take_bonus > bonus + 1:", QUOTAS),
    Mutant("quotas.chat_pool_allows_overdraw", "bot/quotas.py",
           "if used + cost > self._cfg.chat_daily_credits:",
           "if used > self._cfg.chat_daily_credits:", QUOTAS),
    Mutant("quotas.global_cap_ignores_price", "bot/quotas.py",
           "if spent + price.usd > self._cfg.global_daily_usd + 1e-9:",
           "if spent > self._cfg.global_daily_usd + 1e-9:", QUOTAS),
    Mutant("quotas.admins_not_exempt", "bot/quotas.py",
           "return actor.key in self._admins", "return False", QUOTAS),
    Mutant("quotas.refund_keeps_credits", "bot/quotas.py",
           "credits=-res.credits if refund else 0,", "credits=0,", QUOTAS),
    Mutant("quotas.refund_keeps_bonus", "bot/quotas.py",
           "bonus=res.bonus if refund else 0,", "bonus=0,", QUOTAS),
    Mutant("quotas.close_twice", "bot/storage/sqlite_tx.py",
           "closed_at = ? WHERE id = ? AND state = 'held'", "closed_at = ? WHERE id = ?", QUOTAS),
    Mutant("quotas.stale_not_refunded", "bot/quotas.py",
           'count += await self.refund(res.id, "stale at start-up")', "count += 1", QUOTAS),
    Mutant("quotas.grant_below_zero", "bot/quotas.py",
           "amount = max(credits, -await tx.bonus(actor_key))", "amount = credits", QUOTAS),
    # ----- delivery: sent settles, anything else refunds
    Mutant("delivery.bind_refunds_instead", "bot/delivery.py",
           "await self.quotas.settle(pending.reservation_id)",
           'await self.quotas.refund(pending.reservation_id, "x")', DELIVERY),
    Mutant("delivery.undeliverable_keeps_credits", "bot/delivery.py",
           'await self.quotas.refund(pending.reservation_id, "undeliverable")', "pass", DELIVERY),
    Mutant("delivery.undeliverable_keeps_turn", "bot/delivery.py",
           "        await self.conversations.delete(turn_id)\n\n    async def abandon",
           "\n    async def abandon", DELIVERY),
    Mutant("delivery.abandon_keeps_credits", "bot/delivery.py",
           "await self.quotas.refund(pending.reservation_id, reason)", "pass", DELIVERY),
    Mutant("delivery.failed_before_store_keeps_credits", "bot/delivery.py",
           "        await deliveries.quotas.refund(pending.reservation_id, reason)",
           "        pass", DELIVERY),
    # ----- scheduler
    Mutant("jobs.global_limit_ignored", "bot/jobs.py",
           "can_start = (self._running < self._global and",
           "can_start = (True and", JOBS),
    Mutant("jobs.per_user_limit_ignored", "bot/jobs.py",
           "and len(slot.running) < self._per_user\n",
           "and True\n", JOBS),
    Mutant("jobs.queue_size_ignored", "bot/jobs.py",
           "if self._queued >= self._queue_size or", "if False or", JOBS),
    Mutant("jobs.no_timeout", "bot/jobs.py",
           "job.timer = loop.call_later(job.timeout, self._expire, job)", "job.timer = None", JOBS),
    Mutant("jobs.timeout_reported_as_cancel", "bot/jobs.py",
           'if job.reason == "timeout":', 'if job.reason == "never":', JOBS),
    Mutant("jobs.slot_not_freed", "bot/jobs.py",
           "        self._running -= 1\n        self._forget(job.owner)",
           "        self._forget(job.owner)", JOBS),
    Mutant("jobs.fifo_becomes_lifo", "bot/jobs.py",
           "job = slot.queue.popleft()", "job = slot.queue.pop()", JOBS),
    Mutant("jobs.no_round_robin", "bot/jobs.py",
           "            if slot.queue:\n                self._ring[owner] = None",
           "            if slot.queue:\n                self._ring = {owner: None, **self._ring}",
           JOBS),
    Mutant("jobs.positions_off_by_one", "bot/jobs.py",
           "                position += 1\n", "                position += 2\n", JOBS),
    # ----- fitting
    Mutant("fit.five_percent_over", "bot/images.py",
           "size > budget.max_bytes:", "size > budget.max_bytes * 1.05:", FIT),
    Mutant("fit.twice_the_budget", "bot/images.py",
           "size > budget.max_bytes:", "size > budget.max_bytes * 2:", FIT),
    Mutant("fit.any_format_passes", "bot/images.py",
           "mime not in budget.formats or", "False or", FIT),
    Mutant("fit.ratio_ignored", "bot/images.py",
           "(budget.max_ratio is None or max(w, h) / min(w, h) <= budget.max_ratio))",
           "True)", FIT),
    Mutant("fit.encode_over_budget", "bot/images.py",
           "            if buf.tell() <= max_bytes:", "            if True:", FIT),
    # ----- masking
    Mutant("redact.shortest_first", "bot/redact.py",
           "return sorted(values, key=len, reverse=True)", "return sorted(values, key=len)",
           REDACT),
    Mutant("redact.one_secret_at_a_time", "bot/redact.py",
           "            if s < end:", "            if False:", REDACT),
    Mutant("redact.first_occurrence_only", "bot/redact.py",
           "                at = text.find(value, at + 1)", "                at = -1", REDACT),
    Mutant("redact.short_values_masked", "bot/redact.py",
           "if len(v) >= _MIN_LEN}, key", "if v}, key", REDACT),
    # ----- conversation lookup
    Mutant("conversations.history_unbounded", "bot/conversations.py",
           "while current and len(chain) < self._history_turns:", "while current:",
           CONVERSATIONS),
    Mutant("conversations.newest_first", "bot/conversations.py",
           "return list(reversed(chain))", "return chain", CONVERSATIONS),
    Mutant("conversations.expired_turns_kept", "bot/conversations.py",
           "            if inputs is None or outputs is None:\n                continue",
           "            if inputs is None or outputs is None:\n                inputs = outputs = ()",
           CONVERSATIONS),
    Mutant("conversations.lookup_ignores_binding", "bot/conversations.py",
           "return await self._store.get_turn(turn_id) if turn_id else None",
           "return None", CONVERSATIONS),
    # ----- platform limits the fakes now enforce
    Mutant("discord.no_clip", "adapters/discord/deliver.py",
           'return text if len(text) <= limit else text[: limit - 1] + "…"', "return text",
           DISCORD),
    Mutant("telegram.no_callback_updates", "adapters/telegram/app.py",
           'ALLOWED_UPDATES = ["message", "callback_query"]', 'ALLOWED_UPDATES = ["message"]',
           TELEGRAM),
    # ----- queued jobs handed over between processes (bot/handoff.py): made once, paid once
    Mutant("handoff.starts_without_its_ticket", "bot/handoff.py",
           "if not await self._store.take_back(ticket.id, self.owner):",
           "if not await self._store.take_back(ticket.id, self.owner) and False:", HANDOFF),
    Mutant("handoff.claim_keeps_dead_holds", "bot/handoff.py",
           "        await self._quotas.refund_stale()\n", "", HANDOFF),
    Mutant("handoff.drain_drops_the_ticket", "bot/handoff.py",
           "                    kept = True\n", "", HANDOFF),
    Mutant("handoff.pg_claims_from_anyone", "bot/storage/postgres_handoffs.py",
           "WHERE id = $2 AND owner = $3", "WHERE id = $2 AND $3 = $3", HANDOFF),
    Mutant("handoff.sqlite_claims_live_owners", "bot/storage/sqlite_handoffs.py",
           "            if row[\"leased\"] is not None and await asyncio.to_thread(",
           "            if False and await asyncio.to_thread(", HANDOFF),
)

#: Mutants considered and left out because no test can tell them apart, each with the argument.
EQUIVALENT: dict[str, str] = {
    "redact.redactor_shortest_first": (
        "Redactor sorts its values longest first, but it masks the union of every occurrence's "
        "span, so the order in which values are searched cannot change its output."),
}


def _copy(into: Path) -> None:
    """The tracked and new (not ignored) files of the checkout, copied into ``into``."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            dst = into / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def _pytest(tree: Path, tests: tuple[str, ...], timeout: float) -> str:
    """'pass', 'fail' or 'timeout' for ``tests`` run in ``tree``."""
    cmd = [str(PYTHON), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        done = subprocess.run(cmd, cwd=tree, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return "timeout"
    return "pass" if done.returncode == 0 else "fail"


def main() -> int:
    """Run every (or the chosen) mutant; print one line each and the kill rate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run mutants whose name starts with this")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per test run")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if m.name.startswith(args.only)]
    if args.list:
        for m in chosen:
            print(f"{m.name:45} {m.path:30} {' '.join(m.tests)}")
        return 0
    with tempfile.TemporaryDirectory(prefix="imagine-mutate-") as tmp:
        tree = Path(tmp)
        _copy(tree)
        for group in sorted({m.tests for m in chosen}):
            if (status := _pytest(tree, group, args.timeout)) != "pass":
                print(f"baseline {' '.join(group)}: {status}; fix the suite first")
                return 2
        survivors = []
        for m in chosen:
            target = tree / m.path
            original = target.read_text()
            if original.count(m.old) != 1:
                print(f"{m.name}: the code changed ({m.old!r} found {original.count(m.old)}x)")
                return 2
            target.write_text(original.replace(m.old, m.new))
            started = time.monotonic()
            try:
                status = _pytest(tree, m.tests, args.timeout)
            finally:
                target.write_text(original)
            verdict = "survived" if status == "pass" else f"killed ({status})"
            print(f"{m.name:45} {verdict:18} {time.monotonic() - started:6.1f} s", flush=True)
            if status == "pass":
                survivors.append(m.name)
    killed = len(chosen) - len(survivors)
    print(f"killed {killed}/{len(chosen)} ({100 * killed / max(1, len(chosen)):.0f} %); "
          f"equivalent, not run: {len(EQUIVALENT)}")
    for name in survivors:
        print(f"SURVIVED: {name}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
