"""The one function the magics, the accessor and the panel call.

It builds (or reuses) an estimator, classifies, and returns a
:class:`~nbllm.notebook.display.ClassificationResult`.  Models come from the
process-wide registry and results from the shared cache, so calling it again
with other labels or another prompt never reloads weights.
"""


import inspect

import numpy as np

from .. import options
from ..engine.scoring.prompts import is_missing
from ..exceptions import ExamplesError, InputTypeError, OptionError, TextsError
from ..options import check_labels, labels_problem
from .display import ClassificationResult, GenerationPreview
from .session import session
from .stopping import Stopped, stoppable
from ..warnings_to_user import warn
from ..engine.status import report
from .status import showing_status


def examples_problem(examples, text_col="text", label_col="label"):
    """The :class:`~nbllm.exceptions.ExamplesError` for unusable examples, or None."""
    if hasattr(examples, "columns"):
        missing = [c for c in (text_col, label_col) if c not in examples.columns]
        if missing:
            return ExamplesError(
                f"examples DataFrame has no column(s) {', '.join(map(repr, missing))}; "
                f"columns are {', '.join(map(repr, examples.columns))}"
            )
        return None
    is_iterable = hasattr(examples, "__iter__") and not isinstance(examples, (str, bytes))
    pairs = list(examples) if is_iterable else []
    if not pairs or not all(
        isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs
    ):
        return ExamplesError(
            "examples must be a DataFrame with text and label columns or a "
            "non-empty list of (text, label) pairs"
        )
    return None


def normalize_examples(examples, text_col="text", label_col="label"):
    """Few-shot examples as two lists (texts, labels).

    Accepts a DataFrame with text and label columns, or an iterable of
    (text, label) pairs.

    Raises
    ------
    ExamplesError
        A ValueError, for anything else.
    """
    error = examples_problem(examples, text_col, label_col)
    if error is not None:
        raise error
    if hasattr(examples, "columns"):
        return examples[text_col].tolist(), examples[label_col].tolist()
    pairs = list(examples)
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _unknown_labels(labels, example_labels):
    unknown = sorted({str(y) for y in example_labels} - {str(y) for y in labels})
    if unknown:
        return ExamplesError(
            f"examples use label(s) not in labels: {', '.join(map(repr, unknown))}"
        )
    return None


def labels_with_examples(labels, example_labels):
    """``labels`` checked, and holding every label the examples use (None stays None).

    Raises
    ------
    LabelsError, ExamplesError
        ValueErrors, for bad labels, or examples whose labels are not in ``labels``.
    """
    if labels is None:
        return None
    labels = check_labels(labels)
    error = _unknown_labels(labels, example_labels)
    if error is not None:
        raise error
    return labels


def _options_problem(labels, opts):
    """The first user error in ``labels`` and the options of a call, or None.

    Every check returns its error instead of raising it, so that
    :func:`check_options` raises it at the way in: the traceback a user sees
    then holds the call they made and this check, not the helpers.
    """
    unknown = sorted(set(opts) - OPTION_NAMES)
    if unknown:
        return InputTypeError(
            f"unexpected option(s) {', '.join(map(repr, unknown))}; options are "
            f"{', '.join(sorted(OPTION_NAMES))}")
    for option in _checked_options():
        if option.keyword in opts:
            error = option.problem(opts[option.keyword])
            if error is not None:
                return error
    examples = opts.get("examples")
    raw, calibration = opts.get("raw", False), opts.get("calibration")
    if opts.get("example_template") is not None and examples is None:
        return OptionError("example_template is for few-shot; it needs examples",
                           option="example_template")
    if opts.get("multi_label"):
        multi = options.MULTI_LABEL.setting(True)
        if examples is not None:
            return OptionError(f"{multi} is zero-shot; it takes no examples",
                               option="multi_label")
        if raw or calibration is not None:
            return OptionError(
                f"{multi} gives each label its own yes/no probability; "
                f"{options.PROBAS_SUM_TO_1.spoken_name()} and "
                f"{options.CALIBRATION.spoken_name()} do not apply", option="multi_label")
    elif raw and calibration is not None:
        return OptionError(
            f"{options.CALIBRATION.setting(calibration)} gives normalised probabilities; "
            f"it cannot be combined with {options.PROBAS_SUM_TO_1.setting(False)}",
            option="calibration")
    if examples is None:
        return labels_problem(labels)
    error = examples_problem(examples, opts.get("text_col", "text"),
                             opts.get("label_col", "label"))
    if error is not None or labels is None:
        return error
    example_labels = normalize_examples(examples, opts.get("text_col", "text"),
                                        opts.get("label_col", "label"))[1]
    return labels_problem(labels) or _unknown_labels(check_labels(labels), example_labels)


def check_options(labels, **opts):
    """Raise the first user error in ``labels`` and the options of a call.

    Called by every way in before any work (no model is loaded).

    Raises
    ------
    UserError
        A ValueError or TypeError with a one-line message.
    """
    error = _options_problem(labels, opts)
    if error is not None:
        raise error


# The defaults below are the notebook's Python keywords' (options.default_for).
_NB = options.PYTHON


def build_estimator(labels=None, *, model=options.MODEL_NAME.default_for(_NB),
                    prompt=options.PROMPT.default_for(_NB), examples=None,
                    max_samples=options.MAX_SAMPLES.default_for(_NB),
                    raw=options.PROBAS_SUM_TO_1.default_for(_NB),
                    threshold=options.THRESHOLD.default_for(_NB),
                    device=options.DEVICE.default_for(_NB),
                    batch_size=options.BATCH_SIZE.default_for(_NB),
                    progress=options.PROGRESS.default_for(_NB),
                    random_state=options.RANDOM_STATE.default_for(_NB),
                    text_col="text", label_col="label",
                    cache_dir=options.CACHE_DIR.default_for(_NB),
                    calibration=options.CALIBRATION.default_for(_NB),
                    label_map=options.LABEL_MAP.default_for(_NB),
                    example_selection=options.EXAMPLE_SELECTION.default_for(_NB),
                    multi_label=options.MULTI_LABEL.default_for(_NB),
                    use_chat_template=options.USE_CHAT_TEMPLATE.default_for(_NB),
                    truncation=options.TRUNCATION.default_for(_NB),
                    trust_remote_code=options.TRUST_REMOTE_CODE.default_for(_NB),
                    example_template=options.EXAMPLE_TEMPLATE.default_for(_NB)):
    """A fitted estimator for the options.

    ZeroShotClassifier; FewShotClassifier when ``examples`` are given;
    MultiLabelZeroShotClassifier with ``multi_label=True``.  ``threshold``
    is the low-probability threshold (default 0), or with ``multi_label``
    the probability from which a label applies (default 0.5).
    ``example_template`` (few-shot only; None: the estimator's default) is how
    one example is written, e.g. ``nbllm.SKORCH_EXAMPLE_TEMPLATE``.
    Unset model, device, dtype and cache_dir come from the :mod:`.session`.
    """
    from ..estimators import FewShotClassifier, ZeroShotClassifier

    check_options(labels, examples=examples, raw=raw, calibration=calibration,
                  multi_label=multi_label, example_template=example_template,
                  text_col=text_col, label_col=label_col)
    common = dict(
        prompt=prompt,
        probas_sum_to_1=not raw,
        device=device or session.device,
        dtype=session.dtype,
        threshold_low_prob=(options.THRESHOLD_LOW_PROB.default if threshold is None
                            else threshold),
        use_chat_template=use_chat_template,
        truncation=truncation,
        trust_remote_code=trust_remote_code,
        batch_size=batch_size,
        progress=progress,
        cache_dir=cache_dir if cache_dir is not None else session.cache_dir,
    )
    model = model if model is not None else session.model
    if multi_label:
        from ..estimators import MultiLabelZeroShotClassifier

        for key in ("probas_sum_to_1", "threshold_low_prob"):
            common.pop(key)
        return MultiLabelZeroShotClassifier(
            model, threshold=options.THRESHOLD.default if threshold is None else threshold,
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


# The keywords build_estimator takes (and so nbllm.classify and the accessors).
OPTION_NAMES = set(inspect.signature(build_estimator).parameters) - {"labels"}


def _checked_options():
    """The call's options the table declares a check for (the estimators' fit
    checks the others; an inverted keyword, ``raw``, is any truth value)."""
    return [option for option in options.BY_KEYWORD.values()
            if option.keyword in OPTION_NAMES and option.checked and not option.inverted]


def _texts_problem(texts, skip_missing):
    if texts is None or isinstance(texts, (str, bytes)):
        got = "None" if texts is None else "a single string; wrap it in a list: [text]"
        return TextsError(f"texts must be a list-like of texts, got {got}")
    if skip_missing:
        return None
    missing = [i for i, text in enumerate(texts) if is_missing(text)]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        return TextsError(
            f"texts contain {len(missing)} missing value(s) (None or NaN) at position(s) "
            f"{shown}; drop or fill them, or pass skip_missing=True")
    return None


def check_call(texts, labels=None, estimator=None, *, skip_missing=True, **opts):
    """Raise the first user error in a classify call, before any work.

    The entry check of :func:`classify` and of the accessors' ``classify``:
    texts (missing ones too, unless ``skip_missing``), labels and options
    (see :func:`check_options`); with an ``estimator``, its labels and
    options are its own.  Messages name options as the notebook's Python
    functions do (``raw=True``).

    Raises
    ------
    UserError
        A ValueError or TypeError with a one-line message.
    """
    with options.way_in(options.PYTHON):
        error = _texts_problem(texts, skip_missing) or (
            None if estimator is not None else _options_problem(labels, opts))
    if error is not None:
        raise error


def classify(texts, labels=None, *, estimator=None, previews=0, index=None,
             skip_missing=False, on_rows=None, stop=None, **opts):
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
        the result holds the rows finished so far (``result.stopped``; see
        :mod:`.stopping`).
    **opts
        Passed to :func:`build_estimator` (model, prompt, examples, ...).

    Raises
    ------
    UserError
        For bad texts, labels or options, before any work (see :func:`check_call`).

    In a Jupyter kernel, a status line in the cell says what is happening
    (loading the model, scoring) until the result is there.
    """
    if texts is not None and not hasattr(texts, "__len__"):
        texts = list(texts)  # an iterator: read once, for the check and the run
    check_call(texts, labels, estimator, skip_missing=skip_missing, **opts)
    with options.way_in(options.PYTHON), \
            showing_status(estimator if estimator is not None else opts.get("model")):
        return _classify(texts, labels, estimator, previews, index, skip_missing, on_rows,
                         stop, opts)


def _classify(texts, labels, estimator, previews, index, skip_missing, on_rows, stop,
              opts):
    clf = estimator if estimator is not None else build_estimator(labels, **opts)
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

    stopped = False
    if keep:
        try:
            clf.label_logprobs([texts[i] for i in keep], on_rows=stoppable(collect, stop),
                               positions=keep)
        except Stopped:
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
        result.prompt_mode = clf.prompt_mode().reason
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
