"""config.example.toml stays in step with the settings: it loads, and it documents every key."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from bot.config import ModelSection, ProviderSection, Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"


def test_example_loads_as_is() -> None:
    settings = load_settings(EXAMPLE)
    assert settings.bot.default_model in settings.catalog()


def test_example_mentions_every_key() -> None:
    text = EXAMPLE.read_text("utf-8")
    missing = []
    for section_name, field in Settings.model_fields.items():
        annotation = field.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            continue
        assert f"[{section_name}]" in text, section_name
        for key in annotation.model_fields:
            if not re.search(rf"^#?\s*{key}\s*=", text, re.MULTILINE):
                missing.append(f"[{section_name}] {key}")
    assert not missing, f"config.example.toml lacks: {missing}"


def test_example_documents_provider_and_model_keys() -> None:
    text = EXAMPLE.read_text("utf-8")
    for model in (ProviderSection, ModelSection):
        for key in model.model_fields:
            assert re.search(rf"^#\s*{key}\s*=", text, re.MULTILINE), key
