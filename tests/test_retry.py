"""Retry policy, HTTP failure classification, and the provider factory's wiring."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import pytest

from bot.config import ProviderSection
from bot.errors import (
    BotError,
    ConfigError,
    JobTimeout,
    ModelUnavailable,
    Refused,
    UpstreamBusy,
    UpstreamConfig,
    UpstreamError,
    UpstreamNoCredit,
)
from bot.providers.factory import build_provider
from bot.providers.gemini import GeminiProvider
from bot.providers.openai_chat import OpenAIChatProvider
from bot.providers.openai_images import OpenAIImagesProvider
from bot.providers.retry import RetryPolicy, TransientError
from bot.providers.wire.http_errors import (
    classify_http,
    error_message,
    retry_after_header,
    retry_info_delay,
)
from tests.fake_upstream import Sleeps

KEY = "sk-live-SECRET-123456"


def flaky(*failures: BaseException, result: str = "ok") -> tuple[Any, list[int]]:
    """A call that raises ``failures`` in turn, then returns ``result``; counts attempts."""
    calls = [0]

    async def call() -> str:
        calls[0] += 1
        if calls[0] <= len(failures):
            raise failures[calls[0] - 1]
        return result

    return call, calls


def policy(sleeps: Sleeps, **kw: Any) -> RetryPolicy:
    """A deterministic policy (jitter fixed at its midpoint)."""
    return RetryPolicy(sleep=sleeps, jitter=lambda: 0.5, **kw)


async def test_retries_with_exponential_backoff_then_succeeds() -> None:
    sleeps = Sleeps()
    call, calls = flaky(TransientError("503"), TransientError("503"), TransientError("503"))
    assert await policy(sleeps, max_retries=3).run(call, job_seconds=60) == "ok"
    assert calls[0] == 4
    assert sleeps == [0.75, 1.5, 3.0]  # 1, 2, 4 s with equal jitter at 0.5


async def test_backoff_is_capped_and_jittered() -> None:
    p = RetryPolicy(cap_seconds=5, jitter=lambda: 1.0)
    assert [p.backoff(n) for n in range(5)] == [1, 2, 4, 5, 5]
    assert RetryPolicy(jitter=lambda: 0.0).backoff(3) == 4.0


async def test_server_hint_is_honoured() -> None:
    sleeps = Sleeps()
    call, _ = flaky(TransientError("429", retry_after=7.0))
    assert await policy(sleeps).run(call, job_seconds=60) == "ok"
    assert sleeps == [7.0]


async def test_hint_beyond_cap_fails_at_once_with_the_wait() -> None:
    sleeps = Sleeps()
    call, calls = flaky(TransientError("429", retry_after=90.0))
    with pytest.raises(UpstreamBusy) as info:
        await policy(sleeps, cap_seconds=30).run(call, job_seconds=60)
    assert calls[0] == 1 and sleeps == []
    assert info.value.params["retry_after"] == 90


async def test_exhausted_retries_mean_busy() -> None:
    sleeps = Sleeps()
    call, calls = flaky(*[TransientError("HTTP 503: overloaded")] * 5)
    with pytest.raises(UpstreamBusy) as info:
        await policy(sleeps, max_retries=2).run(call, job_seconds=60)
    assert calls[0] == 3 and len(sleeps) == 2
    assert info.value.params["retry_after"] >= 1


async def test_exhausted_timeouts_mean_job_timeout() -> None:
    call, calls = flaky(*[TransientError("slow", timeout=True)] * 3)
    with pytest.raises(JobTimeout) as info:
        await policy(Sleeps(), max_retries=1).run(call, job_seconds=45)
    assert calls[0] == 2 and info.value.params["seconds"] == 45


async def test_zero_retries_and_final_errors_are_not_retried() -> None:
    sleeps = Sleeps()
    call, calls = flaky(TransientError("503"))
    with pytest.raises(UpstreamBusy):
        await policy(sleeps, max_retries=0).run(call, job_seconds=60)
    call, calls = flaky(Refused("no"))
    with pytest.raises(Refused):
        await policy(sleeps).run(call, job_seconds=60)
    assert calls[0] == 1 and sleeps == []


def test_from_section() -> None:
    section = ProviderSection(api="gemini", max_retries=5, retry_cap_seconds=12)
    p = RetryPolicy.from_section(section, sleep=Sleeps())
    assert (p.max_retries, p.cap_seconds) == (5, 12)


def _classify(status: int, body: Any, headers: dict[str, str] | None = None
              ) -> BotError | TransientError:
    return classify_http(status, body, headers or {}, key_env="RELAY_KEY", secret=KEY)


@pytest.mark.parametrize(("status", "body", "kind"), [
    (401, {"error": {"message": f"Incorrect API key provided: {KEY}"}}, UpstreamConfig),
    (400, {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                     "status": "INVALID_ARGUMENT",
                     "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                  "reason": "API_KEY_INVALID"}]}}, UpstreamConfig),
    (403, {"error": {"message": "Permission denied", "status": "PERMISSION_DENIED"}},
     UpstreamConfig),
    (403, {"error": {"message": "用户额度不足, 剩余额度: $0.01", "type": "new_api_error"}},
     UpstreamNoCredit),
    (403, {"error": {"message": "Insufficient balance"}}, UpstreamNoCredit),
    (402, {"error": {"message": "This request requires more credits"}}, UpstreamNoCredit),
    (400, {"error": {"message": "Your request was rejected by the safety system.",
                     "code": "moderation_blocked"}}, Refused),
    (400, {"error": {"message": "prompt blocked: PROHIBITED_CONTENT"}}, Refused),
    (400, {"error": {"message": "Unsupported parameter: 'foo'"}}, UpstreamError),
    (404, {"error": {"message": "model not found"}}, ModelUnavailable),
    (429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message":
           "Quota exceeded for metric: generativelanguage.googleapis.com/"
           "generate_content_free_tier_requests, limit: 0, model: gemini-2.5-flash-image"}},
     UpstreamNoCredit),
    (429, {"error": {"message": "You exceeded your current quota",
                     "type": "insufficient_quota", "code": "insufficient_quota"}},
     UpstreamNoCredit),
    (429, {"error": {"message": "Rate limit reached"}}, TransientError),
    (500, {"error": {"message": "internal"}}, TransientError),
    (502, "<html><title>502 Bad Gateway</title></html>", TransientError),
    (503, {"error": {"message": "The model is overloaded"}}, TransientError),
    (504, b"", TransientError),
])
def test_classify(status: int, body: Any, kind: type[Exception]) -> None:
    error = _classify(status, body)
    assert isinstance(error, kind)
    assert KEY not in str(error) and KEY not in repr(getattr(error, "params", ""))


def test_config_errors_name_the_env_var(caplog: pytest.LogCaptureFixture) -> None:
    error = _classify(401, {"error": {"message": f"bad key {KEY}"}})
    assert "RELAY_KEY" in str(error) and "***" in str(error)
    assert "RELAY_KEY" in caplog.text and KEY not in caplog.text


def test_quota_value_zero_in_details_is_not_retried() -> None:
    body: dict[str, Any] = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota",
                      "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                                   "violations": [{"quotaId": "PerDay", "quotaValue": "0"}]}]}}
    assert isinstance(_classify(429, body), UpstreamNoCredit)
    body["error"]["details"][0]["violations"][0]["quotaValue"] = "1500"
    assert isinstance(_classify(429, body), TransientError)


def test_retry_hints() -> None:
    assert retry_after_header({"Retry-After": "12"}) == 12
    assert retry_after_header({"retry-after-ms": "1500"}) == 1.5
    future = email.utils.formatdate(time.time() + 20, usegmt=True)
    assert 15 <= (retry_after_header({"Retry-After": future}) or 0) <= 21
    assert retry_after_header({}) is None
    info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "45.837906927s"}
    assert retry_info_delay({"error": {"details": [info]}}) == pytest.approx(45.837906927)
    assert retry_info_delay([{"error": {"details": [{**info, "retryDelay": "7s"}]}}]) == 7
    nested = {"error": {"message": '{"error": {"code": 429, "details": [{"@type": '
                                   '"type.googleapis.com/google.rpc.RetryInfo", '
                                   '"retryDelay": "3s"}]}}'}}
    assert retry_info_delay(nested) == 3
    error = _classify(429, {"error": {"details": [{**info, "retryDelay": "9s"}]}})
    assert isinstance(error, TransientError) and error.retry_after == 9
    error = _classify(503, {}, {"Retry-After": "4"})
    assert isinstance(error, TransientError) and error.retry_after == 4


def test_error_message_shapes() -> None:
    assert error_message({"error": {"message": "boom"}}) == "boom"
    assert error_message([{"error": {"message": "vertex"}}]) == "vertex"
    assert error_message({"error": "plain"}) == "plain"
    assert "HTML page" in error_message(b"<html><body>nginx</body></html>")


async def test_factory_builds_each_api() -> None:
    sleeps = Sleeps()
    chat = build_provider("relay", ProviderSection(api="openai-chat", base_url="http://r/v1",
                                                   api_key_env="K"), api_key="k", sleep=sleeps)
    gemini = build_provider("g", ProviderSection(api="gemini"), api_key="k")
    images = build_provider("i", ProviderSection(api="openai-images"), api_key="k")
    assert isinstance(chat, OpenAIChatProvider) and isinstance(gemini, GeminiProvider)
    assert isinstance(images, OpenAIImagesProvider) and chat.name == "relay"
    for provider in (chat, gemini, images):
        await provider.aclose()


async def test_factory_demo() -> None:
    demo = pytest.importorskip("bot.providers.demo")
    provider = build_provider("demo", ProviderSection(api="demo"), api_key=None)
    assert isinstance(provider, demo.DemoProvider)
    await provider.aclose()


def test_factory_config_errors() -> None:
    with pytest.raises(ConfigError, match="MY_KEY"):
        build_provider("g", ProviderSection(api="gemini", api_key_env="MY_KEY"), api_key=None)
    with pytest.raises(ConfigError, match="base_url is required"):
        build_provider("r", ProviderSection(api="openai-chat"), api_key="k")
