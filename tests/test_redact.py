"""bot.redact: secrets that contain or overlap one another are masked whole, in any order."""

from __future__ import annotations

import itertools

from bot.redact import MASK, Redactor, secret_values

SHORT = "sk-abcdefgh"
LONG = "sk-abcdefgh-0123456789"  # contains SHORT
LEFT = "AAAA1111BBBB2222"
RIGHT = "BBBB2222CCCC3333"  # its first half is LEFT's second half


def test_a_secret_inside_another_is_masked_whole_in_any_order() -> None:
    """Masking the shorter one first would leave the longer one's tail in the text."""
    for values in itertools.permutations([SHORT, LONG]):
        redact = Redactor(values)
        assert redact(f"key={LONG} and {SHORT}.") == f"key={MASK} and {MASK}."


def test_overlapping_secrets_leave_no_fragment() -> None:
    """Two secrets sharing characters in the text: no character of either survives."""
    text = f"echo {LEFT[:8]}{RIGHT}!"  # LEFT and RIGHT overlap by eight characters
    assert LEFT in text and RIGHT in text
    for values in itertools.permutations([LEFT, RIGHT]):
        out = Redactor(values)(text)
        assert out == f"echo {MASK}!", out
        for secret in (LEFT, RIGHT):
            assert not any(secret[i:i + 8] in out for i in range(len(secret) - 7))


def test_repeated_and_adjacent_secrets() -> None:
    """Every occurrence is masked; text between secrets is kept."""
    redact = Redactor([SHORT])
    assert redact(f"{SHORT}{SHORT} x {SHORT}") == f"{MASK}{MASK} x {MASK}"
    assert redact("nothing secret here") == "nothing secret here"


def test_short_values_are_not_secrets() -> None:
    """Values under eight characters would mask ordinary words, so they are ignored."""
    assert Redactor(["abc", "1234567"])("abc 1234567") == "abc 1234567"


def test_secret_values_longest_first_from_env() -> None:
    """Named and secret-looking variables are collected, longest first, short ones dropped."""
    env = {"MY_TOKEN": SHORT, "OTHER_API_KEY": LONG, "NAMED": LEFT, "HOME": "/root/home/dir",
           "TINY_SECRET": "abc"}
    assert secret_values({"NAMED"}, env) == [LONG, LEFT, SHORT]
