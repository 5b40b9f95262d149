"""``imagine-bot usage`` shows revenue by day (Stars, USD-equivalent) next to spend: the packs
sold, refunds, and the margin, after the usage table or alone with ``--revenue`` (CSV too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.bootstrap import build_core
from bot.domain import Actor
from bot.quotas import Price
from bot.shop import Charge
from tests.test_cli import run_cli, run_cli_all

CONFIG = """
[quota]
user_daily_credits = 0

[shop]
usd_per_star = 0.02

[[shop.packs]]
id = "small"
credits = 50
stars = 25
"""


async def seed(tmp_path: Path) -> None:
    """A sale, a job paid with purchased credits, a refunded sale."""
    from bot.config import load_settings

    core = build_core(load_settings(tmp_path / "config.toml"), providers={})
    await core.store.open()
    try:
        alice, bob = Actor("telegram", "1"), Actor("telegram", "2")
        await core.shop.receive(Charge("telegram", "c1", alice, "small", 50, 25, 0.5))
        await core.shop.receive(Charge("telegram", "c2", bob, "small", 50, 25, 0.5))
        res = await core.quotas.reserve(alice, None, Price(10, 0.12))
        await core.quotas.settle(res.id)

        async def refunder(payment: object) -> None:
            """Telegram says yes."""

        core.shop.register_refunder("telegram", refunder)  # type: ignore[arg-type]
        await core.shop.refund(Actor("cli", "operator", is_admin=True), "telegram", "c2")
    finally:
        await core.store.close()


@pytest.fixture
async def seeded(tmp_path: Path) -> Path:
    (tmp_path / "config.toml").write_text(CONFIG)
    await seed(tmp_path)
    return tmp_path


def test_usage_shows_revenue_next_to_spend(seeded: Path) -> None:
    proc = run_cli("usage", cwd=seeded)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    usage, _, revenue = out.partition("revenue by day")
    assert "telegram:1" in usage and "10" in usage  # the job's credits, paid with bought ones
    lines = revenue.strip().splitlines()
    assert lines[1].split() == ["day", "sales", "stars", "refunds", "refunded_stars",
                                "revenue_usd", "spend_usd", "margin_usd"]
    day = lines[2].split()
    assert day[1:] == ["2", "50", "1", "25", "0.5000", "0.1200", "0.3800"]
    assert lines[-1].split()[0] == "total"


def test_revenue_alone_as_csv_and_for_one_user(seeded: Path) -> None:
    proc, one = run_cli_all([("usage", "--revenue", "--csv"), ("usage", "telegram:2", "--revenue")],
                            cwd=seeded)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "day,sales,stars,refunds,refunded_stars,revenue_usd,spend_usd,margin_usd"
    assert lines[1].split(",")[1:] == ["2", "50", "1", "25", "0.5000", "0.1200", "0.3800"]
    row = one.stdout.strip().splitlines()[1].split()
    assert row[1:] == ["1", "25", "1", "25", "0.0000", "0.0000", "0.0000"]


def test_no_sales_no_revenue_table(tmp_path: Path) -> None:
    proc = run_cli("usage", cwd=tmp_path)
    assert proc.returncode == 0 and "revenue by day" not in proc.stdout
    proc = run_cli("usage", "--revenue", cwd=tmp_path)
    assert "(no sales yet)" in proc.stdout
