"""Compare prompts (and models) on the same texts in one call.

:func:`compare_prompts` scores the texts under each prompt with the same
labels and renders one table: per prompt, how it is sent to the model (raw or
as a chat message, and why), the mean label mass, the predicted label
distribution, accuracy and log-loss when the true labels are given, and the
share of texts on which it agrees with the first prompt.  Every prompt reuses
the result cache, so rerunning a comparison after adding a prompt only scores
the new one.
"""

from dataclasses import dataclass

import numpy as np

from ..exceptions import LabelsError, OptionError, PromptError, TextsError
from ..evaluation import evaluate
from ..options import check_labels
from .display import NO_MATH, esc
from . import classify as api

_PROMPT_CHARS = 90
# The other mode is tried on this many texts; a label mass this many times
# higher or lower there gets a hint.
HINT_TEXTS, HINT_RATIO = 16, 10.0


@dataclass
class PromptRow:
    """One row of a :class:`PromptComparison`."""

    prompt: str
    model: str
    mode: str
    mean_label_mass: float
    distribution: dict
    accuracy: float = None
    log_loss: float = None
    agreement: float = None
    hint: str = ""


class PromptComparison:
    """The table :func:`compare_prompts` returns (renders as HTML in notebooks).

    Attributes
    ----------
    rows : list of PromptRow
    predictions : list of ndarray
        Each prompt's predicted labels, in ``texts`` order.
    """

    def __init__(self, rows, predictions, n_texts, labels):
        self.rows, self.predictions = rows, predictions
        self.n_texts, self.labels = n_texts, labels

    @property
    def frame(self):
        """The table as a DataFrame, one row per prompt."""
        import pandas as pd

        return pd.DataFrame([{**r.__dict__, "distribution": dict(r.distribution)}
                             for r in self.rows])

    def _repr_html_(self):
        scored = any(r.accuracy is not None for r in self.rows)
        head = ["#", "prompt", "model", "sent", "mean label mass", "predicted"]
        head += ["accuracy", "log-loss"] if scored else []
        head += ["agrees with #0"]
        cells = []
        for i, r in enumerate(self.rows):
            flat = r.prompt.replace("\n", "\u21b5 ")
            short = flat if len(flat) <= _PROMPT_CHARS else flat[:_PROMPT_CHARS - 1] + "\u2026"
            dist = ", ".join(f"{esc(k)} {v}" for k, v in r.distribution.items())
            row = [str(i), f'<span title="{esc(r.prompt)}">{esc(short)}</span>',
                   esc(r.model), esc(r.mode), f"{r.mean_label_mass:.3g}", dist]
            if scored:
                row += [f"{r.accuracy:.3f}", f"{r.log_loss:.3f}"]
            row.append("\u2013" if i == 0 else f"{r.agreement:.0%}")
            cells.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
        hints = "".join(f'<p class="nbllm-legend">#{i}: {esc(r.hint)}</p>'
                        for i, r in enumerate(self.rows) if r.hint)
        return (
            f'<div class="{NO_MATH}"><table class="nbllm-table nbllm-compare">'
            f"<caption>{self.n_texts} text(s), {len(self.rows)} prompt(s), labels "
            f"{esc(', '.join(self.labels))}</caption><thead><tr>"
            + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(cells) + "</tbody></table>" + hints + "</div>"
        )

    def __repr__(self):
        lines = [f"PromptComparison: {self.n_texts} text(s), {len(self.rows)} prompt(s)"]
        for i, r in enumerate(self.rows):
            score = f", accuracy {r.accuracy:.3f}" if r.accuracy is not None else ""
            lines.append(f"  #{i} [{r.mode}] mass {r.mean_label_mass:.3g}{score}: "
                         f"{r.prompt[:60]!r}")
        return "\n".join(lines)


def compare_prompts(texts, labels, prompts, y=None, *, models=None, **options):
    """Score the same texts under several prompts (and models); one table.

    Parameters
    ----------
    texts : list-like of str
    labels : list of str
    prompts : list of str or None
        Templates with ``{text}`` and ``{labels}``; None is the default prompt.
    y : list-like of str, optional
        True labels: adds accuracy and log-loss.
    models : list of str, optional
        Model specs; every prompt runs on every model (default: ``model=``,
        else the session's or the embedded model).
    **options
        As for :func:`nbllm.notebook.classify.build_estimator` (device,
        calibration, use_chat_template, ...).

    Returns
    -------
    PromptComparison

    Raises
    ------
    ValueError
        If there are no prompts or texts, or ``y`` has another length or
        labels outside ``labels``.
    """
    labels = check_labels(labels)
    texts = [str(t) for t in texts]
    prompts = list(prompts)
    if not prompts:
        raise PromptError("prompts must hold at least one prompt; got none")
    if not texts:
        raise TextsError("texts must hold at least one text; got none")
    if y is not None:
        y = [str(v) for v in y]
        if len(y) != len(texts):
            raise LabelsError(f"y has {len(y)} labels for {len(texts)} texts")
        unknown = sorted(set(y) - set(labels))
        if unknown:
            raise LabelsError(f"y holds labels that are not in labels: "
                              f"{', '.join(map(repr, unknown))}")
    options.setdefault("progress", False)
    single = options.pop("model", None)
    if models is not None and single is not None:
        raise OptionError("give model= or models=, not both", option="model")
    rows, predictions = [], []
    for model in (models or [single]):
        for prompt in prompts:
            clf = api.build_estimator(labels, model=model, prompt=prompt, **options)
            logprobs = clf.label_logprobs(texts)
            probas = clf.probas_from_logprobs(logprobs)
            classes = [str(c) for c in clf.classes_]
            predicted = np.asarray(classes)[probas.argmax(axis=1)]
            counts = {c: int((predicted == c).sum()) for c in classes}
            row = PromptRow(prompt=clf.prompt_, model=clf.loaded_.spec,
                            mode=clf.prompt_mode().reason,
                            mean_label_mass=float(clf.label_mass(logprobs).mean()),
                            distribution=counts)
            if y is not None:
                metrics = evaluate(y, probas, classes)
                row.accuracy, row.log_loss = metrics["accuracy"], metrics["log_loss"]
            if predictions:
                row.agreement = float((predicted == predictions[0]).mean())
            row.hint = _mode_hint(
                clf, lambda other, m=model, p=prompt: api.build_estimator(
                    labels, model=m, prompt=p, **dict(options, use_chat_template=other)),
                texts[:HINT_TEXTS], logprobs[:HINT_TEXTS])
            rows.append(row)
            predictions.append(predicted)
    return PromptComparison(rows, predictions, len(texts), labels)


def _mode_hint(clf, build_other, texts, logprobs):
    """One line when the other way of sending the prompt (chat or raw) gives a
    label mass an order of magnitude apart on these texts; '' otherwise.

    ``build_other(use_chat_template)`` builds the same estimator sent the other way.
    """
    if not getattr(clf.tokenizer_, "chat_template", None) or \
            clf.model_.config.is_encoder_decoder:
        return ""
    other = not clf.use_chat_template_
    alt = build_other(other)
    mass = clf.label_mass(logprobs).mean()
    ratio = alt.label_mass(alt.label_logprobs(texts)).mean() / mass if mass > 0 else np.inf
    if 1 / HINT_RATIO < ratio < HINT_RATIO:
        return ""
    way = "as a chat message" if other else "raw"
    how, times = ("higher", ratio) if ratio > 1 else ("lower", 1 / ratio)
    return (f"sent {way}, its label mass is {times:.0f}\u00d7 {how} on the first "
            f"{len(texts)} texts; try use_chat_template={other!r} and compare accuracy")
