"""``imagine-bot generate``: one generation without any chat platform, written to files."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from bot import images, outfiles
from bot.catalog import ASPECTS, Lineup, ModelSpec, normalize_size
from bot.config import ProviderSection, Settings
from bot.domain import ImageData
from bot.errors import (
    EmptyPrompt,
    InputTooLarge,
    InvalidOption,
    JobTimeout,
    NoImage,
    TooManyReferences,
    UnsupportedImage,
)
from bot.providers.base import ImageProvider, ProviderRequest
from bot.providers.factory import build_provider

API_KEY_ENV = "IMAGE_API_KEY"


@dataclass(frozen=True, slots=True)
class GenerateArgs:
    """What the user asked ``generate`` for."""

    prompt: str
    model: str | None = None
    size: str | None = None
    aspect: str | None = None
    refs: tuple[Path, ...] = ()
    out: str | None = None
    force: bool = False
    api: str | None = None
    base_url: str | None = None


def resolve_model(settings: Settings, name: str | None, api: str | None) -> ModelSpec:
    """A configured model by name or id; with ``--api``, any id is accepted as it is."""
    catalog = settings.catalog()
    wanted = name or settings.bot.default_model
    spec = Lineup(catalog).find(wanted, where="--model")  # a retired id means its successor
    if spec is not None:
        return spec
    if api is None:
        raise InvalidOption("model", wanted, sorted(catalog))
    return ModelSpec(name=wanted, id=wanted, provider="cli", sizes=("512", "1K", "2K", "4K"),
                     aspects=ASPECTS, max_references=14)


def provider_for(settings: Settings, spec: ModelSpec, args: GenerateArgs) -> ImageProvider:
    """``--api``/``--base-url`` (key from IMAGE_API_KEY), else the model's configured provider."""
    if args.api is not None:
        section = ProviderSection.model_validate(
            {"api": args.api, "base_url": args.base_url,
             "api_key_env": None if args.api == "demo" else API_KEY_ENV})
        key = None if args.api == "demo" else Settings.secret(API_KEY_ENV)
        return build_provider("cli", section, api_key=key)
    section = settings.provider_table()[spec.provider]
    key = Settings.secret(section.key_env) if section.key_env else None
    return build_provider(spec.provider, section, api_key=key)


async def generate(settings: Settings, args: GenerateArgs) -> list[Path]:
    """Run one generation and write its images; raises a BotError category on failure."""
    prompt = args.prompt.strip()
    if not prompt:
        raise EmptyPrompt()
    target = outfiles.plan(args.out, force=args.force)  # refused before anything is spent
    spec = resolve_model(settings, args.model, args.api)
    size = normalize_size(args.size) if args.size else (
        settings.bot.default_size if settings.bot.default_size in spec.sizes else spec.sizes[0])
    if size not in spec.sizes:
        raise InvalidOption("size", size, list(spec.sizes))
    aspect = args.aspect or settings.bot.default_aspect
    if aspect not in spec.aspects:
        raise InvalidOption("aspect", aspect, list(spec.aspects))
    if len(args.refs) > spec.max_references:
        raise TooManyReferences(len(args.refs), spec.max_references, spec.name)
    limits = settings.limits
    refs: list[ImageData] = []
    for path in args.refs:
        try:
            size_bytes = path.stat().st_size
        except OSError as exc:
            raise UnsupportedImage(f"cannot read {path}: {exc.strerror}") from None
        if size_bytes > limits.max_input_mb * 1_000_000:
            raise InputTooLarge(size_bytes / 1e6, limits.max_input_mb)
        data = await asyncio.to_thread(path.read_bytes)
        refs.append(await images.prepare_reference(
            data, max_input_bytes=int(limits.max_input_mb * 1_000_000),
            max_output_bytes=int(limits.reference_max_mb * 1_000_000), name=path.name))
    provider = provider_for(settings, spec, args)
    timeout = limits.timeout_4k_seconds if size == "4K" else limits.timeout_seconds
    request = ProviderRequest(model_id=spec.id, prompt=prompt, references=tuple(refs),
                              size=size, aspect=aspect, timeout=timeout, send_size=spec.send_size)
    try:
        result = await asyncio.wait_for(provider.generate(request), timeout)
    except TimeoutError:
        raise JobTimeout(timeout) from None
    finally:
        await provider.aclose()
    if not result.images:
        raise NoImage(result.text)
    return await asyncio.to_thread(outfiles.write, target, prompt, result.images)
