"""Stacked bar charts as inline SVG (no script, no network): one bar per day."""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape

PALETTE = 8
#: A wide drawing for desktops and a narrow one for phones, so text stays legible on both.
SHAPES = {"wide": (960, 250), "narrow": (400, 260)}
PAD_X, TOP, BOTTOM = 6, 20, 24


def nice_step(value: float, integer: bool = False) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``value``."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        if step * power >= value - 1e-12:
            found = step * power
            return max(1.0, found) if integer else found
    return 10.0 * power


def axis(top_value: float, integer: bool = False) -> tuple[float, int]:
    """(step, count) of grid lines covering ``top_value`` with about four steps."""
    step = nice_step(max(top_value, 1e-9 if not integer else 1.0) / 4, integer)
    return step, max(1, math.ceil(top_value / step - 1e-9))


def stacked_bars(days: list[str], series: dict[str, list[float]], *, today: str,
                 fmt: Callable[[float], str], label: str, chart_id: str, shape: str = "wide",
                 integer: bool = False) -> str:
    """An SVG with one stacked bar per day; each day's group carries its total as a title."""
    width, height = SHAPES[shape]
    plot_w, plot_h = width - 2 * PAD_X, height - TOP - BOTTOM
    totals = [sum(values[i] for values in series.values()) for i in range(len(days))]
    step, count = axis(max(totals, default=0.0), integer)
    top = step * count
    slot = plot_w / max(1, len(days))
    bar = max(2.0, slot * 0.66)
    out = [f'<svg class="chart {shape}" id="{escape(chart_id)}-{shape}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">']
    labels = []
    for tick in range(count + 1):
        y = TOP + plot_h - plot_h * tick / count
        out.append(f'<line class="grid" x1="{PAD_X}" x2="{width - PAD_X}" y1="{y:.1f}" '
                   f'y2="{y:.1f}"/>')
        if tick:  # value labels sit on their grid line, inside the plot, drawn over the bars
            labels.append(f'<text class="axis val" x="{PAD_X + 2}" y="{y - 4:.1f}">'
                          f"{escape(fmt(step * tick))}</text>")
    names = list(series)
    for i, day in enumerate(days):
        x = PAD_X + slot * i + (slot - bar) / 2
        parts = [(n, series[n][i]) for n in names if series[n][i] > 0]
        detail = ", ".join(f"{n} {fmt(v)}" for n, v in parts)
        title = f"{day}: {fmt(totals[i])}" + (f" ({detail})" if detail else "")
        css = "day today" if day == today else "day"
        out.append(f'<g class="{css}" data-day="{day}" data-total="{escape(fmt(totals[i]))}" '
                   f'tabindex="0"><title>{escape(title)}</title>')
        out.append(f'<rect class="hit" x="{PAD_X + slot * i:.1f}" y="{TOP}" width="{slot:.1f}" '
                   f'height="{plot_h}"/>')
        y = TOP + plot_h
        for name, value in parts:
            h = plot_h * value / top
            y -= h
            out.append(f'<rect class="s{names.index(name) % PALETTE}" x="{x:.1f}" y="{y:.1f}" '
                       f'width="{bar:.1f}" height="{max(h, 0.8):.1f}" rx="1.5"/>')
        out.append("</g>")
        if (len(days) - 1 - i) % 7 == 0:
            last = i == len(days) - 1
            css = "axis now" if day == today else "axis"
            label_x = width - PAD_X if last else x + bar / 2
            out.append(f'<text class="{css}" x="{label_x:.1f}" y="{height - 7}" '
                       f'text-anchor="{"end" if last else "middle"}">{escape(day[5:])}</text>')
    out.extend(labels)
    out.append("</svg>")
    return "".join(out)

