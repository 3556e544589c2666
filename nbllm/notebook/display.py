"""Result objects and their renderings: escaped HTML for notebooks, plain text elsewhere.

Pure code: nothing here loads a model.  Every user or model string goes
through :func:`html.escape` before it reaches HTML.
"""

import html
import textwrap

import numpy as np

MAX_HTML_ROWS = 50
# HTML cells hold this much of a text; CSS then cuts it to the width the
# notebook has (with the whole text on hover).
_HTML_TEXT_CHARS = 300
_TEXT_WIDTH = 80

# Texts are full of prices ("$25 ... $12"): the notebook's MathJax must not
# typeset nbllm's output.  JupyterLab and the classic notebook skip elements
# with these classes.
NO_MATH = "tex2jax_ignore mathjax_ignore"

# One colour per label, dark enough for white chip text (contrast >= 4.5)
# and bright enough to stand out on JupyterLab's dark theme.
PALETTE = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#b45309", "#00838f",
           "#ad1457", "#5d4037", "#455a64", "#827717")
# Labels whose meaning has a colour everyone reads the same way.
_MEANING = {"positive": "#2e7d32", "negative": "#c62828", "neutral": "#455a64",
            "yes": "#2e7d32", "no": "#c62828", "true": "#2e7d32", "false": "#c62828"}

LABEL_MASS_LEGEND = (
    "label mass: how much probability the model gives to the labels together "
    "(near 1: it would answer with one of them; near 0: it would rather write "
    "something else, so its pick is a weak guess)."
)

RESULT_STYLE = (
    "<style>"
    # JupyterLab fixes table layouts (equal columns); the text column needs auto.
    ".nbllm-table{border-collapse:collapse;font-size:12px;width:100%;"
    "table-layout:auto !important}"
    ".nbllm-table th,.nbllm-table td{padding:2px 8px;text-align:left !important;"
    "border-bottom:1px solid var(--jp-border-color2,#ddd);vertical-align:top;"
    "white-space:nowrap}"
    # The text column takes the room the others leave and ends in an ellipsis.
    ".nbllm-table td.nbllm-text{max-width:0;width:100%;overflow:hidden;"
    "text-overflow:ellipsis}"
    ".nbllm-table caption{text-align:left;white-space:normal}"
    ".nbllm-bar{display:inline-block;height:8px;margin-left:4px;vertical-align:middle}"
    ".nbllm-best{font-weight:bold}"
    ".nbllm-chip{display:inline-block;padding:0 6px;border-radius:8px;color:#fff;"
    "font-weight:bold}"
    # Cells, not the row: JupyterLab shades every other row and would win.
    ".nbllm-table tr.nbllm-low>td{background:rgba(255,179,0,.28) !important}"
    ".nbllm-flag{color:var(--jp-warn-color0,#a15c00);font-weight:bold}"
    ".nbllm-legend{font-size:11px;color:var(--jp-ui-font-color2,#555);margin:4px 0}"
    ".nbllm-pre{white-space:pre-wrap;margin:2px 0;padding:4px;"
    "background:var(--jp-layout-color2,#f6f6f6)}"
    ".nbllm-heading{margin:6px 0;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}"
    "</style>"
)


def esc(value):
    """HTML-escape any value, quotes included (safe inside attributes)."""
    return html.escape(str(value), quote=True)


def plural(count, word):
    """``'1 label'``, ``'2 labels'``: a count and its noun, in the right number."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def shorten(text, width=_TEXT_WIDTH):
    """One-line preview of a text, cut with an ellipsis."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "\u2026"


def label_colours(classes):
    """A colour per label, the same wherever a result shows these labels.

    Labels such as positive / negative get their usual colours; the others
    take the palette in order, skipping colours already used.
    """
    colours = {c: _MEANING[c.lower()] for c in classes if c.lower() in _MEANING}
    if len(set(colours.values())) < len(colours):  # e.g. "yes" and "positive"
        colours = {}
    free = [p for p in PALETTE if p not in colours.values()]
    for c in classes:
        if c not in colours:
            colours[c] = free.pop(0) if free else PALETTE[len(colours) % len(PALETTE)]
    return colours


def chip(label, colour):
    """A predicted label as a coloured badge."""
    return f'<span class="nbllm-chip" style="background:{colour}">{esc(label)}</span>'


def _proba_cell(p, best, colour):
    if p is None or not np.isfinite(p):
        return "<td>\u2013</td>"
    cls = ' class="nbllm-best"' if best else ""
    width = max(0.0, min(1.0, float(p))) * 60
    return (
        f"<td{cls}>{p:.3f}<span class=\"nbllm-bar\" "
        f"style=\"width:{width:.1f}px;background:{colour}\"></span></td>"
    )


class ClassificationResult:
    """Predictions for a list of texts, rendered as a probability table.

    Parameters
    ----------
    texts : list of str
    classes : list of str
        Column order of ``probas``.
    probas : ndarray of shape (n, n_classes)
        Normalised (or raw with ``raw=True``); NaN rows for skipped inputs.
    label_mass : ndarray of shape (n,) or None
        The model's total probability of all labels per row; None (NaN per
        row) for a classifier without one (multi-label).
    raw : bool
        Whether ``probas`` are the unnormalised label probabilities.
    threshold : float or None
        Rows whose label mass is below it are flagged (None: no label mass).
    previews : list of GenerationPreview
        Shown under the table.
    index : sequence or None
        Row labels for :attr:`frame` (e.g. a DataFrame's index).
    hide_low : bool
        Predict None for flagged rows (``error_low_prob='return_none'``).
    multi_label_threshold : float or None
        Multi-label results: each column is that label's own probability and
        a row's labels are those at or above this threshold.
    stopped : bool
        The run was stopped before the end (see :mod:`.stopping`).
    pending : ndarray of bool, shape (n,), optional
        The rows a stopped run did not reach (NaN probabilities); none by default.
    prompt_mode : str or None
        How the prompt went to the model ("sent raw, ..."), shown in the caption.
    estimator : fitted classifier or None
        The classifier that gave the result, to reuse (``result.estimator``).
    explanation : nbllm.estimators.explanation.Explanation or None
        Why each of the first rows got its label (``--explain``), shown
        under the table.

    The four settings ``raw``, ``threshold``, ``hide_low`` and
    ``multi_label_threshold`` are the classifier's
    :class:`~nbllm.estimators.predictions.ResultPolicy` (:attr:`policy`).
    """

    def __init__(self, texts, classes, probas, label_mass, raw=False, threshold=0.0,
                 previews=(), index=None, hide_low=False, multi_label_threshold=None,
                 *, stopped=False, pending=None, prompt_mode=None, estimator=None,
                 explanation=None):
        from ..estimators.predictions import ResultPolicy

        self.texts = list(texts)
        self.classes = [str(c) for c in classes]
        self.probas = np.asarray(probas, dtype=np.float64)
        self.label_mass = (np.full(len(self.texts), np.nan) if label_mass is None
                           else np.asarray(label_mass, dtype=np.float64))
        self.policy = ResultPolicy(raw=raw, low_threshold=threshold, hide_low=hide_low,
                                   multi_label_threshold=multi_label_threshold)
        self.raw = raw
        self.threshold = threshold
        self.previews = list(previews)
        self.index = index
        self.hide_low = hide_low
        self.multi_label_threshold = multi_label_threshold
        self.stopped = stopped
        self.pending = (np.zeros(len(self.texts), dtype=bool) if pending is None
                        else np.asarray(pending, dtype=bool))
        self.prompt_mode = prompt_mode
        self.estimator = estimator
        self.explanation = explanation

    def __len__(self):
        return len(self.texts)

    @property
    def labels(self):
        """Predicted label per row (None for skipped rows, and for low rows
        with ``hide_low``): the policy's one rule."""
        return list(self.policy.predictions(self.classes, self.probas, self.low))

    @property
    def low(self):
        """True for rows whose label mass is under the threshold."""
        if not self.policy.has_label_mass:
            return np.zeros(len(self), dtype=bool)
        with np.errstate(invalid="ignore"):
            return self.label_mass < self.threshold

    @property
    def frame(self):
        """A pandas DataFrame: text, label, proba_<label>..., label_mass (raw only)."""
        import pandas as pd

        data = {"text": self.texts, "label": self.labels}
        for j, c in enumerate(self.classes):
            data[f"proba_{c}"] = self.probas[:, j]
        if self.raw:
            data["label_mass"] = self.label_mass
        return pd.DataFrame(data, index=self.index)

    def _chosen(self, label):
        """Column indices of a row's predicted label(s)."""
        if label is None:
            return set()
        picked = label if self.policy.multi_label else [label]
        return {self.classes.index(c) for c in picked}

    def _label_text(self, label):
        if label is None:
            return ""
        return ", ".join(label) if self.policy.multi_label else label

    def _caption(self, low):
        parts = [f"{len(self)} text(s), {plural(len(self.classes), 'label')}"]
        if self.raw:
            parts.append("raw label probabilities")
        if low.any():
            parts.append(f"{int(low.sum())} under the threshold {self.threshold:g}")
        if self.policy.multi_label:
            parts.append(f"multi-label (each label scored alone; threshold "
                         f"{self.multi_label_threshold:g})")
        return ("stopped early: " if self.stopped else "") + ", ".join(parts)

    def _mode_note(self):
        if not self.prompt_mode:
            return ""
        return f'<span class="nbllm-mode"> \u00b7 {esc(self.prompt_mode)}</span>'

    def _legend(self, low):
        """Plain words for the label-mass column and the low flag, when shown."""
        lines = []
        if self.raw or low.any():
            lines.append(LABEL_MASS_LEGEND)
        if low.any():
            what = ("no prediction is given for them" if self.hide_low
                    else "treat their prediction with care")
            lines.append(f"\u26a0 low: the label mass is under the threshold "
                         f"{self.threshold:g}; {what}.")
        return "".join(f'<p class="nbllm-legend">{esc(line)}</p>' for line in lines)

    def _repr_html_(self):
        colours = label_colours(self.classes)
        head = "".join(f"<th>{esc(c)}</th>" for c in self.classes)
        mass_head = "<th>label mass</th>" if self.raw else ""
        rows = []
        labels, low = self.labels, self.low
        for i in range(min(len(self), MAX_HTML_ROWS)):
            chosen = self._chosen(labels[i])
            cells = "".join(
                _proba_cell(p, j in chosen, colours[self.classes[j]])
                for j, p in enumerate(self.probas[i])
            )
            mass = f"<td>{self.label_mass[i]:.3g}</td>" if self.raw else ""
            flag = ' <span class="nbllm-flag" title="label mass below threshold">' \
                   "\u26a0 low</span>" if low[i] else ""
            row_cls = ' class="nbllm-low"' if low[i] else ""
            text = self.texts[i]
            predicted = " ".join(chip(self.classes[j], colours[self.classes[j]])
                                 for j in sorted(chosen))
            rows.append(
                f"<tr{row_cls}><td>{i}</td><td class=\"nbllm-text\" title=\"{esc(text)}\">"
                f"{esc(shorten(text, _HTML_TEXT_CHARS))}</td>"
                f"<td class=\"nbllm-pred\">{predicted}{flag}</td>{cells}{mass}</tr>"
            )
        more = len(self) - MAX_HTML_ROWS
        note = (
            f"<p>\u2026 {more} more rows; use <code>.frame</code> for all of them.</p>"
            if more > 0 else ""
        )
        previews = "".join(p._repr_html_() for p in self.previews)
        if self.explanation is not None:
            previews += self.explanation._repr_html_()
        return (
            f"{RESULT_STYLE}<div class=\"nbllm-result {NO_MATH}\"><table class=\"nbllm-table\">"
            f"<caption>{esc(self._caption(low))}{self._mode_note()}</caption><thead><tr><th>#</th><th>text</th>"
            f"<th>predicted</th>{head}{mass_head}</tr></thead><tbody>{''.join(rows)}"
            f"</tbody></table>{note}{self._legend(low)}{previews}</div>"
        )

    def __repr__(self):
        width = max(8, max((len(c) for c in self.classes), default=8))
        lines = [
            f"ClassificationResult: {len(self)} text(s), labels {self.classes}"
            + (" (raw)" if self.raw else "")
        ]
        labels, low = self.labels, self.low
        for i in range(min(len(self), 20)):
            probs = " ".join(f"{p:.3f}" for p in self.probas[i])
            flag = "  LOW" if low[i] else ""
            lines.append(
                f"{i:>4}  {(self._label_text(labels[i]) or '-'):<{width}}  [{probs}]  "
                f"{shorten(self.texts[i], 50)}{flag}"
            )
        if len(self) > 20:
            lines.append(f"  ... {len(self) - 20} more rows")
        if self.explanation is not None:
            lines.append(repr(self.explanation))
        return "\n".join(lines)


class GenerationPreview:
    """What the model sees and says for one text, next to the constrained scores.

    Parameters
    ----------
    text : str
    prompt : str
        The full rendered prompt.
    n_prompt_tokens : int
    continuation : str
        The model's free, greedy continuation.
    classes : list of str
    probas : ndarray of shape (n_classes,)
        Normalised label probabilities.
    label_mass : float or None
        Total raw probability of all labels; None (NaN) for a classifier
        without one (multi-label).
    """

    def __init__(self, text, prompt, n_prompt_tokens, continuation, classes, probas,
                 label_mass):
        self.text = text
        self.prompt = prompt
        self.n_prompt_tokens = n_prompt_tokens
        self.continuation = continuation
        self.classes = [str(c) for c in classes]
        self.probas = np.asarray(probas, dtype=np.float64)
        self.label_mass = np.nan if label_mass is None else float(label_mass)

    def _repr_html_(self):
        colours = label_colours(self.classes)
        best = int(np.nanargmax(self.probas)) if np.isfinite(self.probas).any() else -1
        # The labels in the table's column order, so both read alike.
        rows = "".join(
            f"<tr><td>{chip(c, colours[c])}</td>{_proba_cell(p, j == best, colours[c])}</tr>"
            for j, (c, p) in enumerate(zip(self.classes, self.probas))
        )
        return (
            f"{RESULT_STYLE}<div class=\"nbllm-preview {NO_MATH}\">"
            f"<h4 class=\"nbllm-heading\" title=\"{esc(self.text)}\">Preview: "
            f"{esc(shorten(self.text, _HTML_TEXT_CHARS))}</h4>"
            f"<details><summary>Prompt ({self.n_prompt_tokens} tokens)</summary>"
            f"<pre class=\"nbllm-pre\">{esc(self.prompt)}</pre></details>"
            "<div style=\"display:flex;flex-wrap:wrap;gap:24px\">"
            "<div style=\"flex:1 1 240px;min-width:0\"><b>Free generation</b>"
            f"<pre class=\"nbllm-pre\">{esc(self.continuation)}</pre></div>"
            "<div><b>Constrained label probabilities</b>"
            f"<table class=\"nbllm-table\" style=\"width:auto\">{rows}</table>"
            f"{self._mass_html()}</div></div></div>"
        )

    def _mass_html(self):
        # Multi-label questions have no label mass (NaN): say nothing then.
        if not np.isfinite(self.label_mass):
            return ""
        return (f'<p class="nbllm-legend">label mass {self.label_mass:.3g}: the '
                "probability the model gives to the labels together (near 1: it "
                "would answer with one of them); the probabilities above are "
                "shares of it.</p>")

    def __repr__(self):
        ranked = ", ".join(f"{c}={p:.3f}" for c, p in zip(self.classes, self.probas))
        prompt = textwrap.indent(self.prompt, "    ")
        return (
            f"GenerationPreview for {shorten(self.text, 60)!r}\n"
            f"  prompt ({self.n_prompt_tokens} tokens):\n{prompt}\n"
            f"  free generation: {self.continuation!r}\n"
            f"  label probabilities: {ranked}"
            + (f" (label mass {self.label_mass:.3g})" if np.isfinite(self.label_mass) else "")
        )
