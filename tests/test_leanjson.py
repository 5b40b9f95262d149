"""leanjson.loads returns what json.loads returns, long strings cut out or not."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.providers.wire import leanjson

LONG = leanjson.LONG


def answer(data: str, text: str = "Here you go.") -> dict[str, Any]:
    """A generateContent-shaped answer around ``data``."""
    return {"candidates": [{"content": {"parts": [
        {"text": text}, {"inlineData": {"mimeType": "image/png", "data": data}}]},
        "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 7}}


def test_a_real_answer_parses_the_same() -> None:
    data = base64.b64encode(os.urandom(3 * LONG)).decode()
    for doc in (answer(data), answer(data, 'a "quoted" word, a \\ and ünïcödé ✓'),
                [answer(data), answer(data[::-1])], {"data": [{"url": data}, data]}):
        raw = json.dumps(doc).encode()
        assert leanjson.loads(raw) == json.loads(raw) == doc
        compact = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        assert leanjson.loads(compact) == doc


def test_long_strings_with_escapes_are_left_to_json() -> None:
    wrapped = "\n".join(base64.b64encode(os.urandom(2 * LONG)).decode()[i:i + 76]
                        for i in range(0, 2 * LONG, 76))  # MIME base64: "\n" escapes
    tricky = "x" * LONG + '"\\"' + "y" * LONG  # escaped quotes and backslashes inside
    for doc in (answer(wrapped), {"a": tricky, "b": "\\" * 3, "c": tricky + "\\"}):
        raw = json.dumps(doc).encode()
        assert leanjson.loads(raw) == doc


def test_a_string_that_looks_like_a_placeholder_is_kept() -> None:
    doc = {"a": "\x00lean-00000000-0", "b": "z" * (2 * LONG)}
    assert leanjson.loads(json.dumps(doc).encode()) == doc


@pytest.mark.parametrize("raw", [
    b'{"a": "' + b"q" * (2 * LONG),  # unterminated
    b'{"a": "' + b"q" * (2 * LONG) + b'" "b": 1}',  # a missing comma
    b'{"a": "' + b"q" * (2 * LONG) + b'", }',
    b"\xff" * (2 * LONG),
])
def test_broken_json_raises_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        leanjson.loads(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    | st.text(alphabet="ab\"\\\n✓", min_size=1, max_size=6).map(
        lambda s: s * (LONG // len(s) + 1)),  # long: cut out when it has no escapes
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8)


@settings(max_examples=40, deadline=None)
@given(json_values)
def test_any_document_parses_as_json_parses_it(doc: Any) -> None:
    raw = json.dumps(doc).encode()
    assert leanjson.loads(raw) == json.loads(raw)
