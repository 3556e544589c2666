"""The result of ``explain``: contributions per word, as a frame, HTML or text.

The HTML highlights each word by its contribution to the explained
log-odds, on a blue (against) / orange (for) diverging scale, which readers
with the common colour-vision deficiencies tell apart (the PuOr end colours).
Everything is inline styles on escaped text: no script, no stylesheet, so it
reads the same in JupyterLab's light and dark themes (half-transparent
backgrounds over the theme's own text colour) and in an exported notebook.
"""

import html
from dataclasses import dataclass, field

import numpy as np

# The diverging palette's two ends (ColorBrewer PuOr): orange for, blue against.
FOR_RGB = (230, 97, 1)
AGAINST_RGB = (33, 102, 172)
# The strongest background's opacity: the theme's text stays readable on it.
MAX_ALPHA = 0.6
# explain shows this many rows' highlights in its HTML; to_frame has them all.
HTML_ROWS = 20


@dataclass
class RowExplanation:
    """One text's explanation.

    Attributes
    ----------
    index : int
        The text's position in X.
    text : str or None
    spans : list of (int, int)
        Character offsets of the units explained (words, or spans).
    grouping : str or None
        'words', 'sentences' or 'groups of N words'.
    predicted : str or None
        The label explained (the most probable).
    probability : float or None
        Its probability, as the estimator returns it.
    contributions : ndarray (n_units,)
        Each unit's contribution to the predicted label's log-odds.
    label_contributions : ndarray (n_units, n_labels)
        Each unit's contribution to each label's log-probability.
    outcome : str or None
        Why the row is not (fully) explained, in one line; None when it is.
    """

    index: int
    text: object
    spans: list = field(default_factory=list)
    grouping: object = None
    predicted: object = None
    probability: object = None
    contributions: object = None
    label_contributions: object = None
    outcome: object = None

    @property
    def units(self):
        """The text of each unit explained."""
        return [self.text[a:b] for a, b in self.spans]


@dataclass
class Explanation:
    """What ``explain`` returns: one :class:`RowExplanation` per text.

    Attributes
    ----------
    rows : list of RowExplanation
    labels : list of str
    method : str
        'occlusion' or 'shapley'.
    target : str
        What ``contributions`` explain, in words.
    note : str or None
        A caveat on what was explained (e.g. ``calibration='batch'``).
    n_samples : int or None
        Shapley sampling's number of random orders.
    """

    rows: list
    labels: list
    method: str
    target: str
    note: object = None
    n_samples: object = None

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    def to_frame(self):
        """One row per (text, unit): its offsets, its contribution to the
        predicted label's log-odds (``contribution``) and to each label's
        log-probability (``logp:<label>``); rows not explained have one line
        with their ``outcome``."""
        import pandas as pd

        records = []
        for row in self.rows:
            base = {"row": row.index, "label": row.predicted, "outcome": row.outcome}
            if not row.spans:
                records.append(base)
                continue
            for k, (start, end) in enumerate(row.spans):
                record = dict(base, unit=k, word=row.text[start:end], start=start,
                              end=end, contribution=float(row.contributions[k]))
                for j, label in enumerate(self.labels):
                    record[f"logp:{label}"] = float(row.label_contributions[k, j])
                records.append(record)
        columns = (["row", "unit", "word", "start", "end", "label", "contribution"]
                   + [f"logp:{label}" for label in self.labels] + ["outcome"])
        return pd.DataFrame.from_records(records, columns=columns)

    def scale(self):
        """The legend's end: the largest absolute contribution shown (>= 0.1)."""
        values = [np.abs(r.contributions).max() for r in self.rows[:HTML_ROWS]
                  if r.contributions is not None and len(r.contributions)]
        return max([0.1, *values])

    def _heading(self):
        how = self.method + (f", {self.n_samples} orders" if self.n_samples else "")
        return f"Contributions to {self.target} ({how})"

    def __repr__(self):
        lines = [self._heading()]
        if self.note:
            lines.append(f"note: {self.note}")
        for row in self.rows:
            lines.append(f"[{row.index}] " + _plain(row))
        return "\n".join(lines)

    def _repr_html_(self):
        scale = self.scale()
        parts = ['<div class="nbllm-explain tex2jax_ignore mathjax_ignore" '
                 'style="line-height:1.9">',
                 f"<div><b>{html.escape(self._heading())}</b></div>"]
        if self.note:
            parts.append(f"<div><i>{html.escape(self.note)}</i></div>")
        parts.append(legend(scale))
        for row in self.rows[:HTML_ROWS]:
            parts.append(highlight(row, scale))
        if len(self.rows) > HTML_ROWS:
            parts.append(f"<div>{HTML_ROWS} of {len(self.rows)} texts shown; "
                         "to_frame() has them all</div>")
        parts.append("</div>")
        return "".join(parts)


def _plain(row):
    if not row.spans:
        return row.outcome
    order = np.argsort(-np.abs(row.contributions))[:5]
    top = ", ".join(f"{row.text[row.spans[k][0]:row.spans[k][1]]!r} "
                    f"{row.contributions[k]:+.2f}" for k in order)
    extra = f" ({row.outcome})" if row.outcome else ""
    grouping = "" if row.grouping == "words" else f" [{row.grouping}]"
    return (f"{row.predicted} (p={row.probability:.3f}){grouping}: {top}{extra}")


def colour(value, scale):
    """The inline background of a contribution: orange for, blue against."""
    rgb = FOR_RGB if value >= 0 else AGAINST_RGB
    alpha = min(1.0, abs(value) / scale) * MAX_ALPHA if scale > 0 else 0.0
    return f"rgba({rgb[0]},{rgb[1]},{rgb[2]},{alpha:.2f})"


def legend(scale):
    """The scale in log-odds: blue (against) to orange (for)."""
    steps = [-1, -0.5, 0, 0.5, 1]
    cells = "".join(
        f'<span style="background:{colour(s * scale, scale)};padding:0 0.6em;'
        f'border:1px solid rgba(128,128,128,0.5)">{s * scale:+.2f}</span>'
        for s in steps)
    return (f'<div style="margin:0.3em 0">against {cells} for '
            "<small>(contribution to the log-odds)</small></div>")


def highlight(row, scale):
    """One text as escaped HTML, each unit on its contribution's colour."""
    index = f"<b>[{row.index}]</b> "
    if not row.spans:
        return f"<div>{index}<i>{html.escape(str(row.outcome))}</i></div>"
    text, out, at = row.text, [], 0
    for k, (start, end) in enumerate(row.spans):
        out.append(html.escape(text[at:start]))
        value = float(row.contributions[k])
        out.append(
            f'<span style="background:{colour(value, scale)};border-radius:3px;'
            f'padding:0 1px" title="{value:+.3f}">{html.escape(text[start:end])}</span>')
        at = end
    out.append(html.escape(text[at:]))
    label = html.escape(f"{row.predicted} (p={row.probability:.3f})")
    grouping = "" if row.grouping == "words" else f" <small>[{html.escape(row.grouping)}]</small>"
    extra = f" <small><i>{html.escape(row.outcome)}</i></small>" if row.outcome else ""
    return (f'<div style="white-space:pre-wrap">{index}<b>{label}</b>{grouping}{extra}: '
            + "".join(out) + "</div>")
