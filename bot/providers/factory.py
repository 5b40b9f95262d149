"""Builds the provider a ``[providers.NAME]`` table describes (route -> wire class)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.config import ProviderSection
from bot.errors import ConfigError
from bot.providers.base import ImageProvider
from bot.providers.gemini import GeminiProvider
from bot.providers.retry import RetryPolicy, Sleep
from bot.providers.routes import ROUTES


def build_provider(name: str, section: ProviderSection, *, api_key: str | None,
                   sleep: Sleep = asyncio.sleep,
                   on_retry: Callable[[], None] | None = None) -> ImageProvider:
    """One provider for ``section``; ``sleep`` is the retry delay, ``on_retry`` counts retries."""
    route = ROUTES[section.api]
    if route.wire == "demo":
        from bot.providers.demo import DemoProvider

        return DemoProvider(name=name, delay=section.demo_delay_seconds)
    env = section.key_env
    if not api_key:
        where = f"environment variable {env}" if env else f"[providers.{name}] api_key_env"
        raise ConfigError(f"provider {name!r} ({section.api}) needs an API key: set {where}",
                          env=env)
    policy = RetryPolicy.from_section(section, sleep=sleep, on_retry=on_retry)
    cap = section.max_response_mb
    # The openai SDK is imported only for the routes that use it: its types alone take ~0.6 s
    # to import, on every start of the bot and of every CLI command.
    if route.wire == "chat":
        from bot.providers.openai_chat import OpenAIChatProvider

        if not section.url:
            raise ConfigError(
                f"[providers.{name}] base_url is required for api {section.api!r} "
                "(the relay's OpenAI-compatible endpoint, e.g. https://relay.example/v1)")
        return OpenAIChatProvider(name=name, base_url=section.url, api_key=api_key,
                                  key_env=env, policy=policy, route=route, max_response_mb=cap)
    if route.wire == "gemini":
        return GeminiProvider(name=name, base_url=section.url, api_key=api_key,
                              key_env=env, auth=section.auth, policy=policy,
                              max_response_mb=cap)
    from bot.providers.openai_images import OpenAIImagesProvider

    return OpenAIImagesProvider(name=name, base_url=section.url, api_key=api_key,
                                key_env=env, policy=policy, max_response_mb=cap)
