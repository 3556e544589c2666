"""Result objects and their renderings: escaped HTML for notebooks, plain text elsewhere.

Pure code: nothing here loads a model.  Every user or model string goes
through :func:`html.escape` before it reaches HTML.
"""

import html
import textwrap

import numpy as np

MAX_HTML_ROWS = 50
_TEXT_WIDTH = 80

# Texts are full of prices ("$25 ... $12"): the notebook's MathJax must not
# typeset nbllm's output.  JupyterLab and the classic notebook skip elements
# with these classes.
NO_MATH = "tex2jax_ignore mathjax_ignore"

_STYLE = (
    "<style>"
    ".nbllm-table{border-collapse:collapse;font-size:12px}"
    ".nbllm-table th,.nbllm-table td{padding:2px 8px;text-align:left !important;"
    "border-bottom:1px solid #ddd;vertical-align:top}"
    ".nbllm-bar{display:inline-block;height:8px;background:#4c78a8;margin-left:4px;"
    "vertical-align:middle}"
    ".nbllm-pred{font-weight:bold}"
    ".nbllm-low{background:#fff3cd}"
    ".nbllm-flag{color:#a15c00;font-weight:bold}"
    ".nbllm-pre{white-space:pre-wrap;margin:2px 0;padding:4px;background:#f6f6f6}"
    "</style>"
)


def esc(value):
    """HTML-escape any value, quotes included (safe inside attributes)."""
    return html.escape(str(value), quote=True)


def shorten(text, width=_TEXT_WIDTH):
    """One-line preview of a text, cut with an ellipsis."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "\u2026"


def _proba_cell(p, best):
    if p is None or not np.isfinite(p):
        return "<td>\u2013</td>"
    cls = ' class="nbllm-pred"' if best else ""
    width = max(0.0, min(1.0, float(p))) * 60
    return (
        f"<td{cls}>{p:.3f}<span class=\"nbllm-bar\" style=\"width:{width:.1f}px\">"
        "</span></td>"
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
    label_mass : ndarray of shape (n,)
        The model's total probability of all labels per row.
    raw : bool
        Whether ``probas`` are the unnormalised label probabilities.
    threshold : float
        Rows whose label mass is below it are flagged.
    previews : list of GenerationPreview
        Shown under the table.
    index : sequence or None
        Row labels for :attr:`frame` (e.g. a DataFrame's index).
    hide_low : bool
        Predict None for flagged rows (``error_low_prob='return_none'``).
    multi_label_threshold : float or None
        Multi-label results: each column is that label's own probability and
        a row's labels are those at or above this threshold.
    """

    def __init__(self, texts, classes, probas, label_mass, raw=False, threshold=0.0,
                 previews=(), index=None, hide_low=False, multi_label_threshold=None):
        self.texts = list(texts)
        self.classes = [str(c) for c in classes]
        self.probas = np.asarray(probas, dtype=np.float64)
        self.label_mass = np.asarray(label_mass, dtype=np.float64)
        self.raw = raw
        self.threshold = threshold
        self.previews = list(previews)
        self.index = index
        self.hide_low = hide_low
        self.multi_label_threshold = multi_label_threshold
        # Set by nbllm.notebook.classify.classify when a run is stopped before the end.
        self.stopped = False
        self.pending = np.zeros(len(self.texts), dtype=bool)

    def __len__(self):
        return len(self.texts)

    @property
    def labels(self):
        """Predicted label per row (None for skipped rows, and for low rows
        with ``hide_low``)."""
        from ..estimators.predictions import (
            multi_label_predictions,
            single_label_predictions,
        )

        if self.multi_label_threshold is not None:
            return multi_label_predictions(self.classes, self.probas,
                                           self.multi_label_threshold)
        return list(single_label_predictions(self.classes, self.probas, self.low,
                                             self.hide_low))

    @property
    def low(self):
        """True for rows whose label mass is under the threshold."""
        if self.multi_label_threshold is not None:
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
        picked = label if self.multi_label_threshold is not None else [label]
        return {self.classes.index(c) for c in picked}

    def _label_text(self, label):
        if label is None:
            return ""
        return ", ".join(label) if self.multi_label_threshold is not None else label

    def _repr_html_(self):
        head = "".join(f"<th>{esc(c)}</th>" for c in self.classes)
        mass_head = "<th>label mass</th>" if self.raw else ""
        rows = []
        labels, low = self.labels, self.low
        for i in range(min(len(self), MAX_HTML_ROWS)):
            chosen = self._chosen(labels[i])
            cells = "".join(
                _proba_cell(p, j in chosen) for j, p in enumerate(self.probas[i])
            )
            mass = f"<td>{self.label_mass[i]:.3g}</td>" if self.raw else ""
            flag = ' <span class="nbllm-flag" title="label mass below threshold">' \
                   "\u26a0 low</span>" if low[i] else ""
            row_cls = ' class="nbllm-low"' if low[i] else ""
            text = self.texts[i]
            rows.append(
                f"<tr{row_cls}><td>{i}</td><td title=\"{esc(text)}\">{esc(shorten(text))}"
                f"</td><td class=\"nbllm-pred\">{esc(self._label_text(labels[i]))}{flag}</td>"
                f"{cells}{mass}</tr>"
            )
        more = len(self) - MAX_HTML_ROWS
        note = (
            f"<p>\u2026 {more} more rows; use <code>.frame</code> for all of them.</p>"
            if more > 0 else ""
        )
        caption = ("stopped early: " if self.stopped else "") + \
            f"{len(self)} text(s), {len(self.classes)} labels" + (
            ", raw label probabilities" if self.raw else ""
        ) + (f", {int(low.sum())} under the threshold {self.threshold:g}" if low.any() else "") + (
            f", multi-label (each label scored alone; threshold "
            f"{self.multi_label_threshold:g})" if self.multi_label_threshold is not None else "")
        previews = "".join(p._repr_html_() for p in self.previews)
        return (
            f"{_STYLE}<div class=\"nbllm-result {NO_MATH}\"><table class=\"nbllm-table\">"
            f"<caption>{esc(caption)}</caption><thead><tr><th>#</th><th>text</th>"
            f"<th>predicted</th>{head}{mass_head}</tr></thead><tbody>{''.join(rows)}"
            f"</tbody></table>{note}{previews}</div>"
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
    label_mass : float
        Total raw probability of all labels.
    """

    def __init__(self, text, prompt, n_prompt_tokens, continuation, classes, probas,
                 label_mass):
        self.text = text
        self.prompt = prompt
        self.n_prompt_tokens = n_prompt_tokens
        self.continuation = continuation
        self.classes = [str(c) for c in classes]
        self.probas = np.asarray(probas, dtype=np.float64)
        self.label_mass = float(label_mass)

    def _ranked(self):
        order = np.argsort(-self.probas)
        return [(self.classes[j], float(self.probas[j])) for j in order]

    def _repr_html_(self):
        rows = "".join(
            f"<tr><td>{esc(c)}</td>{_proba_cell(p, k == 0)}</tr>"
            for k, (c, p) in enumerate(self._ranked())
        )
        return (
            f"{_STYLE}<div class=\"nbllm-preview {NO_MATH}\"><h4>Preview: "
            f"{esc(shorten(self.text, 60))}</h4>"
            f"<details><summary>Prompt ({self.n_prompt_tokens} tokens)</summary>"
            f"<pre class=\"nbllm-pre\">{esc(self.prompt)}</pre></details>"
            "<div style=\"display:flex;gap:24px\"><div><b>Free generation</b>"
            f"<pre class=\"nbllm-pre\">{esc(self.continuation)}</pre></div>"
            "<div><b>Constrained label probabilities</b>"
            f"<table class=\"nbllm-table\">{rows}</table>"
            f"{self._mass_html()}</div></div></div>"
        )

    def _mass_html(self):
        # Multi-label questions have no label mass (NaN): say nothing then.
        if not np.isfinite(self.label_mass):
            return ""
        return f"<small>label mass {self.label_mass:.3g}</small>"

    def __repr__(self):
        ranked = ", ".join(f"{c}={p:.3f}" for c, p in self._ranked())
        prompt = textwrap.indent(self.prompt, "    ")
        return (
            f"GenerationPreview for {shorten(self.text, 60)!r}\n"
            f"  prompt ({self.n_prompt_tokens} tokens):\n{prompt}\n"
            f"  free generation: {self.continuation!r}\n"
            f"  label probabilities: {ranked}"
            + (f" (label mass {self.label_mass:.3g})" if np.isfinite(self.label_mass) else "")
        )
