"""Inline keyboards and their callback data: result buttons, the /settings menu, /forget."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.api import Action

#: ``BotApi.t``: catalog text in a locale.
Translate = Callable[..., str]
#: Telegram rejects callback_data longer than 64 bytes
#: (https://core.telegram.org/bots/api#inlinekeyboardbutton).
CALLBACK_LIMIT = 64
#: Telegram shows at most 200 characters in a callback answer
#: (https://core.telegram.org/bots/api#answercallbackquery).
ANSWER_LIMIT = 200
SETTINGS = ("model", "size", "aspect", "locale", "search", "n", "style")
_LABELS = {"model": "settings.model", "size": "settings.size", "aspect": "settings.aspect",
           "locale": "settings.language", "search": "settings.search", "n": "settings.n",
           "style": "settings.style"}
_PER_ROW = {"model": 1, "size": 4, "aspect": 5, "locale": 3, "search": 2, "n": 4, "style": 2}
DEFAULT = "*"


def _button(text: str, data: str) -> InlineKeyboardButton | None:
    if len(data.encode()) > CALLBACK_LIMIT:
        return None
    return InlineKeyboardButton(text, callback_data=data)


def _rows(buttons: Sequence[InlineKeyboardButton | None], per_row: int) -> list[
        list[InlineKeyboardButton]]:
    kept = [b for b in buttons if b is not None]
    return [kept[i:i + per_row] for i in range(0, len(kept), per_row)]


def result_keyboard(actions: Sequence[Action], t: Translate,
                    locale: str) -> InlineKeyboardMarkup | None:
    """Reroll and larger sizes on the first row; Variations, Edit, Delete on the second."""
    if not actions:
        return None
    first: list[InlineKeyboardButton | None] = []
    second: list[InlineKeyboardButton | None] = []
    for action in actions:
        if action.kind == "upscale":
            text = t(locale, "button.upscale", size=action.size, cost=action.cost)
        else:
            text = t(locale, f"button.{action.kind}")
        row = first if action.kind in ("reroll", "upscale") else second
        row.append(_button(text, action.encode()))
    rows = [[b for b in row if b is not None] for row in (first, second)]
    return InlineKeyboardMarkup([r for r in rows if r])


def batch_keyboard(actions: Sequence[Action],
                   label: Callable[[Action], str]) -> InlineKeyboardMarkup | None:
    """A batch's keyboard: U1..Un on one row, V1..Vn on the next, then Reroll (and the rest)."""
    rows: dict[int, list[InlineKeyboardButton | None]] = {}
    for action in actions:
        row = (0 if action.kind == "upscale" else 1) if action.index is not None else 2
        rows.setdefault(row, []).append(_button(label(action), action.encode()))
    kept = [[b for b in rows[r] if b is not None] for r in sorted(rows)]
    return InlineKeyboardMarkup([r for r in kept if r]) if any(kept) else None


def describe_keyboard(sid: str, count: int, t: Translate, locale: str) -> InlineKeyboardMarkup:
    """One button per /describe prompt: ``ibd:<id>:<n>`` runs prompt n as /imagine."""
    buttons = [_button(t(locale, "button.use_prompt", n=n), f"ibd:{sid}:{n}")
               for n in range(1, count + 1)]
    return InlineKeyboardMarkup(_rows(buttons, 4))


def parse_describe(raw: str) -> tuple[str, int] | None:
    """``ibd:<id>:<n>`` -> (id, n)."""
    parts = raw.split(":")
    if len(parts) != 3 or parts[0] != "ibd" or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


#: /history shows these of each result's buttons (Edit needs a reply; Delete is on the result).
HISTORY_KINDS = ("reroll", "upscale", "variations")


def history_keyboard(items: Sequence[tuple[int, Sequence[Action]]], page: int, pages: int,
                     owner: int, label: Callable[[Action], str], t: Translate,
                     locale: str) -> InlineKeyboardMarkup | None:
    """Per result a row of its buttons, numbered as the page lists them, then Newer / Older."""
    rows = [[b for b in (_button(f"{n} · {label(a)}", a.encode()) for a in actions
                         if a.kind in HISTORY_KINDS) if b is not None] for n, actions in items]
    nav = []
    if page > 1:
        nav.append(InlineKeyboardButton(t(locale, "button.prev"),
                                        callback_data=f"ibh:{owner}:{page - 1}"))
    if page < pages:
        nav.append(InlineKeyboardButton(t(locale, "button.next"),
                                        callback_data=f"ibh:{owner}:{page + 1}"))
    kept = [r for r in (*rows, nav) if r]
    return InlineKeyboardMarkup(kept) if kept else None


def parse_history(raw: str) -> tuple[int, int] | None:
    """``ibh:<owner>:<page>`` -> (owner, page)."""
    parts = raw.split(":")
    if (len(parts) != 3 or parts[0] != "ibh" or not parts[1].lstrip("-").isdigit()
            or not parts[2].isdigit()):
        return None
    return int(parts[1]), int(parts[2])


def setting_label(t: Translate, locale: str, name: str) -> str:
    """The translated name of a setting."""
    return t(locale, _LABELS[name])


def value_label(t: Translate, locale: str, name: str, value: str) -> str:
    """How a setting's value is shown (languages by their own name)."""
    if name == "locale":
        return t(locale, f"telegram.language.{value.replace('-', '_')}")
    if name == "style":  # a preset's catalog name; an operator's own preset by its name
        shown = t(locale, f"style.{value}")
        return value if shown == f"style.{value}" else shown
    return value


@dataclass(frozen=True, slots=True)
class SettingsData:
    """A /settings button: whose menu, what it does (menu, open, set) and its argument."""

    owner: int
    op: str
    name: str = ""
    value: str = ""

    def encode(self) -> str:
        """``st:<owner>:<op>:<name>=<value>`` (aspect values contain ':', so it comes last)."""
        return f"st:{self.owner}:{self.op}:{self.name}={self.value}"

    @staticmethod
    def decode(raw: str) -> SettingsData | None:
        """Parse :meth:`encode`'s output."""
        parts = raw.split(":", 3)
        if len(parts) != 4 or parts[0] != "st" or not parts[1].lstrip("-").isdigit():
            return None
        name, _, value = parts[3].partition("=")
        return SettingsData(int(parts[1]), parts[2], name, value)


def settings_menu(t: Translate, locale: str, owner: int) -> InlineKeyboardMarkup:
    """One button per setting."""
    buttons = [_button(setting_label(t, locale, name),
                       SettingsData(owner, "open", name).encode()) for name in SETTINGS]
    return InlineKeyboardMarkup(_rows(buttons, 2))


def settings_choices(t: Translate, locale: str, owner: int, name: str,
                     choices: Sequence[str], current: str | None) -> InlineKeyboardMarkup:
    """The values of one setting (the current one ticked), Default and Back."""
    buttons = [_button(("✓ " if value == current else "") + value_label(t, locale, name,
                                                                        value),
                       SettingsData(owner, "set", name, value).encode()) for value in choices]
    rows = _rows(buttons, _PER_ROW[name])
    rows.append([b for b in (
        _button(t(locale, "telegram.settings_default"),
                SettingsData(owner, "set", name, DEFAULT).encode()),
        _button(t(locale, "telegram.settings_back"),
                SettingsData(owner, "menu").encode())) if b is not None])
    return InlineKeyboardMarkup(rows)


def forget_keyboard(t: Translate, locale: str, owner: int) -> InlineKeyboardMarkup:
    """Confirm or cancel /forget."""
    return InlineKeyboardMarkup([[
        InlineKeyboardButton(t(locale, "forget.confirm_button"),
                             callback_data=f"fg:{owner}:yes"),
        InlineKeyboardButton(t(locale, "telegram.forget_cancel"),
                             callback_data=f"fg:{owner}:no"),
    ]])


def parse_forget(raw: str) -> tuple[int, bool] | None:
    """``fg:<owner>:yes|no`` -> (owner, confirmed)."""
    parts = raw.split(":")
    if len(parts) != 3 or parts[0] != "fg" or not parts[1].lstrip("-").isdigit():
        return None
    return int(parts[1]), parts[2] == "yes"
