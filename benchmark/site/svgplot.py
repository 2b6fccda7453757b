"""Small scatter plots as inline SVG for the static site.

Hand-written instead of matplotlib: the site must not load anything from the network, must be
byte-for-byte reproducible (matplotlib embeds versions and ids in its SVG) and only needs one
kind of chart, a labelled scatter with an optional log x axis and a reference line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

# Text is sized in user units, so what a reader sees is font size x (rendered width / WIDTH). A
# phone shows the plot about 380 px wide (400 px less the page's padding); at the old 720 units and
# 11-unit labels that was 5.8 px, unreadable. 480 units with 13-unit text renders at 10.3 px there
# and at its natural size (13 px) on a desktop, where the plot is never scaled up.
WIDTH, HEIGHT = 480, 330
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 62, 14, 14, 56
FONT = 13  # ticks, point labels, numbers, legend, reference lines (user units)
AXIS_FONT = 14  # the axis titles
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


def _linear_ticks(
    lo: float, hi: float, min_span: float = 0.0, floor: float | None = None
) -> tuple[float, float, list[float]]:
    """Nice ticks covering [lo, hi] with a margin, never fewer than `min_span` wide (one or
    two points must not get an axis of four identical labels around a single value), and never
    below `floor` (a time or a score cannot be negative: no axis runs to -200 s)."""
    span = max(hi - lo, min_span, 1e-9)
    mid = (lo + hi) / 2
    lo, hi = min(lo, mid - span / 2), max(hi, mid + span / 2)
    pad = 0.08 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    if floor is not None:
        lo = max(lo, floor)
    step = _nice_step(hi - lo)
    start = math.floor(lo / step) * step
    if floor is not None:
        start = max(start, floor)
    end = math.ceil(hi / step) * step
    ticks = []
    value = start
    while value <= end + step / 2:
        ticks.append(round(value, 10))
        value += step
    return start, end, ticks


def _decimals(ticks: list[float]) -> int:
    """The fewest decimals that print every tick exactly (a 2.5 step needs one: 62.5 must not
    read as 62), which also tells neighbouring ticks apart."""
    for decimals in range(7):
        if all(abs(round(t, decimals) - t) < 1e-9 for t in ticks):
            return decimals
    return 6


def _log_ticks(lo: float, hi: float) -> tuple[float, float, list[float]]:
    a = math.floor(math.log10(lo))
    b = math.ceil(math.log10(hi))
    if a == b:
        b += 1
    ticks = [10.0**k for k in range(a, b + 1)]
    if b - a <= 2:  # few decades: label 2x and 5x as well
        ticks = sorted(ticks + [m * 10.0**k for k in range(a, b) for m in (2, 5)])
    return 10.0**a, 10.0**b, ticks


def _fmt_tick(value: float, log: bool, decimals: int = 1) -> str:
    if log:
        for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if value >= size:
                return f"{value / size:g}{suffix}"
        return f"{value:g}"
    return f"{value:.{decimals}f}"


CHAR_W, LABEL_H = 0.58 * FONT, FONT + 3.0  # estimated width of one character, label line height


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place_labels(
    spots: list[tuple[float, float, str]], bounds: tuple[float, float, float, float]
) -> list[tuple[float, float, str] | None]:
    """Greedy label placement: for each point (in order) the first of eight positions around
    it whose box stays inside `bounds` and overlaps no dot and no label placed before; None
    when all eight collide (that point is then numbered and named in a legend). Hand-written:
    the site draws its own SVG (see the module docstring)."""
    dots = [(x - 6, y - 6, x + 6, y + 6) for x, y, _ in spots]
    taken: list[tuple[float, float, float, float]] = []
    out: list[tuple[float, float, str] | None] = []
    for x, y, text in spots:
        w = CHAR_W * len(text)
        placed = None
        for dx, dy, anchor in ((9, 5, "start"), (-9, 5, "end"), (9, -9, "start"),
                               (9, 18, "start"), (-9, -9, "end"), (-9, 18, "end"),
                               (0, -11, "middle"), (0, 22, "middle")):
            tx, ty = x + dx, y + dy
            left = tx if anchor == "start" else tx - w if anchor == "end" else tx - w / 2
            box = (left, ty - LABEL_H + 3, left + w, ty + 3)
            inside = (box[0] >= bounds[0] and box[2] <= bounds[2] and box[1] >= bounds[1]
                      and box[3] <= bounds[3])
            if inside and not any(_overlaps(box, o) for o in taken + dots):
                placed = (tx, ty, anchor)
                taken.append(box)
                break
        out.append(placed)
    return out


def _axes(sx, sy, xticks: list[tuple[float, str]], yticks: list[tuple[float, str]], x_label: str,
          y_label: str, ref_lines: tuple[RefLine, ...]) -> list[str]:
    """Grid, tick labels, frame, axis titles and reference lines: what every plot here shares."""
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    bottom, right = HEIGHT - MARGIN_BOTTOM, WIDTH - MARGIN_RIGHT
    out = []
    for t, text in xticks:
        x = sx(t)
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{MARGIN_TOP}" x2="{x:.1f}" y2="{bottom}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{bottom + 18}" font-size="{FONT}" '
                   f'text-anchor="middle">{escape(text)}</text>')
    for t, text in yticks:
        y = sy(t)
        out.append(f'<line class="grid" x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" font-size="{FONT}" '
                   f'text-anchor="end">{escape(text)}</text>')
    out.append(f'<rect class="frame" x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_w}" '
               f'height="{plot_h}"/>')
    out.append(f'<text class="axis" x="{MARGIN_LEFT + plot_w / 2:.1f}" y="{HEIGHT - 12}" '
               f'font-size="{AXIS_FONT}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text class="axis" transform="translate(16 {MARGIN_TOP + plot_h / 2:.1f}) '
               f'rotate(-90)" font-size="{AXIS_FONT}" text-anchor="middle">{escape(y_label)}</text>')
    for ref in ref_lines:
        y = sy(ref.y)
        out.append(f'<line class="ref" x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>')
        out.append(f'<text class="ref-label" x="{right - 4}" y="{y - 4:.1f}" font-size="{FONT}" '
                   f'text-anchor="end">{escape(ref.label)}</text>')
    return out


def scatter(
    points: list[Point],
    x_label: str,
    y_label: str,
    log_x: bool = False,
    ref_lines: tuple[RefLine, ...] = (),
    title: str = "",
    x_floor: float | None = None,
    y_floor: float | None = None,
    y_from_zero: bool = False,
) -> str:
    """An <svg> element (a string; every text is escaped) or '' when there is nothing to draw.
    `x_floor` / `y_floor`: the lowest value an axis may show (0 for times, counts, scores).
    `y_from_zero`: the y axis starts at 0 whatever the points, so a reader sees how far they sit
    above the floor (a 0.5-3.5 axis made a 0.8-point spread read as a ranking)."""
    points = [p for p in points if math.isfinite(p.x) and math.isfinite(p.y)]
    if log_x:
        points = [p for p in points if p.x > 0]
    if not points:
        return ""
    points = sorted(points, key=lambda p: (p.x, p.y, p.label))
    xs, ys = [p.x for p in points], [p.y for p in points] + [r.y for r in ref_lines]
    if y_from_zero:
        ys.append(0.0)
    if log_x:
        x0, x1, xticks = _log_ticks(min(xs), max(xs))
    else:
        x0, x1, xticks = _linear_ticks(min(xs), max(xs), 0.1 * max(abs(v) for v in xs),
                                       floor=x_floor)
    # y is a score x100: a span of at least 2 points keeps 1-3 close points readable
    y0, y1, yticks = _linear_ticks(min(ys), max(ys), min_span=2.0, floor=y_floor)
    y_decimals, x_decimals = _decimals(yticks), _decimals(xticks)
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
    out += _axes(sx, sy, [(t, _fmt_tick(t, log_x, x_decimals)) for t in xticks],
                 [(t, _fmt_tick(t, False, y_decimals)) for t in yticks], x_label, y_label, ref_lines)
    spots = [(sx(p.x), sy(p.y), p.label) for p in points]
    places = (_place_labels(spots, (MARGIN_LEFT + 2, MARGIN_TOP + 2, right - 2, bottom - 2))
              if len(points) <= MAX_LABELS else [None] * len(points))
    legend: list[tuple[int, Point]] = []
    for p, (cx, cy, _), place in zip(points, spots, places, strict=True):
        cls = f"pt fam-{escape(p.group)}" + (" hollow" if p.hollow else "")
        tip = escape(p.tooltip or f"{p.label}: {p.y:.4f}")
        dot = (f'<circle class="{cls}" cx="{cx:.1f}" cy="{cy:.1f}" r="5">'
               f"<title>{tip}</title></circle>")
        if place is not None:
            tx, ty, anchor = place
            dot += (f'<text class="pt-label" x="{tx:.1f}" y="{ty:.1f}" '
                    f'font-size="{FONT}" text-anchor="{anchor}">{escape(p.label)}</text>')
        elif len(points) <= MAX_LABELS:  # no free spot: a number here, the name in the legend
            legend.append((len(legend) + 1, p))
            dot += (f'<text class="pt-num" x="{cx + 7:.1f}" y="{cy - 5:.1f}" '
                    f'font-size="{FONT}">{len(legend)}'
                    "</text>")
        if p.href:
            dot = f'<a href="{escape(p.href)}">{dot}</a>'
        out.append(dot)
    if legend:
        # two columns when every entry fits half the plot's width, else one (no overprinting)
        longest = max(len(f"{n}: {p.label}") for n, p in legend) * CHAR_W
        columns = 2 if longest <= plot_w / 2 - 8 else 1
        rows = math.ceil(len(legend) / columns)
        extra = 12 + rows * (FONT + 5)
        out[0] = out[0].replace(f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
                                f'height="{HEIGHT}"', f'viewBox="0 0 {WIDTH} {HEIGHT + extra}" '
                                f'width="{WIDTH}" height="{HEIGHT + extra}"')
        for i, (number, p) in enumerate(legend):
            x = MARGIN_LEFT + (i % columns) * (plot_w / columns)
            y = HEIGHT + 12 + (i // columns) * (FONT + 5)
            out.append(f'<text class="legend-item" x="{x:.1f}" y="{y:.1f}" font-size="{FONT}">'
                       f'{number}: '
                       f"{escape(p.label)}</text>")
    out.append("</svg>")
    return "\n".join(out)


def line_plot(series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str,
              title: str = "", ref_lines: tuple[RefLine, ...] = ()) -> str:
    """Lines (one per series, in its own CSS class) over shared axes: training curves. Each
    series is drawn as a polyline and labelled at its last point; '' when nothing is finite."""
    clean = {name: [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
             for name, pts in series.items()}
    clean = {name: pts for name, pts in clean.items() if pts}
    if not clean:
        return ""
    xs = [x for pts in clean.values() for x, _ in pts]
    ys = [y for pts in clean.values() for _, y in pts] + [r.y for r in ref_lines]
    x0, x1, xticks = _linear_ticks(min(xs), max(xs), 0.1 * max(abs(v) for v in xs) or 1.0, floor=0.0)
    y0, y1, yticks = _linear_ticks(min(ys), max(ys), min_span=0.5)
    x_decimals, y_decimals = _decimals(xticks), _decimals(yticks)
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    right = WIDTH - MARGIN_RIGHT

    def sx(x: float) -> float:
        return MARGIN_LEFT + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return MARGIN_TOP + (1 - (y - y0) / (y1 - y0)) * plot_h

    out = [f'<svg class="plot curve" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
           f'role="img" aria-label="{escape(title or y_label + " vs " + x_label)}" '
           'xmlns="http://www.w3.org/2000/svg">']
    if title:
        out.append(f"<title>{escape(title)}</title>")
    out += _axes(sx, sy, [(t, _fmt_tick(t, False, x_decimals)) for t in xticks],
                 [(t, _fmt_tick(t, False, y_decimals)) for t in yticks], x_label, y_label, ref_lines)
    for index, (name, pts) in enumerate(sorted(clean.items())):
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(f'<polyline class="series s{index % 8}" fill="none" points="{path}">'
                   f"<title>{escape(name)}</title></polyline>")
        lx, ly = pts[-1]
        out.append(f'<text class="pt-label" x="{min(sx(lx), right - 2):.1f}" y="{sy(ly) - 5:.1f}" '
                   f'font-size="{FONT}" text-anchor="end">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)
