"""The CLI as an operator uses it: real subprocesses, exit codes, one clear line, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from PIL import Image

from adapters.cli.main import main
from tests.helpers import jpeg, png

Done = subprocess.CompletedProcess[str]


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m adapters.cli ARGS`` in ``cwd`` with a clean environment plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("IMAGINE")}
    base.pop("IMAGE_API_KEY", None)
    return subprocess.run([sys.executable, "-m", "adapters.cli", *args], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60, check=False)


def at_once(*runs: Callable[[], Done]) -> list[Done]:
    """Independent CLI runs at once, each its own process; their results in order.

    A CLI process spends its seconds importing on one core: run in turn, the other core idles.
    """
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(run) for run in runs]
        return [future.result() for future in futures]


def run_cli_all(cases: Sequence[Sequence[str]], cwd: Path) -> list[Done]:
    """``run_cli`` for each of ``cases`` (argument lists) in ``cwd``, at once."""
    return at_once(*(partial(run_cli, *args, cwd=cwd) for args in cases))


def assert_clean_failure(proc: subprocess.CompletedProcess[str]) -> None:
    """A failure prints a short message and never a traceback."""
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.stderr.strip(), "a failure must say what went wrong"


def test_generate_demo_writes_a_png_on_a_fresh_machine(tmp_path: Path) -> None:
    proc = run_cli("generate", "a red fox", "--api", "demo", "--out", "fox.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "fox.png"
    with Image.open(tmp_path / "fox.png") as img:
        assert img.format == "PNG"
        assert img.size == (1024, 1024)


def test_generate_with_size_aspect_and_reference(tmp_path: Path) -> None:
    (tmp_path / "ref.jpg").write_bytes(jpeg(300, 200, "green"))
    proc = run_cli("generate", "a cat", "--api", "demo", "--model", "nano-banana-pro", "--size", "2k",
                   "--aspect", "16:9", "--ref", "ref.jpg", "--out", "out/cat.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / "out" / "cat.png") as img:
        width, height = img.size
    assert width > height and abs(width / height - 16 / 9) < 0.02
    assert width * height > 3_500_000


def test_python_dash_m_and_console_script_agree(tmp_path: Path) -> None:
    assert main(["generate", "a fox", "--api", "demo", "--out", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").stat().st_size > 1000


def test_bad_input_exits_5(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("this is text, not a picture")
    cases = [
        ("generate", "", "--api", "demo"),
        ("generate", "x", "--api", "demo", "--ref", "notes.png"),
        ("generate", "x", "--api", "demo", "--ref", "missing.png"),
        ("generate", "x", "--api", "demo", "--model", "nano-banana-2-lite", "--size", "4K"),
        ("generate", "x", "--api", "demo", "--aspect", "7:3"),
        ("generate", "x", "--model", "no-such-model"),
    ]
    too_many = [arg for i in range(15) for arg in ("--ref", f"r{i}.png")]
    for i in range(15):
        (tmp_path / f"r{i}.png").write_bytes(png(10, 10, "black"))
    *procs, proc = run_cli_all([*cases, ("generate", "x", "--api", "demo", "--model",
                                         "nano-banana", *too_many)], cwd=tmp_path)
    for args, failed in zip(cases, procs, strict=True):
        assert failed.returncode == 5, (args, failed.stderr)
        assert_clean_failure(failed)
    assert proc.returncode == 5  # the retired name means nano-banana-2.1, which takes 14
    assert "at most 14" in proc.stderr


def test_usage_and_configuration_errors_exit_2(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[quota]\ntimezone = "Mars/Olympus"\nuser_daily_credits = -1\n')
    proc, missing = run_cli_all([("generate", "x", "--api", "demo"), (
        "generate", "x", "--api", "gemini", "--config", "/nonexistent.toml")], cwd=tmp_path)
    assert proc.returncode == 2
    assert_clean_failure(proc)
    assert "[quota] timezone = 'Mars/Olympus'" in proc.stderr
    assert "[quota] user_daily_credits = -1" in proc.stderr
    assert missing.returncode == 2 and "not found" in missing.stderr

    (tmp_path / "config.toml").unlink()
    proc, no_prompt = run_cli_all([("generate", "x", "--api", "gemini"), ("generate",)],
                                  cwd=tmp_path)
    assert proc.returncode == 2
    assert "IMAGE_API_KEY" in proc.stderr
    assert_clean_failure(proc)
    assert no_prompt.returncode == 2  # argparse: missing prompt
    assert "Traceback" not in no_prompt.stderr


def test_run_with_nothing_to_serve_explains_what_to_configure(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[web]\nenabled = "off"\n')
    proc = run_cli("run", cwd=tmp_path)
    assert proc.returncode == 2
    assert "[telegram]" in proc.stderr and "TELEGRAM_BOT_TOKEN" in proc.stderr
    assert "[discord]" in proc.stderr and "DISCORD_BOT_TOKEN" in proc.stderr
    assert_clean_failure(proc)


def test_check_names_missing_secrets_and_never_prints_values(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[providers.google]\napi = "gemini"\napi_key_env = "MY_GEMINI_KEY"\n'
        '[telegram]\nenabled = true\ntoken_env = "MY_TG_TOKEN"\n')
    proc = run_cli("check", cwd=tmp_path)
    assert proc.returncode == 2
    assert "MY_GEMINI_KEY" in proc.stdout and "MY_TG_TOKEN" in proc.stdout
    proc = run_cli("check", cwd=tmp_path, env={"MY_GEMINI_KEY": "sk-secret-value-123",
                                              "MY_TG_TOKEN": "42:secret-token-value"})
    assert proc.returncode == 0, proc.stdout
    assert "config ok" in proc.stdout
    assert "secret" not in proc.stdout + proc.stderr


def test_grant_then_usage_reads_the_ledger(tmp_path: Path) -> None:
    proc = run_cli("grant", "telegram:42", "50", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "bonus now 50" in proc.stdout
    proc, one, refused = run_cli_all([("usage", "--csv"), ("usage", "telegram:42"),
                                      ("grant", "fortytwo", "5")], cwd=tmp_path)
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "day,user,jobs,credits,usd,granted"
    assert lines[1].split(",")[1:] == ["telegram:42", "0", "0", "0.0000", "50"]
    assert one.returncode == 0 and "telegram:42" in one.stdout
    assert refused.returncode == 2
    assert_clean_failure(refused)


def test_console_token_is_made_once_and_kept_private(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()  # as `run` leaves it; elsewhere no data dir is invented
    first = run_cli("console-token", cwd=tmp_path)
    assert first.returncode == 0
    token = first.stdout.strip()
    assert len(token) >= 32
    again, env = at_once(partial(run_cli, "console-token", cwd=tmp_path), partial(
        run_cli, "console-token", cwd=tmp_path, env={"IMAGINE_CONSOLE_TOKEN": "from-the-env-123"}))
    assert again.stdout.strip() == token
    assert (tmp_path / "data" / "console-token").stat().st_mode & 0o077 == 0
    assert env.stdout.strip() == "from-the-env-123"


def test_run_with_nothing_configured_serves_the_console(tmp_path: Path) -> None:
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = {k: v for k, v in os.environ.items() if not k.startswith("IMAGINE")}
    proc = subprocess.Popen([sys.executable, "-m", "adapters.cli", "run"], cwd=tmp_path,
                            env={**base, "IMAGINE__WEB__LISTEN": f"127.0.0.1:{port}"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        page = ""
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    page = resp.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert "DEMO" in page or "demo" in page.lower()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
