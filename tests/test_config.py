"""Configuration: defaults, a good file, one clear line per bad key, env overrides, secrets."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.catalog import ASPECTS, BUILTIN
from bot.config import Settings, load_settings
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    """The ConfigError message that loading ``text`` produces."""
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), environ or {})
    return str(info.value)


def only_line(message: str) -> str:
    lines = message.splitlines()
    assert len(lines) == 1, message
    return lines[0]


# ----- defaults and a good file ---------------------------------------------------------------


def test_defaults_load_without_a_file() -> None:
    settings = load_settings(None, {})
    assert settings.bot.default_model == "nano-banana-2.1"
    assert settings.bot.default_size == "1K"
    assert settings.bot.locale == "en"
    assert settings.bot.admins == ()
    assert settings.quota.credit_usd == 0.01
    assert settings.quota.timezone == "UTC"
    assert settings.quota.charge_refusals is False
    assert settings.telegram.enabled is False and settings.discord.enabled is False
    assert settings.http.listen is None
    # No provider configured: one implicit demo provider serves every built-in model.
    assert {name: p.api for name, p in settings.provider_table().items()} == {"demo": "demo"}
    catalog = settings.catalog()
    assert set(catalog) == set(BUILTIN)
    assert {spec.provider for spec in catalog.values()} == {"demo"}
    assert settings.zone() == ZoneInfo("UTC")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", {})


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[bot\nlocale = 'en'\n")
    assert "config.toml" in message and "not valid TOML" in message


def test_a_good_file(tmp_path: Path) -> None:
    path = write(tmp_path, """
[bot]
data_dir = "/var/lib/imagine"
default_model = "nano-banana-pro"
default_size = "2k"
default_aspect = "16:9"
locale = "zh-Hans"
admins = ["telegram:42", "discord:1234567890"]

[limits]
global_concurrency = 8
per_user_concurrency = 2
queue_size = 50
timeout_seconds = 90
timeout_4k_seconds = 200

[quota]
credit_usd = 0.02
user_daily_credits = 30
user_monthly_credits = 300
chat_daily_credits = 100
global_daily_usd = 5.5
timezone = "Asia/Shanghai"
charge_refusals = true

[providers.relay]
api = "openai-chat"
base_url = "https://relay.example.com/v1"
api_key_env = "RELAY_API_KEY"

[providers.google]
api = "gemini"
api_key_env = "GEMINI_API_KEY"

[models.nano-banana-pro]
provider = "google"

[telegram]
enabled = true
token_env = "TG_TOKEN"
allowed_chats = [-1001, 42]

[discord]
enabled = false
allowed_guilds = [1, 2]

[http]
listen = "127.0.0.1:8080"

[log]
level = "DEBUG"
format = "json"
""")
    s = load_settings(path, {})
    assert s.bot.data_dir == Path("/var/lib/imagine")
    assert s.bot.default_size == "2K"  # normalised spelling
    assert s.bot.locale == "zh-Hans"
    assert s.is_admin("telegram:42") and s.is_admin("discord:1234567890")
    assert not s.is_admin("telegram:43")
    assert s.limits.global_concurrency == 8 and s.limits.timeout_4k_seconds == 200.0
    assert s.quota.credit_usd == 0.02 and s.quota.charge_refusals is True
    assert s.zone() == ZoneInfo("Asia/Shanghai")
    assert set(s.provider_table()) == {"relay", "google"}
    catalog = s.catalog()
    assert catalog["nano-banana-pro"].provider == "google"
    assert catalog["nano-banana-2.1"].provider == "relay"  # the first configured provider
    assert s.telegram.allowed_chats == (-1001, 42)
    assert s.discord.allowed_guilds == (1, 2)
    assert s.http.listen == "127.0.0.1:8080"
    assert s.log.format == "json"


def test_config_example_is_valid() -> None:
    load_settings(ROOT / "config.example.toml", {})


# ----- one line per bad key -------------------------------------------------------------------


def test_unknown_key_names_section_key_value_and_allowed(tmp_path: Path) -> None:
    line = only_line(config_error(tmp_path, "[limits]\nglobal_concurency = 4\n"))
    assert "config.toml" in line
    assert "[limits] global_concurency" in line
    assert "4" in line
    assert "unknown key" in line
    assert "global_concurrency" in line.split("unknown key", 1)[1]  # the allowed keys


def test_unknown_key_in_a_named_table(tmp_path: Path) -> None:
    line = only_line(config_error(tmp_path, "[providers.relay]\napi = 'demo'\nbase = 'x'\n"))
    assert "[providers.relay] base" in line and "unknown key" in line
    assert "base_url" in line


def test_unknown_section(tmp_path: Path) -> None:
    line = only_line(config_error(tmp_path, "[telegarm]\nenabled = true\n"))
    assert "telegarm" in line and "unknown key" in line and "telegram" in line


def test_wrong_type(tmp_path: Path) -> None:
    line = only_line(config_error(tmp_path, "[limits]\nglobal_concurrency = 'four'\n"))
    assert "[limits] global_concurrency = 'four'" in line
    assert "integer" in line


def test_wrong_type_bool(tmp_path: Path) -> None:
    line = only_line(config_error(tmp_path, "[quota]\ncharge_refusals = 'maybe'\n"))
    assert "[quota] charge_refusals = 'maybe'" in line and "bool" in line


def test_out_of_range(tmp_path: Path) -> None:
    line = only_line(config_error(tmp_path, "[limits]\nglobal_concurrency = 0\n"))
    assert "[limits] global_concurrency = 0" in line
    assert "greater than or equal to 1" in line


def test_negative_credit_price(tmp_path: Path) -> None:
    line = only_line(config_error(tmp_path, "[quota]\ncredit_usd = -0.01\n"))
    assert "[quota] credit_usd = -0.01" in line and "greater than 0" in line


def test_literal_lists_what_is_allowed(tmp_path: Path) -> None:
    line = only_line(config_error(tmp_path, "[bot]\nlocale = 'fr'\n"))
    assert "[bot] locale = 'fr'" in line
    for allowed in ("en", "zh-Hans", "zh-Hant"):
        assert allowed in line


def test_bad_timezone(tmp_path: Path) -> None:
    line = only_line(config_error(tmp_path, "[quota]\ntimezone = 'Mars/Olympus_Mons'\n"))
    assert "[quota] timezone = 'Mars/Olympus_Mons'" in line
    assert "IANA" in line and "Asia/Shanghai" in line


def test_bad_admin_entry(tmp_path: Path) -> None:
    line = only_line(config_error(tmp_path, "[bot]\nadmins = ['42']\n"))
    assert "[bot] admins" in line and "'42'" in line and "telegram:ID" in line


@pytest.mark.parametrize("key", ["sk-proj-abcdefABCDEF0123456789", "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUv"])
def test_api_key_env_that_looks_like_a_key(tmp_path: Path, key: str) -> None:
    line = only_line(config_error(
        tmp_path, f"[providers.relay]\napi = 'openai-chat'\napi_key_env = '{key}'\n"))
    assert "[providers.relay] api_key_env" in line
    assert "NAME of an environment variable" in line
    assert key not in line  # a pasted key is never echoed back (logs, terminals)


@pytest.mark.parametrize(("section", "token"), [
    ("telegram", "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"),
    ("discord", "MTA0NTY3ODkwMTIzNDU2Nzg5.GhIjKl.MnOpQrStUvWxYz0123456789abcdEFGH"),
    ("web", "Zx9Kq2Lm7Np4Rs8Tv3Wy6Ab1Cd5Ef0Gh"),
])
def test_token_env_that_looks_like_a_token(tmp_path: Path, section: str, token: str) -> None:
    line = only_line(config_error(tmp_path, f"[{section}]\ntoken_env = '{token}'\n"))
    assert f"[{section}] token_env" in line and "environment variable" in line
    assert token not in line


def test_bad_base_url(tmp_path: Path) -> None:
    line = only_line(config_error(
        tmp_path, "[providers.relay]\napi = 'openai-chat'\nbase_url = 'relay.example.com'\n"))
    assert "[providers.relay] base_url = 'relay.example.com'" in line and "http://" in line


def test_bad_api_kind(tmp_path: Path) -> None:
    line = only_line(config_error(tmp_path, "[providers.relay]\napi = 'anthropic'\n"))
    assert "[providers.relay] api = 'anthropic'" in line
    assert "openai-chat" in line and "gemini" in line


def test_missing_required_key(tmp_path: Path) -> None:
    line = only_line(config_error(tmp_path, "[providers.relay]\nbase_url = 'https://x'\n"))
    assert "[providers.relay] api" in line and "required" in line.lower()


def test_default_model_unknown(tmp_path: Path) -> None:
    line = only_line(config_error(tmp_path, "[bot]\ndefault_model = 'dall-e-9'\n"))
    assert "[bot] default_model = 'dall-e-9'" in line
    assert "nano-banana-2.1" in line and "nano-banana-pro" in line  # what is allowed


def test_default_model_may_be_a_new_model(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, """
[bot]
default_model = "mine"
[models.mine]
id = "my-image-model"
sizes = ["1K"]
"""), {})
    assert s.catalog()["mine"].id == "my-image-model"


def test_models_provider_unknown(tmp_path: Path) -> None:
    line = only_line(config_error(tmp_path, """
[providers.relay]
api = "openai-chat"
[models.nano-banana-2.1]
provider = "relya"
"""))
    assert "[models.nano-banana-2.1] provider = 'relya'" in line
    assert "relay" in line.split("allowed", 1)[1]


def test_new_model_needs_id_and_sizes(tmp_path: Path) -> None:
    line = only_line(config_error(tmp_path, "[models.mine]\nprices = {'1K' = 0.1}\n"))
    assert "[models.mine]" in line and "'id'" in line and "'sizes'" in line


def test_negative_model_credits_and_prices_are_refused(tmp_path: Path) -> None:
    line = only_line(config_error(tmp_path, "[models.nano-banana-pro]\ncredits = {'1K' = -5}\n"))
    assert "[models.nano-banana-pro] credits" in line and "-5" in line
    line = only_line(config_error(tmp_path, "[models.nano-banana-pro]\nprices = {'1K' = -0.5}\n"))
    assert "[models.nano-banana-pro] prices" in line and "-0.5" in line


def test_every_problem_is_reported_one_line_each(tmp_path: Path) -> None:
    message = config_error(tmp_path, """
[bot]
locale = "fr"
colour = "red"
[limits]
global_concurrency = 0
[quota]
timezone = "Nowhere/Special"
""")
    lines = message.splitlines()
    assert len(lines) == 4, message
    joined = "\n".join(lines)
    for where in ("[bot] locale", "[bot] colour", "[limits] global_concurrency",
                  "[quota] timezone"):
        assert where in joined


# ----- environment overrides ------------------------------------------------------------------


def test_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "[quota]\nuser_daily_credits = 30\ntimezone = 'UTC'\n")
    s = load_settings(path, {
        "IMAGINE__QUOTA__USER_DAILY_CREDITS": "5",
        "IMAGINE__QUOTA__TIMEZONE": "Asia/Shanghai",  # not TOML: taken as a plain string
        "IMAGINE__BOT__LOCALE": '"zh-Hant"',  # TOML string
        "IMAGINE__BOT__ADMINS": '["telegram:1", "discord:2"]',
        "IMAGINE__QUOTA__CHARGE_REFUSALS": "true",
        "IMAGINE__PROVIDERS__RELAY__API": "openai-chat",
        "IMAGINE__PROVIDERS__RELAY__API_KEY_ENV": "RELAY_KEY",
        "UNRELATED": "x",
        "IMAGINE_NOT_OURS": "1",
    })
    assert s.quota.user_daily_credits == 5
    assert s.quota.timezone == "Asia/Shanghai"
    assert s.bot.locale == "zh-Hant"
    assert s.bot.admins == ("telegram:1", "discord:2")
    assert s.quota.charge_refusals is True
    assert s.providers["relay"].api == "openai-chat"
    assert s.providers["relay"].api_key_env == "RELAY_KEY"


def test_env_override_without_a_file() -> None:
    s = load_settings(None, {"IMAGINE__LIMITS__QUEUE_SIZE": "7"})
    assert s.limits.queue_size == 7


def test_bad_env_override_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"IMAGINE__LIMITS__QUEUE_SIZE": "lots"})
    line = only_line(str(info.value))
    assert "[limits] queue_size = 'lots'" in line


def test_env_override_below_a_scalar_is_a_config_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[bot]\nlocale = 'en'\n", {"IMAGINE__BOT__LOCALE__X": "1"})
    assert "IMAGINE__BOT__LOCALE__X" in message and "not a table" in message


# ----- secrets --------------------------------------------------------------------------------


def test_secret_read_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGINE_TEST_KEY", "  s3cr3t-value  ")
    assert Settings.secret("IMAGINE_TEST_KEY") == "s3cr3t-value"


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_secret_names_the_env_var(monkeypatch: pytest.MonkeyPatch,
                                          value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("IMAGINE_TEST_KEY", raising=False)
    else:
        monkeypatch.setenv("IMAGINE_TEST_KEY", value)
    with pytest.raises(ConfigError) as info:
        Settings.secret("IMAGINE_TEST_KEY")
    assert "IMAGINE_TEST_KEY" in str(info.value)
    assert "not set" in str(info.value)
    assert info.value.params.get("env") == "IMAGINE_TEST_KEY"


def test_secrets_are_never_echoed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-live-0123456789abcdef"
    monkeypatch.setenv("RELAY_KEY", secret)
    path = write(tmp_path, "[providers.relay]\napi = 'openai-chat'\napi_key_env = 'RELAY_KEY'\n"
                           "max_retries = 99\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, {"RELAY_KEY": secret})
    assert secret not in str(info.value)
    s = load_settings(write(tmp_path, "[providers.relay]\napi = 'openai-chat'\n"
                                      "api_key_env = 'RELAY_KEY'\n"), {"RELAY_KEY": secret})
    assert secret not in repr(s) and secret not in s.model_dump_json()


# ----- catalog merge / override ---------------------------------------------------------------


def test_builtin_catalog_is_todays_lineup() -> None:
    """Ids, sizes and prices of 2026-11-30 (sources in bot/catalog.py's docstring)."""
    catalog = load_settings(None, {}).catalog()
    assert list(catalog) == ["nano-banana-2.1", "nano-banana-pro", "nano-banana-2-lite"]
    nb21 = catalog["nano-banana-2.1"]
    assert nb21.id == "gemini-nano-banana-2.1"
    assert nb21.sizes == ("1K", "2K", "4K") and "512" not in nb21.sizes
    assert {"1:4", "4:1", "1:8", "8:1"} <= set(nb21.aspects) and len(nb21.aspects) == 14
    assert nb21.max_references == 14
    assert [nb21.credit_cost(s, 0.01) for s in nb21.sizes] == [4, 6, 12]  # 0.0336/0.0504/0.1134
    assert nb21.search and nb21.thinking == ("minimal", "medium", "high")
    pro = catalog["nano-banana-pro"]
    assert pro.id == "gemini-3-pro-image"
    assert [pro.credit_cost(s, 0.01) for s in pro.sizes] == [14, 14, 24]
    assert "8:1" not in pro.aspects and pro.search and pro.thinking == ()
    lite = catalog["nano-banana-2-lite"]
    assert lite.id == "gemini-3.1-flash-lite-image"
    assert lite.sizes == ("1K",) and lite.send_size is False  # imageSize is answered with 400
    assert lite.credit_cost("1K", 0.01) == 4 and not lite.search
    assert pro.larger_sizes("1K") == ("2K", "4K") and lite.larger_sizes("1K") == ()
    for spec in catalog.values():  # nothing Google has shut down is ever sent
        assert "preview" not in spec.id and spec.id not in ("gemini-3.1-flash-image",
                                                            "gemini-2.5-flash-image")


def test_catalog_price_override(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, """
[quota]
credit_usd = 0.005
[models.nano-banana-pro]
prices = { "1K" = 0.1, "2K" = 0.2, "4K" = 0.3 }
"""), {})
    pro = s.catalog()["nano-banana-pro"]
    assert pro.prices == {"1K": 0.1, "2K": 0.2, "4K": 0.3}
    assert [pro.credit_cost(size, s.quota.credit_usd) for size in pro.sizes] == [20, 40, 60]
    # Untouched models keep their built-in prices.
    assert s.catalog()["nano-banana-2-lite"].prices == {"1K": 0.0336}


def test_catalog_credits_override(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, """
[models.nano-banana-2.1]
credits = { "4K" = 50 }
max_references = 5
"""), {})
    nb21 = s.catalog()["nano-banana-2.1"]
    assert nb21.credit_cost("4K", 0.01) == 50  # override
    assert nb21.credit_cost("2K", 0.01) == 6  # still priced from USD
    assert nb21.max_references == 5
    assert nb21.id == "gemini-nano-banana-2.1"


def test_catalog_new_model(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, """
[providers.images]
api = "openai-images"
api_key_env = "OPENAI_API_KEY"
[models.gpt-image]
provider = "images"
id = "gpt-image-1"
sizes = ["1k", "2K"]
prices = { "1K" = 0.04, "2K" = 0.17 }
"""), {})
    catalog = s.catalog()
    assert list(catalog)[: len(BUILTIN)] == list(BUILTIN)
    model = catalog["gpt-image"]
    assert model.id == "gpt-image-1" and model.provider == "images"
    assert model.sizes == ("1K", "2K")
    assert model.aspects == ASPECTS
    assert model.credit_cost("1K", 0.01) == 4 and model.credit_cost("2K", 0.01) == 17
    assert model.send_size is True
