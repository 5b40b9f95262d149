"""Inline prompt flags: ``--ar 16:9 --size 4k --model NAME`` (and Telegram's em dash)."""

from __future__ import annotations

import pytest

from bot.domain import Options
from bot.errors import InvalidOption, MissingValue, UnknownFlag
from bot.prompts import parse_flags


@pytest.mark.parametrize(("text", "prompt", "options"), [
    ("a red fox", "a red fox", Options()),
    ("", "", Options()),
    ("a red fox --ar 16:9", "a red fox", Options(aspect="16:9")),
    ("a red fox --aspect 4:3", "a red fox", Options(aspect="4:3")),
    ("--ar 9:16 a tall tower", "a tall tower", Options(aspect="9:16")),
    ("a fox --size 4k", "a fox", Options(size="4K")),
    ("a fox --size 512px", "a fox", Options(size="512")),
    ("a fox --size=2K", "a fox", Options(size="2K")),
    ("a fox --model nano-banana-pro", "a fox", Options(model="nano-banana-pro")),
    ("a fox -m nano-banana-2", "a fox", Options(model="nano-banana-2")),
    ("a fox --AR 1:1 --Size 2k", "a fox", Options(size="2K", aspect="1:1")),
    ("a fox --ar 3:2 in the snow --size 2K", "a fox in the snow",
     Options(size="2K", aspect="3:2")),
    ("a fox --ar 1:1 --ar 21:9", "a fox", Options(aspect="21:9")),  # the last one wins
    # Telegram clients turn "--" into an em dash.
    ("a fox —ar 16:9", "a fox", Options(aspect="16:9")),
    ("a fox —size 4K —model nano-banana-pro", "a fox",
     Options(model="nano-banana-pro", size="4K")),
    ("a fox\n--ar 16:9\nat dusk", "a fox at dusk", Options(aspect="16:9")),
    # Hyphens inside words, numbers and dashes used as punctuation are prompt text.
    ("a well-known state-of-the-art fox", "a well-known state-of-the-art fox", Options()),
    ("a fox - and a dog", "a fox - and a dog", Options()),
    ("temperature -5 degrees", "temperature -5 degrees", Options()),
    ("a fox — a dog", "a fox — a dog", Options()),
    ("a fox—dog hybrid", "a fox—dog hybrid", Options()),
    ("一只狐狸——在雪中 —ar 16:9", "一只狐狸——在雪中", Options(aspect="16:9")),
    ("an x-ray of a cat --ar 4:5", "an x-ray of a cat", Options(aspect="4:5")),
    ("   spaced    out   ", "spaced out", Options()),
])
def test_parse_flags(text: str, prompt: str, options: Options) -> None:
    assert parse_flags(text) == (prompt, options)


@pytest.mark.parametrize(("text", "flag"), [
    ("a fox --stylize 100", "--stylize"),
    ("a fox --seed 42", "--seed"),
    ("a fox —quality hd", "—quality"),
    ("a fox --no-text yes", "--no-text"),
    ("a fox --v 6", "--v"),
])
def test_unknown_flag(text: str, flag: str) -> None:
    with pytest.raises(UnknownFlag) as info:
        parse_flags(text)
    assert info.value.params["flag"] == flag
    assert info.value.key == "error.unknown_flag"


@pytest.mark.parametrize("text", [
    "a fox --ar",
    "a fox --size",
    "a fox —model",
    "a fox --ar --size 2K",  # a flag is not a value
])
def test_flag_without_value(text: str) -> None:
    with pytest.raises(MissingValue) as info:
        parse_flags(text)
    assert info.value.params["flag"] in text and info.value.key == "error.missing_value"


def test_values_are_passed_on_unvalidated() -> None:
    # The service checks sizes, aspects and models against the chosen model.
    assert parse_flags("fox --ar 7:3 --model nope")[1] == Options(model="nope", aspect="7:3")


@pytest.mark.parametrize(("text", "prompt", "options"), [
    ("a fox --n 4", "a fox", Options(n=4)),
    ("a fox --style Watercolor --n 2", "a fox", Options(n=2, style="watercolor")),
    ("a city at night --no cars, people; neon signs --ar 16:9", "a city at night",
     Options(aspect="16:9", negative=("cars", "people", "neon signs"))),
    ("a city --no  ", "a city", Options()),
    ("a fox --vary strong", "a fox", Options(vary="strong")),
    ("—no text, logos", "", Options(negative=("text", "logos"))),
])
def test_batch_style_negative_and_vary_flags(text: str, prompt: str, options: Options) -> None:
    assert parse_flags(text) == (prompt, options)


@pytest.mark.parametrize(("text", "option", "value"), [
    ("a fox --n 5", "--n", "5"),
    ("a fox --n 0", "--n", "0"),
    ("a fox --n two", "--n", "two"),
    ("a fox --vary wild", "--vary", "wild"),
])
def test_bad_flag_values_name_the_flag(text: str, option: str, value: str) -> None:
    with pytest.raises(InvalidOption) as info:
        parse_flags(text)
    assert info.value.params["option"] == option and info.value.params["value"] == value
