"""Builds the provider a ``[providers.NAME]`` table describes (``api`` -> class)."""

from __future__ import annotations

import asyncio

from bot.config import ProviderSection
from bot.errors import ConfigError
from bot.providers.base import ImageProvider
from bot.providers.gemini import GeminiProvider
from bot.providers.openai_chat import OpenAIChatProvider
from bot.providers.openai_images import OpenAIImagesProvider
from bot.providers.retry import RetryPolicy, Sleep


def build_provider(name: str, section: ProviderSection, *, api_key: str | None,
                   sleep: Sleep = asyncio.sleep) -> ImageProvider:
    """One provider instance for ``section``; ``sleep`` is the retry delay (tests pass a fake)."""
    if section.api == "demo":
        from bot.providers.demo import DemoProvider

        return DemoProvider(name=name, delay=section.demo_delay_seconds)
    env = section.api_key_env
    if not api_key:
        where = f"environment variable {env}" if env else f"[providers.{name}] api_key_env"
        raise ConfigError(f"provider {name!r} ({section.api}) needs an API key: set {where}",
                          env=env)
    policy = RetryPolicy.from_section(section, sleep=sleep)
    if section.api == "openai-chat":
        if not section.base_url:
            raise ConfigError(
                f"[providers.{name}] base_url is required for api 'openai-chat' "
                "(the relay's OpenAI-compatible endpoint, e.g. https://openrouter.ai/api/v1)")
        return OpenAIChatProvider(name=name, base_url=section.base_url, api_key=api_key,
                                  key_env=env, policy=policy)
    if section.api == "gemini":
        return GeminiProvider(name=name, base_url=section.base_url, api_key=api_key,
                              key_env=env, auth=section.auth, policy=policy)
    if section.api == "openai-images":
        return OpenAIImagesProvider(name=name, base_url=section.base_url, api_key=api_key,
                                    key_env=env, policy=policy)
    raise ConfigError(f"[providers.{name}] api = {section.api!r} is not supported")
