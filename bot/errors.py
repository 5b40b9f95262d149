"""Typed errors; each carries a message-catalog key and parameters, never user-facing text."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any


class BotError(Exception):
    """Base of every error a user may be told about; ``key`` picks the catalog message."""

    key = "error.internal"
    #: Exit code of ``imagine-bot generate`` for this category (README: "`generate` exit codes").
    exit_code = 4

    def __init__(self, detail: str = "", **params: Any) -> None:
        super().__init__(detail or self.key)
        self.detail = detail
        self.params: dict[str, Any] = params


class QuotaExceeded(BotError):
    """A quota window has too few credits left."""

    key = "error.quota"
    exit_code = 2

    def __init__(self, window: str, left: float, cost: float, resets_at: datetime | None) -> None:
        super().__init__(f"quota window {window} exhausted", window=window, left=left, cost=cost,
                         resets_at=resets_at)


class Refused(BotError):
    """The model refused (safety); ``reason`` is the model's own words when it gave any."""

    key = "error.refused"
    exit_code = 3

    def __init__(self, reason: str = "", finish_reason: str = "") -> None:
        super().__init__(reason or finish_reason or "refused", reason=reason,
                         finish_reason=finish_reason)


class RefusedCharged(Refused):
    """A refusal that was charged (``[quota] charge_refusals = true``)."""

    key = "error.refused_charged"


class NoImage(BotError):
    """The model answered without an image."""

    key = "error.no_image"
    exit_code = 3

    def __init__(self, text: str = "") -> None:
        super().__init__(text or "no image", text=text)


class UpstreamBusy(BotError):
    """The upstream is rate limited or overloaded; try again in ``retry_after`` seconds."""

    key = "error.busy"
    exit_code = 4

    def __init__(self, retry_after: float = 30.0, detail: str = "") -> None:
        super().__init__(detail or "upstream busy", retry_after=round(retry_after))


class UpstreamError(BotError):
    """The upstream failed in a way retrying will not fix (bad body, unexpected status)."""

    key = "error.upstream"
    exit_code = 4


class UpstreamConfig(BotError):
    """The operator's key or endpoint is wrong (401/403); users see a neutral message."""

    key = "error.unavailable"
    exit_code = 4


class ModelUnavailable(UpstreamConfig):
    """The route does not serve this model (404, "model not found", "no available channel")."""

    key = "error.model_unavailable"

    def __init__(self, detail: str = "", model: str = "") -> None:
        super().__init__(detail, model=model or "this model")


class UpstreamNoCredit(BotError):
    """The relay account is out of credit (402)."""

    key = "error.unavailable"
    exit_code = 4


class JobTimeout(BotError):
    """The job took longer than its size's time limit."""

    key = "error.timeout"
    exit_code = 4

    def __init__(self, seconds: float) -> None:
        super().__init__(f"timed out after {seconds:.0f} s", seconds=int(seconds))


class InputTooLarge(BotError):
    """An input file is larger than allowed."""

    key = "error.too_large"
    exit_code = 5

    def __init__(self, size_mb: float, limit_mb: float) -> None:
        super().__init__(f"input {size_mb:.1f} MB > {limit_mb:.1f} MB",
                         size_mb=round(size_mb, 1), limit_mb=round(limit_mb, 1))


class UnsupportedImage(BotError):
    """An input is not an image we can read."""

    key = "error.unsupported"
    exit_code = 5

    def __init__(self, what: str) -> None:
        super().__init__(f"unsupported image: {what}", what=what)


class TooManyReferences(BotError):
    """More reference images than the model accepts."""

    key = "error.too_many_refs"
    exit_code = 5

    def __init__(self, count: int, limit: int, model: str) -> None:
        super().__init__(f"{count} references > {limit} for {model}", count=count, limit=limit,
                         model=model)


class InvalidOption(BotError):
    """An option value the chosen model does not offer."""

    key = "error.invalid_option"
    exit_code = 5

    def __init__(self, option: str, value: str, allowed: list[str]) -> None:
        super().__init__(f"{option}={value!r}; allowed: {', '.join(allowed)}", option=option,
                         value=value, allowed=", ".join(allowed))


class EmptyPrompt(BotError):
    """The prompt is empty."""

    key = "error.empty_prompt"
    exit_code = 5


class NotAllowed(BotError):
    """The actor may not do this here."""

    key = "error.not_allowed"
    exit_code = 2


class Banned(BotError):
    """The actor is banned."""

    key = "error.banned"
    exit_code = 2


class NotFound(BotError):
    """The turn (or image) is gone: deleted, forgotten or expired."""

    key = "error.not_found"
    exit_code = 5


class QueueFull(BotError):
    """The global queue is full."""

    key = "error.queue_full"
    exit_code = 4


class TooManyWaiting(BotError):
    """The actor already has the maximum number of jobs waiting."""

    key = "error.too_many_waiting"
    exit_code = 4

    def __init__(self, waiting: int) -> None:
        super().__init__(f"{waiting} jobs waiting", waiting=waiting)


class Cancelled(BotError):
    """The job was cancelled (by the requester or by shutdown); it was refunded."""

    key = "error.cancelled"
    exit_code = 4


class HandedOver(Cancelled):
    """Another process makes the job from its ticket (bot/handoff.py): this one stops, or it
    stalled past its lease while the job waited."""

    key = "error.handed_over"


class ConfigError(BotError):
    """The configuration is invalid or a secret is missing."""

    key = "error.unavailable"
    exit_code = 2


class InternalError(BotError):
    """Anything unexpected; users see a short error id, the log has the traceback."""

    key = "error.internal"
    exit_code = 4

    def __init__(self, detail: str = "") -> None:
        error_id = secrets.token_hex(4)
        super().__init__(detail or "internal error", error_id=error_id)
        self.error_id = error_id


class UnknownFlag(BotError):
    """An inline ``--flag`` in the prompt that we do not know."""

    key = "error.unknown_flag"
    exit_code = 5

    def __init__(self, flag: str) -> None:
        super().__init__(f"unknown flag {flag}", flag=flag)


class MissingValue(BotError):
    """An inline ``--flag`` that needs a value and got none (``--size`` at the end)."""

    key = "error.missing_value"
    exit_code = 5

    def __init__(self, flag: str) -> None:
        super().__init__(f"{flag} needs a value", flag=flag)


class NoReference(BotError):
    """An edit with nothing to edit (no bound message, no image)."""

    key = "error.no_reference"
    exit_code = 5


class NotOwner(BotError):
    """Someone other than the requester pressed a result's button."""

    key = "error.not_owner"
    exit_code = 2


class StoreUnavailable(BotError):
    """The database or the image store refused a write (read-only, full, broken disk)."""

    key = "error.store"
    exit_code = 4


class BadGrant(BotError):
    """A grant of 0 credits, or of more than the one limit every grant path shares."""

    key = "error.bad_grant"
    exit_code = 2

    def __init__(self, credits: object, limit: int) -> None:
        super().__init__(f"grant of {credits!r} credits; allowed 1..{limit} or -{limit}..-1",
                         limit=limit)


class BadUser(BotError):
    """A user given in a form the bot does not know (``telegram:42``, ``discord:42``, ``web:ID``)."""

    key = "admin.bad_user"
    exit_code = 2

    def __init__(self, user: str = "") -> None:
        super().__init__(f"not a user: {user!r}", user=user)
