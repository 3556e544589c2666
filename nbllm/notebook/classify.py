"""The one function the magics, the accessor and the panel call.

It builds (or reuses) an estimator, classifies, and returns a
:class:`~nbllm.notebook.display.ClassificationResult`.  Models come from the
process-wide registry and results from the shared cache, so calling it again
with other labels or another prompt never reloads weights.
"""


import numpy as np

from .. import options
from ..engine.prompts import is_missing
from ..options import check_labels
from .display import ClassificationResult, GenerationPreview
from .session import settings
from ..warnings_to_user import warn
from ..engine.status import report
from .status import showing_status


def normalize_examples(examples, text_col="text", label_col="label"):
    """Few-shot examples as two lists (texts, labels).

    Accepts a DataFrame with text and label columns, or an iterable of
    (text, label) pairs.
    """
    if hasattr(examples, "columns"):
        missing = [c for c in (text_col, label_col) if c not in examples.columns]
        if missing:
            raise ValueError(
                f"examples DataFrame has no column(s) {', '.join(map(repr, missing))}; "
                f"columns are {', '.join(map(repr, examples.columns))}"
            )
        return examples[text_col].tolist(), examples[label_col].tolist()
    is_iterable = hasattr(examples, "__iter__") and not isinstance(examples, (str, bytes))
    pairs = list(examples) if is_iterable else []
    if not pairs or not all(
        isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs
    ):
        raise ValueError(
            "examples must be a DataFrame with text and label columns or a "
            "non-empty list of (text, label) pairs"
        )
    return [p[0] for p in pairs], [p[1] for p in pairs]


def labels_with_examples(labels, example_labels):
    """``labels`` checked, and holding every label the examples use (None stays None).

    Raises
    ------
    ValueError
        For bad labels, or examples whose labels are not in ``labels``.
    """
    if labels is None:
        return None
    labels = check_labels(labels)
    unknown = sorted({str(y) for y in example_labels} - set(labels))
    if unknown:
        raise ValueError(
            f"examples use label(s) not in labels: {', '.join(map(repr, unknown))}"
        )
    return labels


def build_estimator(labels=None, *, model=None, prompt=None, examples=None,
                    max_samples=options.MAX_SAMPLES.default, raw=False, threshold=None,
                    device=None, batch_size=options.BATCH_SIZE.default,
                    progress=options.PROGRESS.default,
                    random_state=options.NOTEBOOK_RANDOM_STATE,
                    text_col="text", label_col="label", cache_dir=None,
                    calibration=options.CALIBRATION.default, label_map=None,
                    example_selection=options.EXAMPLE_SELECTION.default,
                    multi_label=False, use_chat_template=options.USE_CHAT_TEMPLATE.default,
                    truncation=options.TRUNCATION.default, trust_remote_code=False,
                    example_template=None):
    """A fitted estimator for the options.

    ZeroShotClassifier; FewShotClassifier when ``examples`` are given;
    MultiLabelZeroShotClassifier with ``multi_label=True``.  ``threshold``
    is the low-probability threshold (default 0), or with ``multi_label``
    the probability from which a label applies (default 0.5).
    ``example_template`` (few-shot only; None: the estimator's default) is how
    one example is written, e.g. ``nbllm.SKORCH_EXAMPLE_TEMPLATE``.
    """
    from ..estimators import FewShotClassifier, ZeroShotClassifier

    if example_template is not None and examples is None:
        raise ValueError("example_template is for few-shot; it needs examples")
    common = dict(
        prompt=prompt,
        probas_sum_to_1=not raw,
        device=device or settings["device"],
        dtype=settings["dtype"],
        threshold_low_prob=0.0 if threshold is None else threshold,
        use_chat_template=use_chat_template,
        truncation=truncation,
        trust_remote_code=trust_remote_code,
        batch_size=batch_size,
        progress=progress,
        cache_dir=cache_dir if cache_dir is not None else settings["cache_dir"],
    )
    model = model if model is not None else settings["model"]
    if multi_label:
        from ..estimators import MultiLabelZeroShotClassifier

        if examples is not None:
            raise ValueError("multi_label=True is zero-shot; it takes no examples")
        if raw or calibration is not None:
            raise ValueError(
                "multi_label=True gives each label its own yes/no probability; "
                "raw and calibration do not apply"
            )
        for key in ("probas_sum_to_1", "threshold_low_prob"):
            common.pop(key)
        return MultiLabelZeroShotClassifier(
            model, threshold=0.5 if threshold is None else threshold,
            label_map=label_map, **common
        ).fit(None, [[label] for label in check_labels(labels)])
    common.update(calibration=calibration, label_map=label_map)
    if examples is None:
        return ZeroShotClassifier(model, **common).fit(None, check_labels(labels))
    texts, ex_labels = normalize_examples(examples, text_col, label_col)
    labels = labels_with_examples(labels, ex_labels)
    if example_template is not None:
        common["example_template"] = example_template
    clf = FewShotClassifier(model, max_samples=max_samples, random_state=random_state,
                            example_selection=example_selection, **common)
    # Labels without examples must still be predictable.
    return clf.fit(texts, ex_labels, classes=labels)


class _Stopped(Exception):
    """Raised inside a run when its stop event is set."""


def classify(texts, labels=None, *, estimator=None, previews=0, index=None,
             skip_missing=False, on_rows=None, stop=None, **options):
    """Classify texts and return a :class:`ClassificationResult`.

    Parameters
    ----------
    texts : list-like of str
    labels : list of str or None
        Required unless ``estimator`` or labelled ``examples`` give them.
    estimator : fitted ZeroShotClassifier or FewShotClassifier, optional
        Reused as is (its labels, prompt and model).
    previews : int
        Attach generation previews for the first N texts.
    index : sequence, optional
        Row labels for the result's frame.
    skip_missing : bool
        Give None/NaN texts NaN results with a warning instead of raising.
    on_rows : callable, optional
        ``on_rows(rows, logprobs)`` as results arrive (for progress).
    stop : threading.Event, optional
        When set during a run, the run stops after the current batch and
        the result holds the rows finished so far (``result.stopped``).
    **options
        Passed to :func:`build_estimator` (model, prompt, examples, ...).

    In a Jupyter kernel, a status line in the cell says what is happening
    (loading the model, scoring) until the result is there.
    """
    with showing_status(estimator if estimator is not None else options.get("model")):
        return _classify(texts, labels, estimator, previews, index, skip_missing, on_rows,
                         stop, options)


def _classify(texts, labels, estimator, previews, index, skip_missing, on_rows, stop,
              options):
    clf = estimator if estimator is not None else build_estimator(labels, **options)
    texts = list(texts)
    keep = list(range(len(texts)))
    if skip_missing:
        keep = [i for i, t in enumerate(texts) if not is_missing(t)]
        if len(keep) < len(texts):
            warn(
                f"{len(texts) - len(keep)} missing text(s) (None or NaN) were "
                "skipped; their results are NaN"
            )
    raw = getattr(clf, "probas_sum_to_1", True) is False
    logprobs = np.full((len(texts), len(clf.classes_)), np.nan)
    pending = np.zeros(len(texts), dtype=bool)
    pending[keep] = True
    keep_array = np.asarray(keep, dtype=np.int64)

    def collect(rows, values):
        logprobs[keep_array[rows]] = values
        pending[keep_array[rows]] = False
        if on_rows is not None:
            on_rows(rows, values)
        if stop is not None and stop.is_set():
            raise _Stopped

    stopped = False
    if keep:
        try:
            clf.label_logprobs([texts[i] for i in keep], on_rows=collect, positions=keep)
        except _Stopped:
            stopped = True
    done = ~np.isnan(logprobs).any(axis=1)
    if done.any():
        clf.low_probability_rows(logprobs[done])
    probas = np.full_like(logprobs, np.nan)
    probas[done] = clf.probas_from_logprobs(logprobs[done])
    multi = getattr(clf, "threshold", None) if _is_multi_label(clf) else None
    result = ClassificationResult(
        ["" if is_missing(t) else t for t in texts],
        clf.classes_, probas, clf.label_mass(logprobs), raw=raw,
        threshold=getattr(clf, "threshold_low_prob", 0.0),
        previews=[preview(clf, texts[i]) for i in keep[:previews]] if not stopped else [],
        index=index,
        hide_low=getattr(clf, "error_low_prob", None) == "return_none",
        multi_label_threshold=multi,
    )
    result.stopped = stopped
    result.pending = pending
    result.estimator = clf
    if hasattr(clf, "prompt_mode"):
        result.prompt_mode = clf.prompt_mode()[1]
    return result


def _is_multi_label(clf):
    from ..estimators import MultiLabelZeroShotClassifier

    return isinstance(clf, MultiLabelZeroShotClassifier)


def _preview_probas(clf, logprobs):
    if getattr(clf, "calibration", None) == "batch":
        # A batch of one carries no batch statistics: show the plain ones.
        from ..estimators.calibration import softmax_rows

        return softmax_rows(logprobs)
    return clf.probas_from_logprobs(logprobs[None])[0]


def preview(clf, text, max_new_tokens=24):
    """A :class:`GenerationPreview` for one text with a fitted estimator."""
    with showing_status(clf):
        report(f"preview: scoring and generating up to {max_new_tokens} tokens\u2026")
        return _preview(clf, text, max_new_tokens)


def _preview(clf, text, max_new_tokens):
    prompt = clf.get_prompt(text)
    n_tokens = len(clf.prompt_token_ids([str(text)])[0])
    logprobs = clf.label_logprobs([text])[0]
    return GenerationPreview(
        text, prompt, n_tokens, clf.generate(text, max_new_tokens=max_new_tokens),
        clf.classes_, _preview_probas(clf, logprobs),
        float(clf.label_mass(logprobs[None])[0]),
    )
