"""Discord adapter: slash commands, an "Edit image" menu, reply edits and persistent buttons.

``app.py`` builds and runs it; the map of the whole path is docs/architecture.md.
"""

from __future__ import annotations

from adapters.discord.app import DiscordAdapter

__all__ = ["DiscordAdapter"]
