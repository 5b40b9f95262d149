"""``generate --out`` writes where an operator expects, and CLI errors speak to an operator:
what failed, which flag or setting, what to do; never the chat's wording."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from PIL import Image

from adapters.cli.main import main
from bot.outfiles import OutputRefused, Target, paths, plan, slug
from tests.fake_upstream import (
    FakeUpstream,
    Reply,
    fake_upstream_fixture,  # noqa: F401
    gemini_body,
)
from tests.helpers import png_data
from tests.test_cli_providers import KEY, cli_env  # noqa: F401

CHAT_WORDS = ("the operator has been told", "/imagine", "Nothing was charged")


async def run(*args: str) -> int:
    """``imagine-bot ARGS`` in a thread; returns the exit code."""
    return await asyncio.to_thread(main, list(args))


def fmt(path: Path) -> str:
    """The image format Pillow reads from the file."""
    with Image.open(path) as img:
        return str(img.format)


async def test_out_directory_suffix_force_and_default_names(cli_env: Path,  # noqa: F811
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    demo = ("--api", "demo")
    assert await run("generate", "a red fox", *demo) == 0
    assert (cli_env / "imagine-a-red-fox.png").is_file()  # no --out: a name from the prompt
    assert await run("generate", "a red fox", *demo) == 0
    assert (cli_env / "imagine-a-red-fox-2.png").is_file()  # made-up names never overwrite
    capsys.readouterr()

    assert await run("generate", "a red fox", *demo, "--out", "shots/") == 0
    assert capsys.readouterr().out.strip() == str(Path("shots") / "imagine-a-red-fox.png")
    (cli_env / "existing").mkdir()
    assert await run("generate", "一只红狐狸", *demo, "--out", "existing") == 0
    assert (cli_env / "existing" / "imagine-一只红狐狸.png").is_file()

    for name, expected in (("fox.jpg", "JPEG"), ("fox.jpeg", "JPEG"), ("fox.webp", "WEBP"),
                           ("fox.PNG", "PNG")):
        assert await run("generate", "a fox", *demo, "--out", name) == 0, name
        assert fmt(cli_env / name) == expected
    capsys.readouterr()

    before = (cli_env / "fox.jpg").read_bytes()
    assert await run("generate", "another fox", *demo, "--out", "fox.jpg") == 2
    err = capsys.readouterr().err
    assert "--out fox.jpg: the file exists; pass --force" in err and "Traceback" not in err
    assert (cli_env / "fox.jpg").read_bytes() == before
    assert await run("generate", "another fox", *demo, "--out", "fox.jpg", "--force") == 0
    assert (cli_env / "fox.jpg").read_bytes() != before and fmt(cli_env / "fox.jpg") == "JPEG"

    assert await run("generate", "a fox", *demo, "--out", "fox.gif") == 2
    assert ".gif is not an image format this can write" in capsys.readouterr().err
    assert not (cli_env / "fox.gif").exists()


def test_several_images_get_numbered_names(tmp_path: Path) -> None:
    two = (png_data(color="red"), png_data(color="blue"))
    named = Target(tmp_path, tmp_path / "set.webp")
    assert paths(named, "x", two) == [tmp_path / "set-1.webp", tmp_path / "set-2.webp"]
    assert [p.name for p in paths(Target(tmp_path), "Two cats!", two)] == [
        "imagine-two-cats-1.png", "imagine-two-cats-2.png"]
    (tmp_path / "set-2.webp").write_bytes(b"x")
    with pytest.raises(OutputRefused, match=r"set-2\.webp exists; pass --force"):
        paths(named, "x", two)
    assert len(paths(Target(tmp_path, tmp_path / "set.webp", force=True), "x", two)) == 2
    assert slug("   ") == "imagine" and slug("A/B\\C..D") == "imagine-a-b-c-d"
    assert plan(str(tmp_path)).file is None and plan(str(tmp_path / "new") + "/").file is None


async def test_errors_name_the_flag_or_setting_not_the_chat(
        fake_upstream: FakeUpstream, cli_env: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    gemini = ("--api", "gemini", "--base-url", fake_upstream.url)
    cases: list[tuple[tuple[str, ...], int, str]] = [
        (("generate", "  ", "--api", "demo"), 5, 'the prompt is empty: give it as the first argument'),
        (("generate", "x", "--api", "demo", "--model", "nano-banana-2-lite", "--size", "4K"), 5,
         "--size 4K is not available: choose one of 1K"),
        (("generate", "x", "--api", "demo", "--ref", "missing.png"), 5, "--ref: cannot read"),
    ]
    fake_upstream.push("gemini", Reply(status=401, json={"error": {
        "code": 401, "message": "API key not valid", "status": "UNAUTHENTICATED"}}))
    cases.append((("generate", "x", *gemini), 4, "check the key in IMAGE_API_KEY and --base-url"))
    fake_upstream.push("gemini", Reply(json=gemini_body([{"text": "Which fox?"}])))
    cases.append((("generate", "x", *gemini), 3,
                  'the model answered without an image: "Which fox?"; rephrase the prompt'))
    for args, code, expected in cases:
        assert await run(*args) == code, args
        err = capsys.readouterr().err
        assert expected in err, err
        assert not any(words in err for words in CHAT_WORDS), err
        assert "Traceback" not in err and KEY not in err
    assert len(fake_upstream.seen("gemini")) == 2
