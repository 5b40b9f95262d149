"""Everything a reservation or a usage reads about an actor, in one read (``QuotaTx.standing``).

A reservation and the caption's usage each read six to eight counters inside their transaction;
on SQLite each read was a trip to the connection's thread (a future, a wake-up of the event
loop) while the transaction held the database. SQLite answers them all in one statement;
:func:`standing_of` composes the single reads for an engine whose reads are already cheap
(PostgreSQL reads the rows ``lock`` took from memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.storage.base import QuotaTx


@dataclass(frozen=True, slots=True)
class Standing:
    """An actor's limit overrides and counters (a chat's day and the held credits if asked)."""

    daily_limit: int | None
    monthly_limit: int | None
    used_day: int
    used_month: int
    bonus: int
    paid: int
    #: Credits held or spent in the chat asked for on the day (0 when none was asked for).
    chat_day: int = 0
    #: Credits currently held for the actor (0 unless asked for).
    reserved: int = 0


async def standing_of(tx: QuotaTx, actor_key: str, day: str, month: str, *,
                      chat_key: str | None = None, reserved: bool = False) -> Standing:
    """:class:`Standing` from the port's single reads, in the order the quotas read them."""
    daily, monthly = await tx.limits(actor_key)
    return Standing(
        daily_limit=daily, monthly_limit=monthly,
        used_day=await tx.used_credits(actor_key, day=day),
        used_month=await tx.used_credits(actor_key, month=month),
        bonus=await tx.bonus(actor_key), paid=await tx.paid(actor_key),
        chat_day=await tx.chat_used(chat_key, day) if chat_key is not None else 0,
        reserved=await tx.reserved(actor_key) if reserved else 0)
