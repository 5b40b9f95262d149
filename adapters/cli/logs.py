"""Logging set-up: text or JSON lines, with secrets from the environment redacted."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

from bot.config import LogSection
from bot.redact import MASK, secret_values


class RedactingFilter(logging.Filter):
    """Replaces any secret env var value in a record's final message with ``***``."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        super().__init__()
        self._values = secret_values(names)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact in place; always keep the record."""
        if not self._values:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        changed = message
        for value in self._values:
            changed = changed.replace(value, MASK)
            if record.exc_text:
                record.exc_text = record.exc_text.replace(value, MASK)
        if changed != message:
            record.msg, record.args = changed, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with any ``extra`` fields kept."""

    _skip = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        """Serialize one record."""
        data: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update({k: v for k, v in record.__dict__.items() if k not in self._skip})
        if record.exc_info or record.exc_text:
            data["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(data, default=str, ensure_ascii=False)


def setup_logging(section: LogSection, secret_env_names: Iterable[str] = ()) -> None:
    """Configure the root logger once for the process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(secret_env_names))
    if section.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(section.level)
    for noisy in ("httpx", "httpx2", "httpcore", "openai", "telegram.ext", "discord.gateway",
                  "botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
