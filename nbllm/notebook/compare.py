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

from ..engine import status as engine_status
from ..engine.scoring.prompts import is_missing
from ..estimators.inputs import check_texts
from ..exceptions import LabelsError, OptionError, PromptError, TextsError
from ..evaluation import evaluate
from ..options import check_labels
from ..warnings_to_user import warn
from .display import NO_MATH, RESULT_STYLE, esc, plural
from .status import showing_status
from . import classify as api

_PROMPT_CHARS = 90
# The other way of sending a prompt is tried on this many texts; when its
# label mass there is this many times higher, the row gets a hint.
HINT_TEXTS, HINT_RATIO = 16, 10.0
# Column widths that keep the table within a ~1,000 px output: the prompt
# and the model are cut (in full on hover), the predicted counts wrap.
_COMPARE_STYLE = (
    "<style>"
    ".nbllm-compare td.nbllm-prompt{max-width:240px;overflow:hidden;"
    "text-overflow:ellipsis}"
    ".nbllm-compare td.nbllm-model{max-width:120px;overflow:hidden;text-overflow:ellipsis}"
    ".nbllm-compare td.nbllm-predicted{white-space:normal;min-width:110px}"
    ".nbllm-compare th{white-space:normal;vertical-align:bottom}"
    ".nbllm-compare td.nbllm-num{text-align:right !important}"
    "</style>"
)


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
    sent: str = ""


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
        models = list(dict.fromkeys(r.model for r in self.rows))
        head = ["#", "prompt"] + (["model"] if len(models) > 1 else []) + ["sent"]
        head += ["accuracy", "log-loss"] if scored else []
        head += ["agrees with #0", "label mass", "predicted"]
        cells = []
        for i, r in enumerate(self.rows):
            flat = r.prompt.replace("\n", "\u21b5 ")
            short = flat if len(flat) <= _PROMPT_CHARS else flat[:_PROMPT_CHARS - 1] + "\u2026"
            dist = ", ".join(f"{esc(k)} {v}" for k, v in r.distribution.items())
            row = [("", str(i)),
                   ("nbllm-prompt", f'<span title="{esc(r.prompt)}">{esc(short)}</span>')]
            if len(models) > 1:
                row.append(("nbllm-model", f'<span title="{esc(r.model)}">{esc(r.model)}</span>'))
            row.append(("nbllm-sent", f'<span title="{esc(r.mode)}">{esc(r.sent)}</span>'))
            if scored:
                row += [("nbllm-num nbllm-accuracy", f"{r.accuracy:.3f}"),
                        ("nbllm-num nbllm-logloss", f"{r.log_loss:.3f}")]
            row += [("nbllm-num nbllm-agreement",
                     "\u2013" if i == 0 else f"{r.agreement:.0%}"),
                    ("nbllm-num nbllm-mass", f"{r.mean_label_mass:.3g}"),
                    ("nbllm-predicted", dist)]
            cells.append("<tr>" + "".join(f'<td class="{c}">{v}</td>' for c, v in row)
                         + "</tr>")
        caption = (f"{plural(self.n_texts, 'text')}, {plural(len(self.rows), 'prompt')}, "
                   f"labels {esc(', '.join(self.labels))}")
        if len(models) == 1:
            caption += f", model {esc(models[0])}"
        return (
            f'{RESULT_STYLE}{_COMPARE_STYLE}<div class="{NO_MATH}">'
            '<table class="nbllm-table nbllm-compare">'
            f"<caption>{caption}</caption><thead><tr>"
            + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(cells) + "</tbody></table>" + self._notes() + "</div>"
        )

    def _notes(self):
        """How each prompt was sent and why (once per reason), then the hints."""
        by_reason = {}
        for i, r in enumerate(self.rows):
            by_reason.setdefault(r.mode, []).append(i)
        notes = []
        for reason, rows in by_reason.items():
            which = "" if len(by_reason) == 1 else (
                "#" + ", #".join(map(str, rows)) + ": ")
            notes.append(f'<p class="nbllm-legend nbllm-sent-note">{which}{esc(reason)}</p>')
        notes += [f'<p class="nbllm-legend nbllm-hint">#{i}: {esc(r.hint)}</p>'
                  for i, r in enumerate(self.rows) if r.hint]
        notes.append('<p class="nbllm-legend">label mass: the probability the model '
                     "gives the labels together, averaged over the texts.</p>")
        return "".join(notes)

    def __repr__(self):
        lines = [f"PromptComparison: {plural(self.n_texts, 'text')}, "
                 f"{plural(len(self.rows), 'prompt')}"]
        for i, r in enumerate(self.rows):
            score = f", accuracy {r.accuracy:.3f}" if r.accuracy is not None else ""
            lines.append(f"  #{i} [{r.sent}] mass {r.mean_label_mass:.3g}{score}: "
                         f"{r.prompt[:60]!r}")
        return "\n".join(lines)


def compare_prompts(texts, labels, prompts, y=None, *, models=None, skip_missing=False,
                    **options):
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
    skip_missing : bool
        As in :func:`nbllm.classify`: leave None/NaN texts (and their ``y``)
        out, with a warning, instead of raising; their predictions are None.
    **options
        As for :func:`nbllm.notebook.classify.build_estimator` (device,
        calibration, use_chat_template, ...).

    Returns
    -------
    PromptComparison

    Raises
    ------
    UserError
        A ValueError or TypeError, before any work: texts, labels and options
        are checked as :func:`nbllm.classify` checks them (missing texts
        too, unless ``skip_missing``); also if there are no prompts or
        texts, if ``multi_label=True`` (a comparison is of single-label
        predictions), or if ``y`` has another length or labels outside
        ``labels``.
    """
    if texts is not None and not hasattr(texts, "__len__"):
        texts = list(texts)  # an iterator: read once, for the check and the run
    api.check_call(texts, labels, skip_missing=skip_missing, **options)
    if options.get("multi_label"):
        raise OptionError("compare_prompts compares single-label predictions; "
                          "multi_label=True is not supported", option="multi_label")
    labels = check_labels(labels)
    texts = list(texts)
    prompts = list(prompts)
    if not prompts:
        raise PromptError("prompts must hold at least one prompt; got none")
    if not texts:
        raise TextsError("texts must hold at least one text; got none")
    if y is not None:
        y = [str(v) for v in y]
        if len(y) != len(texts):
            raise LabelsError(f"y has {plural(len(y), 'label')} for "
                              f"{plural(len(texts), 'text')}")
        unknown = sorted(set(y) - set(labels))
        if unknown:
            raise LabelsError(f"y holds labels that are not in labels: "
                              f"{', '.join(map(repr, unknown))}")
    options.setdefault("progress", False)
    single = options.pop("model", None)
    if models is not None and single is not None:
        raise OptionError("give model= or models=, not both", option="model")
    models = list(models or [single])
    keep = [i for i, t in enumerate(texts) if not is_missing(t)]
    if not keep:
        raise TextsError(f"texts must hold at least one text; all {len(texts)} are "
                         "missing (None or NaN)")
    if len(keep) < len(texts):
        warn(f"{len(texts) - len(keep)} missing text(s) (None or NaN) were skipped; "
             "their predictions are None")
    # Checked and converted once here (non-strings warned about once, not per prompt).
    scored = check_texts([texts[i] for i in keep])
    with showing_status(models[0]):
        rows, predictions = _compare(scored, labels, prompts,
                                     None if y is None else [y[i] for i in keep],
                                     models, options)
    if len(keep) < len(texts):
        predictions = [_spread(p, keep, len(texts)) for p in predictions]
    return PromptComparison(rows, predictions, len(scored), labels)


def _spread(predicted, keep, n):
    """``predicted`` (one per kept text) at the kept positions of ``n``, None elsewhere."""
    out = np.full(n, None, dtype=object)
    out[keep] = predicted
    return out


def _compare(texts, labels, prompts, y, models, options):
    """Each prompt's row of the table and its predictions, in ``texts`` order."""
    rows, predictions = [], []
    total = len(models) * len(prompts)
    for model in models:
        for prompt in prompts:
            step = f"prompt {len(rows) + 1} / {total}"
            engine_status.report(f"{step}: preparing\u2026")
            clf = api.build_estimator(labels, model=model, prompt=prompt, **options)
            logprobs = _scored(clf, texts, step)
            probas = clf.probas_from_logprobs(logprobs)
            classes = [str(c) for c in clf.classes_]
            # The one prediction rule; no row is hidden, since the notebook's
            # classifiers keep error_low_prob='ignore'.
            predicted = clf.result_policy().predictions(classes, probas)
            metrics = evaluate(y, probas, classes) if y is not None else {}
            engine_status.report(f"{step}: trying the other way of sending it on "
                                 f"{plural(min(HINT_TEXTS, len(texts)), 'text')}\u2026")
            hint = _mode_hint(
                clf, lambda other, m=model, p=prompt: api.build_estimator(
                    labels, model=m, prompt=p, **dict(options, use_chat_template=other)),
                texts[:HINT_TEXTS], logprobs[:HINT_TEXTS])
            mode = clf.prompt_mode()
            row = PromptRow(
                prompt=clf.prompt_, model=clf.loaded_.spec, mode=mode.reason,
                mean_label_mass=float(clf.label_mass(logprobs).mean()),
                distribution={c: int((predicted == c).sum()) for c in classes},
                accuracy=metrics.get("accuracy"), log_loss=metrics.get("log_loss"),
                agreement=(float((predicted == predictions[0]).mean()) if predictions
                           else None),
                hint=hint, sent=mode.mode)
            rows.append(row)
            predictions.append(predicted)
    return rows, predictions


def _scored(clf, texts, step):
    """The label log-probabilities of ``texts``, reporting "prompt 2 / 3: 20 / 40 texts"."""
    done = [0]

    def counted(rows, values):
        done[0] += len(rows)
        engine_status.report(f"{step}: scored {done[0]} / {len(texts)} texts\u2026")

    return clf.label_logprobs(texts, on_rows=counted)


def _mode_hint(clf, build_other, texts, logprobs):
    """The hint for one row, '' when the other way of sending is no better.

    ``build_other(use_chat_template)`` builds the same estimator sent the other
    way (chat or raw); both are measured by their mean label mass on ``texts``.
    """
    if not getattr(clf.tokenizer_, "chat_template", None) or \
            clf.model_.config.is_encoder_decoder:
        return ""
    other = not clf.use_chat_template_
    alt = build_other(other)
    return mode_hint(clf.prompt_mode().chat,
                     float(clf.label_mass(logprobs).mean()),
                     float(alt.label_mass(alt.label_logprobs(texts)).mean()), len(texts))


def mode_hint(chat, mass, other_mass, n_texts, ratio=None):
    """A one-line hint when sending the prompt the other way measured better.

    Parameters
    ----------
    chat : bool
        Whether the row's prompt was sent as a chat message.
    mass, other_mass : float
        Mean label mass of the row's way and of the other way, on the same texts.
    n_texts : int
        How many texts were measured (the first ones).
    ratio : float, optional
        How many times higher the other way must be (default ``HINT_RATIO``).

    Returns
    -------
    str
        '' unless ``other_mass`` is at least ``ratio`` times ``mass``: a way
        that is already better, or about as good, gets no advice.
    """
    ratio = HINT_RATIO if ratio is None else ratio
    if not other_mass > 0 or (mass > 0 and other_mass < ratio * mass):
        return ""
    times = f"{other_mass / mass:.0f}\u00d7" if mass > 0 else "far"
    way, setting = ("raw", False) if chat else ("as a chat message", True)
    return (f"sent {way}, the same prompt got {times} more label mass on the first "
            f"{plural(n_texts, 'text')} ({other_mass:.3g} against {mass:.3g}); try "
            f"use_chat_template={setting!r} and compare accuracy")
