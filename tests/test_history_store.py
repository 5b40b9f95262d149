"""Issue 16 on both engines (SQLite, PostgreSQL): a turn's recipe, /settings n and style,
/history pages, /describe's suggestions and /forget of them (migration 0008)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.domain import Turn, UserSettings
from tests.store_engines import AnyStore

BASE = datetime(2026, 11, 1, tzinfo=UTC)


def turn(turn_id: str, minute: int, actor: str = "telegram:1", **recipe: object) -> Turn:
    return Turn(id=turn_id, actor_key=actor, chat_key="telegram:1", prompt=f"p {turn_id}",
                model="nano-banana-2", size="1K", aspect="1:1", parent_id=None,
                input_hashes=(), output_hashes=("ab" * 32,), provider_state=None,
                created_at=BASE + timedelta(minutes=minute), **recipe)  # type: ignore[arg-type]


async def test_a_turn_keeps_its_style_and_exclusions(store: AnyStore) -> None:
    styled = turn("s", 0, style="watercolor", negative=("cars", "people"))
    await store.add_turn(styled)
    await store.add_turn(turn("plain", 1))
    assert await store.get_turn("s") == styled
    plain = await store.get_turn("plain")
    assert plain is not None and (plain.style, plain.negative) == (None, ())


async def test_settings_keep_n_and_style(store: AnyStore) -> None:
    await store.save_user_settings("discord:9", UserSettings(n=4, style="pixel"))
    saved = (await store.get_user("discord:9")).settings
    assert (saved.n, saved.style) == (4, "pixel")
    await store.save_user_settings("discord:9", UserSettings())
    assert (await store.get_user("discord:9")).settings == UserSettings()


async def test_history_pages_newest_first_with_the_total(store: AnyStore) -> None:
    for minute in range(7):
        await store.add_turn(turn(f"t{minute}", minute))
    await store.add_turn(turn("other", 99, actor="telegram:2"))
    first, total = await store.turns_page("telegram:1", 0, 5)
    assert total == 7 and [t.id for t in first] == ["t6", "t5", "t4", "t3", "t2"]
    second, _ = await store.turns_page("telegram:1", 5, 5)
    assert [t.id for t in second] == ["t1", "t0"]
    assert await store.turns_page("telegram:1", 10, 5) == ([], 7)
    assert await store.turns_page("telegram:3", 0, 5) == ([], 0)


async def test_suggestions_are_kept_and_forgotten(store: AnyStore) -> None:
    await store.save_suggestions("d1", "telegram:1", ["a red fox", "一只狐狸"])
    await store.save_suggestions("d2", "telegram:2", ["an owl"])
    assert await store.suggestions("d1") == ("telegram:1", ["a red fox", "一只狐狸"])
    await store.forget_suggestions("telegram:1")
    assert await store.suggestions("d1") is None
    assert await store.suggestions("d2") == ("telegram:2", ["an owl"])
