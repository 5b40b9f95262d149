"""Errors of ``imagine-bot generate`` in an operator's words: what failed, which flag or setting,
and what to do. The chat catalogs speak to users ("the operator has been told", "/imagine ...");
a terminal is the operator, so it gets the detail (secrets masked by the caller) and the knob.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.errors import (
    BotError,
    ConfigError,
    EmptyPrompt,
    InputTooLarge,
    InternalError,
    InvalidOption,
    JobTimeout,
    ModelUnavailable,
    NoImage,
    Refused,
    TooManyReferences,
    UnsupportedImage,
    UpstreamBusy,
    UpstreamConfig,
    UpstreamError,
    UpstreamNoCredit,
)
from bot.outfiles import OutputRefused

_FLAG = {"model": "--model", "size": "--size", "aspect": "--aspect", "search": "--search",
         "thinking": "--thinking"}


def _said(detail: str) -> str:
    return f" ({detail})" if detail else ""


def describe(err: BotError, *, key_env: str | None, fallback: Callable[[BotError], str]) -> str:
    """One line for the terminal; ``fallback`` words any error this does not know."""
    p, detail = err.params, err.detail
    if isinstance(err, OutputRefused | ConfigError):
        return detail  # already written for the operator, naming the setting
    if isinstance(err, EmptyPrompt):
        return ("the prompt is empty: give it as the first argument, e.g. "
                'imagine-bot generate "a red fox in the snow"')
    if isinstance(err, InvalidOption):
        flag = _FLAG.get(str(p["option"]), str(p["option"]))
        return (f"{flag} {p['value']} is not available: choose one of {p['allowed']} "
                "(imagine-bot models lists every model with its sizes and aspects)")
    if isinstance(err, TooManyReferences):
        return (f"{p['count']} --ref images given, but {p['model']} takes at most {p['limit']}: "
                "drop some, or pick another --model")
    if isinstance(err, InputTooLarge):
        return (f"a --ref file is {p['size_mb']} MB, over the {p['limit_mb']} MB limit: shrink it, "
                "or raise [limits] max_input_mb in the config")
    if isinstance(err, UnsupportedImage):
        return f"--ref: {p['what']}; use a PNG, JPEG, WebP or GIF file"
    if isinstance(err, Refused):
        reason = f": {p['reason']}" if p.get("reason") else ""
        return f"the model refused this prompt{reason}; rephrase it and try again"
    if isinstance(err, NoImage):
        text = f': "{p["text"]}"' if p.get("text") else ""
        return (f"the model answered without an image{text}; rephrase the prompt, or try "
                "another --model")
    if isinstance(err, JobTimeout):
        return (f"no image within {p['seconds']} s; try again, or raise [limits] timeout_seconds "
                "(timeout_4k_seconds for 4K) in the config")
    if isinstance(err, UpstreamBusy):
        return (f"the image service is busy or rate-limited{_said(detail)}; try again in "
                f"{p['retry_after']} s")
    key = f" in {key_env}" if key_env else ""
    if isinstance(err, ModelUnavailable):
        return (f"the provider does not serve {p['model']}{_said(detail)}: check --model (or the "
                "model's id in the config) and --base-url / base_url; `imagine-bot models --online` "
                "lists what the provider serves")
    if isinstance(err, UpstreamNoCredit):
        return f"the API account has no credit left{_said(detail)}: top it up, or use another key{key}"
    if isinstance(err, UpstreamConfig):
        return (f"the image service refused the API key or access{_said(detail)}: check the key"
                f"{key} and --base-url / base_url")
    if isinstance(err, UpstreamError):
        return (f"the image service gave an unexpected answer{_said(detail)}; try again, and if it "
                "persists check --base-url / base_url and --api")
    if isinstance(err, InternalError):
        return (f"internal error {err.error_id}{_said(detail)}; set [log] level = \"DEBUG\" in "
                "the config and run again to see where it failed")
    return fallback(err)
