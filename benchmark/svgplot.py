"""Small scatter plots as inline SVG for the static site.

Hand-written instead of matplotlib: the site must not load anything from the network, must be
byte-for-byte reproducible (matplotlib embeds versions and ids in its SVG) and only needs one
kind of chart, a labelled scatter with an optional log x axis and a reference line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 720, 400
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 24, 16, 52
MAX_LABELS = 30  # more labels than this overlap; the rest keep their tooltip


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    group: str  # CSS class suffix, e.g. the model family
    href: str | None = None
    hollow: bool = False  # e.g. incomplete task coverage
    tooltip: str = ""


@dataclass(frozen=True)
class RefLine:
    y: float
    label: str


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / max(target, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _linear_ticks(lo: float, hi: float) -> tuple[float, float, list[float]]:
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    step = _nice_step(hi - lo)
    start = math.floor(lo / step) * step
    end = math.ceil(hi / step) * step
    ticks = []
    value = start
    while value <= end + step / 2:
        ticks.append(round(value, 10))
        value += step
    return start, end, ticks


def _log_ticks(lo: float, hi: float) -> tuple[float, float, list[float]]:
    a = math.floor(math.log10(lo))
    b = math.ceil(math.log10(hi))
    if a == b:
        b += 1
    ticks = [10.0**k for k in range(a, b + 1)]
    if b - a <= 2:  # few decades: label 2x and 5x as well
        ticks = sorted(ticks + [m * 10.0**k for k in range(a, b) for m in (2, 5)])
    return 10.0**a, 10.0**b, ticks


def _fmt_tick(value: float, log: bool) -> str:
    if log:
        for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if value >= size:
                return f"{value / size:g}{suffix}"
        return f"{value:g}"
    return f"{value:.3g}"


def scatter(
    points: list[Point],
    x_label: str,
    y_label: str,
    log_x: bool = False,
    ref_lines: tuple[RefLine, ...] = (),
    title: str = "",
) -> str:
    """An <svg> element (a string; every text is escaped) or '' when there is nothing to draw."""
    points = [p for p in points if math.isfinite(p.x) and math.isfinite(p.y)]
    if log_x:
        points = [p for p in points if p.x > 0]
    if not points:
        return ""
    points = sorted(points, key=lambda p: (p.x, p.y, p.label))
    xs, ys = [p.x for p in points], [p.y for p in points] + [r.y for r in ref_lines]
    x0, x1, xticks = _log_ticks(min(xs), max(xs)) if log_x else _linear_ticks(min(xs), max(xs))
    y0, y1, yticks = _linear_ticks(min(ys), max(ys))
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def sx(x: float) -> float:
        t = (math.log10(x) - math.log10(x0)) / (math.log10(x1) - math.log10(x0)) if log_x \
            else (x - x0) / (x1 - x0)
        return MARGIN_LEFT + t * plot_w

    def sy(y: float) -> float:
        return MARGIN_TOP + (1 - (y - y0) / (y1 - y0)) * plot_h

    out = [
        f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(title or y_label + " vs " + x_label)}" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    if title:
        out.append(f"<title>{escape(title)}</title>")
    bottom, right = HEIGHT - MARGIN_BOTTOM, WIDTH - MARGIN_RIGHT
    for t in xticks:
        x = sx(t)
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{MARGIN_TOP}" x2="{x:.1f}" y2="{bottom}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">'
                   f"{escape(_fmt_tick(t, log_x))}</text>")
    for t in yticks:
        y = sy(t)
        out.append(f'<line class="grid" x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f"{escape(_fmt_tick(t, False))}</text>")
    out.append(f'<rect class="frame" x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_w}" '
               f'height="{plot_h}"/>')
    out.append(f'<text class="axis" x="{MARGIN_LEFT + plot_w / 2:.1f}" y="{HEIGHT - 12}" '
               f'text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text class="axis" transform="translate(16 {MARGIN_TOP + plot_h / 2:.1f}) '
               f'rotate(-90)" text-anchor="middle">{escape(y_label)}</text>')
    for ref in ref_lines:
        y = sy(ref.y)
        out.append(f'<line class="ref" x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>')
        out.append(f'<text class="ref-label" x="{right - 4}" y="{y - 4:.1f}" text-anchor="end">'
                   f"{escape(ref.label)}</text>")
    label_all = len(points) <= MAX_LABELS
    for p in points:
        cx, cy = sx(p.x), sy(p.y)
        cls = f"pt fam-{escape(p.group)}" + (" hollow" if p.hollow else "")
        tip = escape(p.tooltip or f"{p.label}: {p.y:.4f}")
        dot = (f'<circle class="{cls}" cx="{cx:.1f}" cy="{cy:.1f}" r="5">'
               f"<title>{tip}</title></circle>")
        if label_all:
            anchor = "end" if cx > right - 120 else "start"
            dx = -8 if anchor == "end" else 8
            dot += (f'<text class="pt-label" x="{cx + dx:.1f}" y="{cy + 4:.1f}" '
                    f'text-anchor="{anchor}">{escape(p.label)}</text>')
        if p.href:
            dot = f'<a href="{escape(p.href)}">{dot}</a>'
        out.append(dot)
    out.append("</svg>")
    return "\n".join(out)
