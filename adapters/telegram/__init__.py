"""Telegram adapter on python-telegram-bot: /imagine, albums, reply-to-edit, groups, buttons."""

from adapters.telegram.app import TelegramAdapter
from adapters.telegram.progress import Timing

__all__ = ["TelegramAdapter", "Timing"]
