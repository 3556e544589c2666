"""The Labeler's progress as an inline SVG plot: accuracy on new rows per round.

An SVG rather than matplotlib, so that the widget needs no optional
dependency and follows JupyterLab's light and dark themes (its colours are
the theme's CSS variables).  The plot has axes, tick labels taken from the
data (the answers of each round, the accuracy scale), each point's value, its
95% interval (from the random checks) and a title; the zero-shot start,
measured once on the first checks, is a dashed reference line whose label sits
above it, clear of the line.
"""

from ..display import esc

WIDTH, HEIGHT = 420, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 20, 30, 40
_INK = "var(--jp-ui-font-color1,#222)"
_MUTED = "var(--jp-ui-font-color2,#666)"
_AXIS = "var(--jp-border-color1,#999)"
_LINE = "var(--jp-brand-color1,#1976d2)"
_START = "var(--jp-warn-color1,#f57c00)"
TITLE = "Accuracy on new rows (random checks)"


def _y_scale(values):
    """(low, high, step) of the accuracy axis: 10% steps, up to 100%."""
    low = min(values)
    step = 0.1 if low >= 0.5 else 0.2
    bottom = max(0.0, int((low - 0.02) / step) * step)
    return round(bottom, 2), 1.0, step


def _x_ticks(answers, most=8):
    """The rounds whose answer count gets a tick label (every one, thinned to ``most``)."""
    every = max(1, -(-len(answers) // most))
    picked = list(range(0, len(answers), every))
    if picked[-1] != len(answers) - 1:
        picked.append(len(answers) - 1)
    return picked


def accuracy_plot(rounds, start=None):
    """An SVG of the estimated accuracy after each Improve ('' before the first).

    Parameters
    ----------
    rounds : list of dict
        ``{"answers": int, "check_accuracy": float or None, "low": float,
        "high": float}`` per round (the checks' accuracy and interval).
    start : float, optional
        The zero-shot start's accuracy, measured once; a dashed line.

    Returns
    -------
    str
        ``<svg class="nbllm-plot">``; x tick labels are the rounds' answer
        counts (class ``nbllm-xtick``), y tick labels the accuracy scale
        (``nbllm-ytick``), each point's value is written above it
        (``nbllm-value``).
    """
    kept = [r for r in rounds if r.get("check_accuracy") is not None]
    if not kept:
        return ""
    answers = [r["answers"] for r in kept]
    values = [r["check_accuracy"] for r in kept]
    bars = [(r.get("low", v), r.get("high", v)) for r, v in zip(kept, values)]
    low, high, step = _y_scale(values + [b[0] for b in bars]
                               + ([start] if start is not None else []))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(i):
        # Inset from the axes, so that the first value is not written on the y axis.
        span, inset = answers[-1] - answers[0], 24
        if span <= 0:
            return LEFT + plot_w / 2
        return LEFT + inset + (answers[i] - answers[0]) / span * (plot_w - 2 * inset)

    def y_of(v):
        return TOP + (high - v) / (high - low) * plot_h

    parts = [
        f'<svg class="nbllm-plot" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{esc(TITLE)}" font-family="var(--jp-ui-font-family,sans-serif)" '
        f'font-size="11">',
        f'<text class="nbllm-plot-title" x="{WIDTH / 2}" y="16" text-anchor="middle" '
        f'font-size="13" font-weight="600" fill="{_INK}">{esc(TITLE)}</text>',
    ]
    n_ticks = int(round((high - low) / step))
    for k in range(n_ticks + 1):
        v = low + k * step
        y = y_of(v)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="{_AXIS}" stroke-opacity="0.35"/>')
        parts.append(f'<text class="nbllm-ytick" x="{LEFT - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end" fill="{_MUTED}">{v:.0%}</text>')
    for i in _x_ticks(answers):
        x = x_of(i)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + plot_h}" '
                     f'y2="{TOP + plot_h + 4}" stroke="{_AXIS}"/>')
        parts.append(f'<text class="nbllm-xtick" x="{x:.1f}" y="{TOP + plot_h + 16}" '
                     f'text-anchor="middle" fill="{_MUTED}">{answers[i]}</text>')
    parts.append(f'<path d="M{LEFT},{TOP}V{TOP + plot_h}H{LEFT + plot_w}" fill="none" '
                 f'stroke="{_AXIS}"/>')
    parts.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle" '
                 f'fill="{_MUTED}">answers given (bars: 95% intervals)</text>')
    if start is not None:
        y = y_of(start)
        parts.append(f'<line class="nbllm-start" x1="{LEFT}" x2="{LEFT + plot_w}" '
                     f'y1="{y:.1f}" y2="{y:.1f}" stroke="{_START}" stroke-dasharray="5 4"/>')
        # Above the line, at the left, on a background: never on the line.
        parts.append(f'<text class="nbllm-start-label" x="{LEFT + 4}" y="{y - 5:.1f}" '
                     f'text-anchor="start" fill="{_START}" paint-order="stroke" '
                     f'stroke="var(--jp-layout-color0,#fff)" stroke-width="3">'
                     f"zero-shot start {start:.0%}</text>")
    coords = [(x_of(i), y_of(v)) for i, v in enumerate(values)]
    if len(coords) > 1:
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polyline fill="none" stroke="{_LINE}" stroke-width="2" '
                     f'points="{line}"/>')
    for (x, _), (b_low, b_high) in zip(coords, bars):
        parts.append(f'<line class="nbllm-interval" x1="{x:.1f}" x2="{x:.1f}" '
                     f'y1="{y_of(b_low):.1f}" y2="{y_of(b_high):.1f}" stroke="{_LINE}" '
                     f'stroke-opacity="0.5" stroke-width="6"/>')
    for (x, y), v, a in zip(coords, values, answers):
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{_LINE}">'
                     f"<title>{a} answers: {v:.1%}</title></circle>")
        # Above the point, or below it near the top, clear of the title.
        label_y = y - 8 if y - 8 >= TOP + 4 else y + 16
        parts.append(f'<text class="nbllm-value" x="{x:.1f}" y="{label_y:.1f}" '
                     f'text-anchor="middle" fill="{_INK}">{v:.0%}</text>')
    parts.append("</svg>")
    return "".join(parts)
