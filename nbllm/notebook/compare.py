"""Compare prompts (and models) on the same texts in one call.

:func:`compare_prompts` scores the texts under each prompt with the same
labels and renders one table: per prompt, how it is sent to the model (raw or
as a chat message, and the ``use_chat_template`` value that sends it so), the
mean label mass, the predicted label
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

# A prompt longer than this shows its start and its end around an ellipsis
# (in full on hover), unless two prompts would then look the same.
_PROMPT_CHARS = 200
# Without true labels the other way of sending a prompt is tried on this many
# texts; when its label mass there is this many times higher, the row gets a
# hint.  With true labels it is scored on every text and judged by accuracy.
HINT_TEXTS, HINT_RATIO = 16, 10.0
# Column widths that keep the table within a ~1,000 px output: the prompt
# wraps within its column, the model is cut (in full on hover); a header, a
# number, a setting and each "label count" never break inside.
_COMPARE_STYLE = (
    "<style>"
    ".nbllm-compare td.nbllm-prompt{min-width:120px;max-width:320px;white-space:normal;"
    "overflow-wrap:anywhere}"
    ".nbllm-compare td.nbllm-sent code{font-size:11px;padding:0 2px}"
    ".nbllm-compare td.nbllm-model{max-width:120px;overflow:hidden;text-overflow:ellipsis}"
    ".nbllm-compare td.nbllm-predicted{white-space:normal;min-width:110px}"
    ".nbllm-compare td.nbllm-predicted span,.nbllm-compare td.nbllm-sent,"
    ".nbllm-compare td.nbllm-num{white-space:nowrap}"
    ".nbllm-compare th{white-space:nowrap;vertical-align:bottom}"
    ".nbllm-compare td.nbllm-num{text-align:right !important}"
    "</style>"
)


def _setting(value):
    """The option as it is written to reproduce a row: ``use_chat_template='auto'``."""
    return f"use_chat_template={value!r}"


def _shown_prompts(prompts):
    """Each prompt as its cell shows it: newlines as arrows; a long one cut in
    the middle, unless that makes two different prompts look alike."""
    flat = [p.replace("\n", "\u21b5 ") for p in prompts]
    half = _PROMPT_CHARS // 2
    # Cut between words, so neither end shows a piece of one.
    cut = [f if len(f) <= _PROMPT_CHARS else
           f[:half].rsplit(" ", 1)[0] + " \u2026 " + f[-half:].split(" ", 1)[-1]
           for f in flat]
    seen = {}
    for full, short in zip(flat, cut):
        seen.setdefault(short, set()).add(full)
    return [short if len(seen[short]) == 1 else full for full, short in zip(flat, cut)]


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
    setting: str = ""


class PromptComparison:
    """The table :func:`compare_prompts` returns (renders as HTML in notebooks).

    Attributes
    ----------
    rows : list of PromptRow
        One per prompt and model; ``setting`` is the option value that sends
        the prompt as the row did (``use_chat_template='auto'``), ``hint`` the
        advice to send it the other way, if any.
    predictions : list of ndarray
        Each row's predicted labels, in ``texts`` order.
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
        shown = _shown_prompts([r.prompt for r in self.rows])
        for i, (r, short) in enumerate(zip(self.rows, shown)):
            dist = ", ".join(f"<span>{esc(k)} {v}</span>" for k, v in r.distribution.items())
            row = [("", str(i)),
                   ("nbllm-prompt", f'<span title="{esc(r.prompt)}">{esc(short)}</span>')]
            if len(models) > 1:
                row.append(("nbllm-model", f'<span title="{esc(r.model)}">{esc(r.model)}</span>'))
            # The setting is what reproduces the row: "raw" alone could be
            # use_chat_template='auto' (the label after a space) or False.
            row.append(("nbllm-sent", f'<span title="{esc(r.mode)}">{esc(r.sent)}</span>'
                        f"<br><code>{esc(r.setting)}</code>"))
            if scored:
                row += [("nbllm-num nbllm-accuracy", f"{r.accuracy:.3f}"),
                        ("nbllm-num nbllm-logloss", f"{r.log_loss:.3f}")]
            row += [("nbllm-num nbllm-agreement",
                     "\u2013" if i == 0 else f"{r.agreement:.0%}"),
                    ("nbllm-num nbllm-mass", f"{r.mean_label_mass:.3g}"),
                    ("nbllm-predicted", dist)]
            cells.append("<tr>" + "".join(f'<td class="{c}">{v}</td>' for c, v in row)
                         + "</tr>")
        caption = f"{plural(self.n_texts, 'text')}, {self._prompts_and_models()}, " \
                  f"labels {esc(', '.join(self.labels))}"
        if len(models) == 1:
            caption += f", model {esc(models[0])}"
        return (
            f'{RESULT_STYLE}{_COMPARE_STYLE}<div class="{NO_MATH}">'
            '<table class="nbllm-table nbllm-compare">'
            f"<caption>{caption}</caption><thead><tr>"
            + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(cells) + "</tbody></table>" + self._notes() + "</div>"
        )

    def _prompts_and_models(self):
        """'3 prompts', or '2 prompts \u00d7 2 models' (every prompt ran on every model)."""
        models = len(dict.fromkeys(r.model for r in self.rows))
        if models == 1:
            return plural(len(self.rows), "prompt")
        return f"{plural(len(self.rows) // models, 'prompt')} \u00d7 {plural(models, 'model')}"

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
                 f"{self._prompts_and_models()}"]
        for i, r in enumerate(self.rows):
            score = f", accuracy {r.accuracy:.3f}" if r.accuracy is not None else ""
            lines.append(f"  #{i} [{r.sent}, {r.setting}] mass {r.mean_label_mass:.3g}"
                         f"{score}: {r.prompt[:60]!r}")
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
        True labels: adds accuracy and log-loss.  A row's hint to send its
        prompt the other way then rests on accuracy on every text (the other
        way is scored on all of them); without ``y``, on the label mass of
        the first ``HINT_TEXTS`` texts.
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
            hint = _mode_hint(
                clf, lambda other, m=model, p=prompt: api.build_estimator(
                    labels, model=m, prompt=p, **dict(options, use_chat_template=other)),
                texts, logprobs, y, metrics.get("accuracy"), step)
            mode = clf.prompt_mode()
            row = PromptRow(
                prompt=clf.prompt_, model=clf.loaded_.spec, mode=mode.reason,
                mean_label_mass=float(clf.label_mass(logprobs).mean()),
                distribution={c: int((predicted == c).sum()) for c in classes},
                accuracy=metrics.get("accuracy"), log_loss=metrics.get("log_loss"),
                agreement=(float((predicted == predictions[0]).mean()) if predictions
                           else None),
                hint=hint, sent=mode.mode, setting=_setting(clf.use_chat_template))
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


def _mode_hint(clf, build_other, texts, logprobs, y, accuracy, step):
    """The hint for one row, '' when the other way of sending is no better.

    ``build_other(use_chat_template)`` builds the same estimator sent the other
    way: as a chat message (``True``) for a raw row, raw with the label after
    a space (``'auto'``) for a chat row.  With true labels ``y`` both ways are
    judged by accuracy on every text; without, by mean label mass on the first
    ``HINT_TEXTS``.
    """
    if not getattr(clf.tokenizer_, "chat_template", None) or \
            clf.model_.config.is_encoder_decoder:
        return ""
    chat = clf.prompt_mode().chat
    other = "auto" if chat else True
    alt = build_other(other)
    if y is not None:
        engine_status.report(f"{step}: trying the other way of sending it on "
                             f"{plural(len(texts), 'text')}\u2026")
        # The table's accuracy (evaluate's: the likeliest label against y).
        classes = np.array([str(c) for c in alt.classes_])
        probas = alt.probas_from_logprobs(alt.label_logprobs(texts))
        other_accuracy = float((classes[probas.argmax(axis=1)] == np.asarray(y)).mean())
        return accuracy_hint(chat, accuracy, other_accuracy, len(texts))
    texts, logprobs = texts[:HINT_TEXTS], logprobs[:HINT_TEXTS]
    engine_status.report(f"{step}: trying the other way of sending it on "
                         f"{plural(len(texts), 'text')}\u2026")
    return mode_hint(chat, float(clf.label_mass(logprobs).mean()),
                     float(alt.label_mass(alt.label_logprobs(texts)).mean()), len(texts))


def _other_way(chat):
    """How the other way sends a prompt, and the setting that does it."""
    if chat:
        return "raw, the label after a space", _setting("auto")
    return "as a chat message", _setting(True)


def accuracy_hint(chat, accuracy, other_accuracy, n_texts):
    """A one-line hint when sending the prompt the other way was more accurate.

    Parameters
    ----------
    chat : bool
        Whether the row's prompt was sent as a chat message.
    accuracy, other_accuracy : float
        Accuracy of the row's way and of the other way, on the same texts.
    n_texts : int
        How many texts (all of the comparison's).

    Returns
    -------
    str
        '' unless ``other_accuracy`` is higher: the advice never points to a
        way that measured as accurate or less.
    """
    if not other_accuracy > accuracy:
        return ""
    way, setting = _other_way(chat)
    return (f"sent {way} ({setting}), the same prompt was more accurate on all "
            f"{plural(n_texts, 'text')}: {other_accuracy:.3f} against {accuracy:.3f}; "
            f"try {setting}")


def mode_hint(chat, mass, other_mass, n_texts, ratio=None):
    """A one-line hint when sending the prompt the other way got more label mass.

    Used when no true labels are given (with them, :func:`accuracy_hint`).

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
    way, setting = _other_way(chat)
    return (f"sent {way} ({setting}), the same prompt got {times} more label mass on "
            f"the first {plural(n_texts, 'text')} ({other_mass:.3g} against {mass:.3g}); "
            "label mass is not accuracy: give y to compare accuracy")
