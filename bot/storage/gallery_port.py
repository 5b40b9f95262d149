"""The Store port's part for issue 16: /history pages and /describe's suggestions."""

from __future__ import annotations

from typing import Protocol

from bot.domain import Turn


class GalleryStore(Protocol):
    """What /history and /describe keep (migration 0008; both engines)."""

    async def turns_page(self, actor_key: str, offset: int, limit: int) -> tuple[list[Turn], int]:
        """A page of an actor's turns, newest first, and how many they have (/history)."""
        ...

    async def save_suggestions(self, sid: str, actor_key: str, prompts: list[str]) -> None:
        """Keep /describe's suggested prompts for their buttons."""
        ...

    async def suggestions(self, sid: str) -> tuple[str, list[str]] | None:
        """Whose suggestions ``sid`` are, and the prompts."""
        ...

    async def forget_suggestions(self, actor_key: str) -> None:
        """Delete every suggestion kept for an actor (/forget)."""
        ...
