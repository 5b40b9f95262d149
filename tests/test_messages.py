"""Message catalogs: every locale has the same keys and placeholders; the core stays
platform-agnostic (no discord / telegram imports under bot/)."""

from __future__ import annotations

import ast
import inspect
import re
import string
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import pytest

import bot.errors
from bot.messages import DEFAULT_LOCALE, LOCALES, Messages, load_catalog, normalize_locale

ROOT = Path(__file__).resolve().parent.parent
BOT = ROOT / "bot"
FOLDER = resources.files("bot.messages")


def area_files(locale: str) -> set[str]:
    return {e.name for e in FOLDER.joinpath(locale).iterdir() if e.name.endswith(".toml")}


def placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


CATALOGS = {loc: load_catalog(loc) for loc in LOCALES}


def test_locales() -> None:
    assert LOCALES == ("en", "zh-Hans", "zh-Hant")
    assert DEFAULT_LOCALE in LOCALES


def test_every_locale_has_the_same_area_files() -> None:
    areas = {loc: area_files(loc) for loc in LOCALES}
    assert areas[DEFAULT_LOCALE], "no catalog files at all"
    for loc in LOCALES:
        assert areas[loc] == areas[DEFAULT_LOCALE], f"{loc}: {areas[loc] ^ areas[DEFAULT_LOCALE]}"


@pytest.mark.parametrize("locale", [loc for loc in LOCALES if loc != DEFAULT_LOCALE])
def test_every_locale_has_exactly_the_same_keys(locale: str) -> None:
    reference = set(CATALOGS[DEFAULT_LOCALE])
    keys = set(CATALOGS[locale])
    assert not reference - keys, f"missing in {locale}: {sorted(reference - keys)}"
    assert not keys - reference, f"only in {locale}: {sorted(keys - reference)}"
    # And per area file, so a key cannot hide in another file of one locale.
    for name in area_files(DEFAULT_LOCALE):
        base = tomllib.loads(FOLDER.joinpath(DEFAULT_LOCALE, name).read_text("utf-8"))
        other = tomllib.loads(FOLDER.joinpath(locale, name).read_text("utf-8"))
        assert _flat(base) == _flat(other), f"{locale}/{name} differs in keys"


def _flat(node: dict[str, object], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, value in node.items():
        full = f"{prefix}.{key}" if prefix else key
        out |= _flat(value, full) if isinstance(value, dict) else {full}
    return out


def test_no_key_is_defined_twice_across_area_files() -> None:
    for loc in LOCALES:
        seen: dict[str, str] = {}
        for name in sorted(area_files(loc)):
            data = tomllib.loads(FOLDER.joinpath(loc, name).read_text("utf-8"))
            for key in _flat(data):
                assert key not in seen, f"{loc}: {key} in both {seen[key]} and {name}"
                seen[key] = name


@pytest.mark.parametrize("locale", LOCALES)
def test_templates_are_well_formed_and_not_empty(locale: str) -> None:
    for key, template in CATALOGS[locale].items():
        assert template.strip(), f"{locale}: {key} is empty"
        try:
            placeholders(template)
        except ValueError as exc:  # a stray { or }
            pytest.fail(f"{locale}: {key}: {exc}")


def test_placeholders_are_the_same_in_every_locale() -> None:
    for key, template in CATALOGS[DEFAULT_LOCALE].items():
        expected = placeholders(template)
        for loc in LOCALES:
            got = placeholders(CATALOGS[loc].get(key, ""))
            assert got == expected, f"{loc}: {key} has {sorted(got)}, en has {sorted(expected)}"


def test_every_error_category_has_a_message() -> None:
    keys = {cls.key for _, cls in inspect.getmembers(bot.errors, inspect.isclass)
            if issubclass(cls, bot.errors.BotError)}
    keys |= {"error.refused_reason", "error.no_image_text", "error.quota_global"}
    keys |= {f"window.{w}" for w in ("user_daily", "user_monthly", "chat_daily",
                                     "global_daily_usd")}
    for loc in LOCALES:
        missing = keys - set(CATALOGS[loc])
        assert not missing, f"{loc} lacks {sorted(missing)}"


def test_every_key_the_core_uses_exists() -> None:
    """String constants in bot/ that look like catalog keys must be in the catalogs."""
    # (Platform areas are the adapters' business; "telegram.ext" in bot/ is a logger name.)
    sections = {key.split(".", 1)[0] for key in CATALOGS[DEFAULT_LOCALE]} - {"telegram",
                                                                               "discord"}
    pattern = re.compile(r"^[a-z_]+(\.[a-z0-9_]+)+$")
    missing = []
    for path in BOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                value = node.value
                if (pattern.match(value) and value.split(".", 1)[0] in sections
                        and value not in CATALOGS[DEFAULT_LOCALE]):
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {value}")
    assert not missing, missing


def test_translations_are_translated() -> None:
    cjk = re.compile(r"[\u4e00-\u9fff]")
    for loc in ("zh-Hans", "zh-Hant"):
        assert cjk.search(CATALOGS[loc]["error.quota"])
        assert CATALOGS[loc]["error.quota"] != CATALOGS[DEFAULT_LOCALE]["error.quota"]
    assert CATALOGS["zh-Hans"]["error.refused"] != CATALOGS["zh-Hant"]["error.refused"]


def test_translator_fallbacks() -> None:
    messages = Messages()
    assert messages.t("zh-Hans", "error.busy", retry_after=5).count("5") == 1
    assert messages.t("fr", "error.busy", retry_after=5) == messages.t("en", "error.busy",
                                                                        retry_after=5)
    assert messages.t(None, "error.banned") == CATALOGS["en"]["error.banned"]
    assert messages.t("en", "no.such.key") == "no.such.key"
    # A missing parameter never raises.
    assert messages.t("en", "error.busy").startswith("The image service is busy.")
    assert messages.keys("zh-Hant") == set(CATALOGS["zh-Hant"])


@pytest.mark.parametrize(("raw", "expected"), [
    ("en", "en"), ("en-US", "en"), ("en-GB", "en"), ("EN", "en"), ("en_AU", "en"),
    ("zh", "zh-Hans"), ("zh-CN", "zh-Hans"), ("zh_CN", "zh-Hans"), ("zh-SG", "zh-Hans"),
    ("zh-hans", "zh-Hans"), ("zh-Hans-CN", "zh-Hans"),
    ("zh-TW", "zh-Hant"), ("zh_TW", "zh-Hant"), ("zh-HK", "zh-Hant"), ("zh-MO", "zh-Hant"),
    ("zh-hant", "zh-Hant"), ("zh-Hant-TW", "zh-Hant"),
    ("fr", None), ("ja", None), ("", None), (None, None),
])
def test_normalize_locale(raw: str | None, expected: str | None) -> None:
    assert normalize_locale(raw) == expected


# ----- the core imports no platform SDK -------------------------------------------------------

BANNED = {"discord", "telegram"}


def platform_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name)
              and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                  "import_module", "__import__")
              and node.args and isinstance(node.args[0], ast.Constant)):
            names = [str(node.args[0].value)]
        found += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                  if n.split(".")[0] in BANNED]
    return found


def test_the_core_imports_no_platform_sdk() -> None:
    sources = sorted(BOT.rglob("*.py"))
    assert len(sources) > 10
    offenders = [hit for path in sources for hit in platform_imports(path)]
    assert not offenders, f"bot/ must not import discord or telegram: {offenders}"


def test_the_import_check_catches_each_form(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import discord\nfrom telegram.ext import Application\n"
                     "import importlib\nimportlib.import_module('discord.ui')\n"
                     "import telegramish\nfrom .discord import x\n")
    hits = [h.split(" ", 1)[1] for h in platform_imports_at(probe, tmp_path)]
    assert hits == ["discord", "telegram.ext", "discord.ui"]


def platform_imports_at(path: Path, root: Path) -> list[str]:
    global ROOT
    saved, ROOT = ROOT, root
    try:
        return platform_imports(path)
    finally:
        ROOT = saved


def test_ruff_bans_platform_imports_outside_adapters(tmp_path: Path) -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    lint = config["tool"]["ruff"]["lint"]
    assert "TID" in lint["select"]
    assert set(lint["flake8-tidy-imports"]["banned-api"]) >= BANNED
    probe = tmp_path / "probe.py"
    probe.write_text("import discord\nfrom telegram import Bot\n\nprint(discord, Bot)\n")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--config",
         str(ROOT / "pyproject.toml"), "--select", "TID251", str(probe)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.count("TID251") == 2
