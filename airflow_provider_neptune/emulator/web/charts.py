"""Server-side SVG line charts with axes, tick labels and a linear or log y scale.

A chart is a `<figure class="chart">` holding two SVGs (linear and log; the page's script toggles
between them) and a JSON description of the drawn points and plot geometry for the hover read-out.
Every label is escaped: series names and units are user input.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 560
HEIGHT = 240
LEFT, RIGHT, TOP, BOTTOM = 70, 16, 12, 42
PALETTE = ("#2a6fdb", "#d9480f", "#2b8a3e", "#862e9c", "#c92a2a", "#0b7285", "#5f3dc4", "#e67700")


@dataclass(frozen=True)
class Line:
    """One curve: its legend label and points (steps ascending)."""

    label: str
    steps: Sequence[float]
    values: Sequence[float]


def fmt(value: float) -> str:
    """A compact number for labels and read-outs (4 significant digits, no trailing noise)."""
    if value == 0:
        return "0"
    if float(value).is_integer() and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.4g}"


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values inside [low, high], 1, 2, 2.5 or 5 times a power of ten apart.

    The step is the smallest round one giving at most `count` intervals, so at least count/2 of them.
    """
    if not math.isfinite(low) or not math.isfinite(high):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)]


def _domain(values: list[float], pad: float = 0.05) -> tuple[float, float]:
    low, high = min(values), max(values)
    if high == low:
        spread = abs(low) * 0.1 or 1.0
        return low - spread, high + spread
    margin = (high - low) * pad
    return low - margin, high + margin


def _log_ticks(low: float, high: float) -> list[float]:
    """Ticks for a log axis over [10**low, 10**high]: powers of ten, or round values within a decade."""
    first, last = math.ceil(low - 1e-9), math.floor(high + 1e-9)
    if last - first >= 1:
        stride = max(1, math.ceil((last - first + 1) / 6))
        return [10.0**e for e in range(first, last + 1, stride)]
    return [t for t in nice_ticks(10**low, 10**high) if t > 0]


def chart(lines: Sequence[Line], *, key: str, y_label: str = "value", legend: bool = False) -> str:
    """A figure with linear and log SVGs of `lines`, axes labelled `step` and `y_label`."""
    drawn = [(i, line) for i, line in enumerate(lines) if line.steps]
    if not drawn:
        return f"<figure class='chart empty' data-key='{escape(key, quote=True)}'><p>no points</p></figure>"
    steps = [s for _, line in drawn for s in line.steps]
    values = [v for _, line in drawn for v in line.values]
    x0, x1 = min(steps), max(steps)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    y_lin = _domain(values)
    log_ok = all(v > 0 for v in values)
    y_log = _domain([math.log10(v) for v in values]) if log_ok else None
    plot = (LEFT, TOP, WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM)
    info = {
        "key": key,
        "plot": plot,
        "x": [x0, x1],
        "y": list(y_lin),
        "ylog": list(y_log) if y_log else None,
        "lines": [
            {
                "label": line.label,
                "color": PALETTE[i % len(PALETTE)],
                "steps": list(line.steps),
                "values": list(line.values),
            }
            for i, line in drawn
        ],
    }
    svgs = [_svg(drawn, plot, (x0, x1), y_lin, log=False, y_label=y_label)]
    if y_log:
        svgs.append(_svg(drawn, plot, (x0, x1), y_log, log=True, y_label=y_label))
    legend_html = ""
    if legend:
        legend_html = (
            "<ul class='legend'>"
            + "".join(
                f"<li><span class='swatch' style='background:{PALETTE[i % len(PALETTE)]}'></span>"
                f"<span class='legend-label'>{escape(line.label)}</span></li>"
                for i, line in drawn
            )
            + "</ul>"
        )
    toggle = (
        "<label class='log'><input type='checkbox' class='log-toggle'> log scale</label>"
        if y_log
        else "<span class='log off' title='log scale needs positive values'>log scale n/a</span>"
    )
    data = escape(json.dumps(info, separators=(",", ":")), quote=True)
    return (
        f"<figure class='chart' data-key='{escape(key, quote=True)}' data-chart='{data}'>"
        f"<div class='chart-tools'>{toggle}<output class='readout'></output></div>"
        + "".join(svgs)
        + legend_html
        + "</figure>"
    )


def _svg(
    drawn: list[tuple[int, Line]],
    plot: tuple[int, int, int, int],
    xs: tuple[float, float],
    ys: tuple[float, float],
    *,
    log: bool,
    y_label: str,
) -> str:
    left, top, width, height = plot
    x0, x1 = xs
    y0, y1 = ys

    def px(step: float) -> float:
        return left + (step - x0) / (x1 - x0) * width

    def py(value: float) -> float:
        v = math.log10(value) if log else value
        return top + height - (v - y0) / (y1 - y0) * height

    parts = [
        f"<svg class='{'log' if log else 'lin'}' width='{WIDTH}' height='{HEIGHT}' "
        f"viewBox='0 0 {WIDTH} {HEIGHT}' role='img'" + (" style='display:none'" if log else "") + ">",
        f"<rect class='plot' x='{left}' y='{top}' width='{width}' height='{height}' fill='#fff' "
        "stroke='#bbb'/>",
    ]
    for tick in nice_ticks(x0, x1):
        x = px(tick)
        parts.append(
            f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top + height}' y2='{top + height + 5}' stroke='#666'/>"
            f"<text class='xtick' x='{x:.1f}' y='{top + height + 17}' text-anchor='middle'>{fmt(tick)}</text>"
        )
    y_ticks = _log_ticks(y0, y1) if log else nice_ticks(y0, y1)
    for tick in y_ticks:
        y = py(tick)
        if not top - 0.5 <= y <= top + height + 0.5:
            continue
        parts.append(
            f"<line x1='{left}' x2='{left + width}' y1='{y:.1f}' y2='{y:.1f}' stroke='#eee'/>"
            f"<line x1='{left - 5}' x2='{left}' y1='{y:.1f}' y2='{y:.1f}' stroke='#666'/>"
            f"<text class='ytick' x='{left - 8}' y='{y + 4:.1f}' text-anchor='end'>{fmt(tick)}</text>"
        )
    parts.append(
        f"<text class='xlabel' x='{left + width / 2:.0f}' y='{HEIGHT - 6}' text-anchor='middle'>step</text>"
        f"<text class='ylabel' x='14' y='{top + height / 2:.0f}' text-anchor='middle' "
        f"transform='rotate(-90 14 {top + height / 2:.0f})'>{escape(y_label)}"
        f"{' (log)' if log else ''}</text>"
    )
    for i, line in drawn:
        color = PALETTE[i % len(PALETTE)]
        points = " ".join(f"{px(s):.1f},{py(v):.1f}" for s, v in zip(line.steps, line.values, strict=True))
        parts.append(
            f"<polyline class='series' fill='none' stroke='{color}' stroke-width='1.5' points='{points}'/>"
            f"<circle class='marker' r='3.5' fill='{color}' cx='-10' cy='-10' visibility='hidden'/>"
        )
    parts.append("</svg>")
    return "".join(parts)
