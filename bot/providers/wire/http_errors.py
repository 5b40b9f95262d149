"""An HTTP answer as its JSON object, or as the failure category it is.

What is retryable (a :class:`~bot.providers.retry.TransientError`; the policy waits and tries
again): 408, 425, 429, 500, 502, 503, 504, 520-524 and 529, with the server's wait hint: the
``Retry-After`` / ``retry-after-ms`` header (RFC 9110 section 10.2.3, as the OpenAI SDK reads it)
or Gemini's ``google.rpc.RetryInfo.retryDelay`` in the error ``details``
(https://ai.google.dev/gemini-api/docs/troubleshooting, a protobuf Duration such as ``"37s"`` or
``"1.5s"``). Never retryable: any other 4xx, and a 429 that is really a billing state (Gemini's
``limit: 0`` quota for the key's tier, OpenAI's ``insufficient_quota``).

Error bodies seen in the wild: OpenAI's ``{"error": {"message", "type", "code"}}``
(https://platform.openai.com/docs/guides/error-codes), Google's ``{"error": {"code", "message",
"status", "details"}}`` (https://ai.google.dev/gemini-api/docs/troubleshooting), Vertex's JSON
*array* of those, relays that put Google's JSON inside ``message`` as a string, and HTML pages
from proxies. :func:`read_json` turns any response into a JSON object or the failure category;
messages are scrubbed of the API key before they reach any exception text or log line.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from bot.errors import (
    BotError,
    ModelUnavailable,
    Refused,
    UpstreamConfig,
    UpstreamError,
    UpstreamNoCredit,
)
from bot.offload import run_sync
from bot.providers.retry import TransientError
from bot.providers.wire import leanjson

log = logging.getLogger(__name__)

_JSON_INLINE_LIMIT = 256 * 1024  # bodies above this are parsed in a thread
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524, 529})
_QUOTA_ZERO = re.compile(r"limit:\s*0(?![.\d])|\"quota_?value\":\s*\"?0\"?(?![.\d])", re.IGNORECASE)
_NO_CREDIT_WORDS = ("insufficient", "balance", "credit", "billing", "quota", "余额", "额度")
_REFUSAL_WORDS = (
    "moderation", "safety", "blocked", "content_policy", "content policy", "prohibited",
    "inappropriate", "violat", "sensitive", "flagged", "content_filter", "违规", "敏感",
)
_MODEL_MISSING_WORDS = (
    "model not found", "model_not_found", "is not found for api version", "not supported for "
    "generatecontent", "no such model", "does not exist", "unknown model", "invalid model",
    "not a valid model", "no endpoints found",
)
#: new-api / one-api answer 503 when no channel serves the model; retrying never helps.
_NO_CHANNEL_WORDS = ("no available channel", "get_channel_failed", "无可用渠道", "沒有可用渠道",
                     "model_not_found")
_BAD_KEY_WORDS = ("api_key_invalid", "api key not valid", "invalid api key", "invalid_api_key",
                  "incorrect api key", "invalid token", "无效的令牌")


def scrub(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` (the API key) masked, trimmed to a log-friendly length."""
    if secret:
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def error_object(body: Any) -> dict[str, Any]:
    """The error dict of any error body shape (wrapped, bare, JSON array, JSON in a string)."""
    if isinstance(body, list) and body:
        body = body[0]
    if not isinstance(body, dict):
        return {}
    inner = body.get("error", body)
    if isinstance(inner, str):
        return {"message": inner}
    if not isinstance(inner, dict):
        return {}
    message = inner.get("message")
    if isinstance(message, str) and message.lstrip().startswith(("{", "[")):
        try:
            nested = error_object(json.loads(message))
        except ValueError:
            nested = {}
        if nested:
            return nested
    return inner


def error_message(body: Any) -> str:
    """The human-readable message of an error body; a short description of a non-JSON one."""
    if isinstance(body, str | bytes):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        stripped = text.lstrip()
        if stripped.startswith("<"):
            title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
            return "HTML page instead of JSON" + (f" ({title.group(1).strip()})" if title else "")
        return stripped[:200] or "empty body"
    err = error_object(body)
    message = err.get("message") or err.get("status") or err.get("type") or err.get("code")
    return str(message) if message else json.dumps(body)[:200]


def retry_after_header(headers: Mapping[str, str]) -> float | None:
    """Seconds asked for by ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    parsed = email.utils.parsedate_to_datetime(raw) if raw else None
    return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def retry_info_delay(body: Any) -> float | None:
    """Gemini's ``google.rpc.RetryInfo.retryDelay`` from an error body, in seconds."""
    details = error_object(body).get("details")
    for item in details if isinstance(details, list) else ():
        if not isinstance(item, dict) or not str(item.get("@type", "")).endswith("RetryInfo"):
            continue
        delay = item.get("retryDelay")
        if isinstance(delay, str):
            try:
                return max(0.0, float(delay.strip().removesuffix("s")))
            except ValueError:
                return None
        if isinstance(delay, dict):
            return float(delay.get("seconds", 0) or 0) + float(delay.get("nanos", 0) or 0) / 1e9
    return None


def classify_http(status: int, body: Any, headers: Mapping[str, str], *,
                  key_env: str | None, secret: str | None) -> BotError | TransientError:
    """Map an HTTP failure to a bot error category (or a retryable :class:`TransientError`)."""
    message = scrub(error_message(body), secret)
    blob = (json.dumps(body, ensure_ascii=False) if not isinstance(body, str | bytes)
            else str(body)).lower()
    where = f"HTTP {status}: {message}"
    key_name = key_env or "the API key variable"
    if status == 401 or (status in (400, 403) and any(w in blob for w in _BAD_KEY_WORDS)):
        log.error("upstream rejected the key from %s (%s)", key_name, where)
        return UpstreamConfig(f"key from {key_name} rejected; {where}", env=key_env)
    if status == 402:
        return UpstreamNoCredit(where)
    if status == 404 or (status in (400, 503) and any(
            w in blob for w in (*_MODEL_MISSING_WORDS, *_NO_CHANNEL_WORDS))):
        return ModelUnavailable(where)
    if status == 403:
        # OpenRouter's moderation answers 403 with metadata.reasons / flagged_input
        # (https://openrouter.ai/docs/api-reference/errors).
        err = error_object(body)
        meta = err.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        if meta.get("reasons") or "flagged_input" in meta or any(
                w in blob for w in ("moderation", "flagged")):
            return Refused(reason=message, finish_reason="HTTP 403")
        if any(w in blob for w in _NO_CREDIT_WORDS):
            return UpstreamNoCredit(where)
        log.error("upstream denied access with the key from %s (%s)", key_name, where)
        return UpstreamConfig(f"access denied for key from {key_name}; {where}", env=key_env)
    if status == 429 and (_QUOTA_ZERO.search(blob) or "insufficient_quota" in blob):
        return UpstreamNoCredit(where)
    if status in RETRY_STATUSES:
        hint = retry_after_header(headers)
        if hint is None:
            hint = retry_info_delay(body)
        return TransientError(where, retry_after=hint, status=status)
    if status in (400, 422) and any(w in blob for w in _REFUSAL_WORDS):
        return Refused(reason=scrub(error_message(body), secret), finish_reason=f"HTTP {status}")
    return UpstreamError(where)


async def read_json(status: int, content: bytes, headers: Mapping[str, str], *,
                    key_env: str | None, secret: str | None) -> dict[str, Any]:
    """Parse a response body; raise the error category for failures and non-JSON bodies."""
    try:
        body: Any = (await run_sync(leanjson.loads, content) if len(content) > _JSON_INLINE_LIMIT
                     else json.loads(content))
    except ValueError:
        if status >= 400:
            raise classify_http(status, content, headers, key_env=key_env, secret=secret) from None
        raise UpstreamError(f"HTTP {status} body is not JSON: {error_message(content)}") from None
    if status >= 400:
        raise classify_http(status, body, headers, key_env=key_env, secret=secret)
    embedded = body[0] if isinstance(body, list) and body else body
    if isinstance(embedded, dict) and "error" in embedded and not (
            {"choices", "candidates", "data"} & embedded.keys()):
        err = embedded["error"] if isinstance(embedded["error"], dict) else {}
        code = err.get("code")
        if isinstance(code, int) and 400 <= code <= 599:
            raise classify_http(code, embedded, headers, key_env=key_env, secret=secret)
        raise UpstreamError(f"HTTP {status} with an error body: {error_message(embedded)}")
    if not isinstance(body, dict):
        raise UpstreamError(f"HTTP {status} body is a JSON {type(body).__name__}, not an object")
    choice_error(body, headers, key_env=key_env, secret=secret)
    return body


def choice_error(body: dict[str, Any], headers: Mapping[str, str], *, key_env: str | None,
                 secret: str | None) -> None:
    """OpenRouter's mid-stream error in a 200: ``choices[0].error`` with ``finish_reason: "error"``.

    https://openrouter.ai/docs/api-reference/errors ("Errors during streaming / in a 200"): the
    error object carries an HTTP-like ``code``; 429 and 5xx are worth retrying.
    """
    choices = body.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(first, dict) or not isinstance(first.get("error"), dict):
        return
    err = first["error"]
    code = err.get("code")
    status = code if isinstance(code, int) and 400 <= code <= 599 else 502
    raise classify_http(status, {"error": err}, headers, key_env=key_env, secret=secret)


@contextmanager
def wire_failures(seconds: float) -> Iterator[None]:
    """httpx's timeouts and connection failures as :class:`TransientError` (retried)."""
    try:
        yield
    except httpx.TimeoutException:
        raise TransientError(f"no answer within {seconds:.0f} s", timeout=True) from None
    except httpx.TransportError as exc:
        raise TransientError(f"connection failed ({type(exc).__name__})") from None
