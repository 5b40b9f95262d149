"""The demo provider draws every script the console offers: a CJK font when the system has
one, else the prompt without the characters it cannot draw (never boxes) and a note."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from PIL import Image

from bot.providers import demo_fonts as fonts
from bot.providers.base import ProviderRequest
from bot.providers.demo import DemoProvider

HANS, HANT = "一只红狐狸在雪地里奔跑", "一隻紅狐狸在雪地裡奔跑"
INSTALLED = [p for p in fonts.CANDIDATES if Path(p).is_file()]


def request(prompt: str) -> ProviderRequest:
    """A 1K square request."""
    return ProviderRequest(model_id="demo", prompt=prompt, references=(), size="1K",
                           aspect="1:1", timeout=10)


@pytest.mark.skipif(not INSTALLED, reason="no CJK font installed (apt-get install "
                                          "fonts-wqy-microhei, as the Dockerfile does)")
async def test_chinese_prompts_get_a_font_that_draws_them() -> None:
    for text in (HANS, HANT, f"{HANS} at dawn"):
        font = fonts.pick(40, frozenset(text))
        assert fonts.covers(font, text), text
    assert not fonts.covers(fonts.pick(40, frozenset("abc")), HANS)  # Pillow's own font lacks it
    result = await DemoProvider().generate(request(HANT))
    with Image.open(io.BytesIO(result.images[0].data)) as img:
        assert img.size == (1024, 1024)


async def test_without_a_cjk_font_no_boxes_are_drawn(monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(fonts, "CANDIDATES", ("/nonexistent/cjk.ttc",))
    font = fonts.pick(40, frozenset(f"{HANS} fox"))
    assert not fonts.covers(font, HANS)
    assert fonts.drawable(font, f"{HANS} a red fox") == ("a red fox", True)
    assert fonts.drawable(font, "a red fox") == ("a red fox", False)
    with caplog.at_level(logging.WARNING):
        result = await DemoProvider().generate(request(f"{HANS} a red fox"))
    assert result.images and result.images[0].width == 1024
    assert "fonts-wqy-microhei" in caplog.text


def test_long_prompts_wrap_inside_the_image() -> None:
    font = fonts.pick(40, frozenset("abc"))
    text = fonts.wrap("a red fox running in the snow " * 10, font, 600, 4)
    lines = text.splitlines()
    assert len(lines) == 4 and lines[-1].endswith("…")
    assert all(font.getlength(line) <= 600 + font.getlength("…") for line in lines)
    if INSTALLED:  # scripts without spaces break between characters
        cjk = fonts.pick(40, frozenset(HANS))
        assert all(cjk.getlength(line) <= 600
                   for line in fonts.wrap(HANS * 5, cjk, 600, 10).splitlines())
