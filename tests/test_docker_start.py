"""The Docker image's start-up with an empty volume, replayed without Docker: the Dockerfile's
environment, working directory and command, run in an empty folder standing in for /data."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

from tests.test_web_harness import Visitor

DOCKERFILE = Path(__file__).resolve().parent.parent / "Dockerfile"


def image_spec() -> tuple[dict[str, str], str, list[str], list[str]]:
    """(ENV, final WORKDIR, ENTRYPOINT + CMD, EXPOSEd ports) read from the Dockerfile."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    workdir, entry, cmd, ports = "/", [], [], []
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ENV":
            env |= dict(pair.split("=", 1) for pair in shlex.split(rest))
        elif word == "WORKDIR":
            workdir = rest.strip()
        elif word == "ENTRYPOINT":
            entry = json.loads(rest)
        elif word == "CMD":
            cmd = json.loads(rest)
        elif word == "EXPOSE":
            ports += rest.split()
    return env, workdir, entry + cmd, ports


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_empty_volume_starts_the_console(tmp_path: Path) -> None:
    env, workdir, command, ports = image_spec()
    assert command[0] == "imagine-bot" and workdir == "/data"
    assert env["IMAGINE__BOT__DATA_DIR"] == "/data"
    web_port = env["IMAGINE__WEB__LISTEN"].rpartition(":")[2]
    assert env["IMAGINE__WEB__LISTEN"].startswith("0.0.0.0:") and web_port in ports
    assert "9090" in ports
    volume = tmp_path / "data"  # the empty volume
    volume.mkdir()
    port, health = free_port(), free_port()
    # Loopback here instead of 0.0.0.0: the test must not listen beyond this machine.
    replay = {k: v.replace("/data", str(volume)) for k, v in env.items()}
    replay |= {"IMAGINE__WEB__LISTEN": f"127.0.0.1:{port}",
               "IMAGINE__HTTP__LISTEN": f"127.0.0.1:{health}"}
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("IMAGINE") and not k.endswith(("_API_KEY", "_TOKEN"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.cli", *command[1:], cwd=volume, env=base | replay,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    visitor = Visitor(f"http://127.0.0.1:{port}")
    try:
        for _ in range(300):
            try:
                page = await visitor.open("/")
                break
            except OSError:
                assert proc.returncode is None, "the bot exited"
                await asyncio.sleep(0.05)
        assert "Demo mode" in page
    finally:
        await visitor.close()
        proc.terminate()
        raw, _ = await asyncio.wait_for(proc.communicate(), 30)
    out = raw.decode()
    assert re.search(r"web console on http://127\.0\.0\.1:\d+", out), out
    assert "imagine-bot console-token" in out
    token = (volume / "console-token").read_text().strip()
    assert len(token) >= 40 and token not in out  # kept in the volume, never logged
    assert "Traceback" not in out and "PyNaCl" not in out
