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
from ..exceptions import ExamplesError, InputTypeError, OptionError, TextsError, UserError
from ..options import check_labels, check_missing_labels, listed_positions
from ..estimators.explanation import HTML_ROWS
from .display import ClassificationResult, GenerationPreview
from .session import session
from .stopping import Interrupted, Stopped, stoppable
from ..warnings_to_user import warn, words_for_warnings
from ..engine.status import report
from .status import showing_status


def normalize_examples(examples, text_col="text", label_col="label"):
    """Few-shot examples as two lists (texts, labels).

    Accepts a DataFrame with text and label columns, or an iterable of
    (text, label) pairs.

    Raises
    ------
    ExamplesError
        A ValueError, for anything else.
    LabelsError
        For missing labels (None, NaN), naming their positions.
    """
    if hasattr(examples, "columns"):
        missing = [c for c in (text_col, label_col) if c not in examples.columns]
        if missing:
            raise ExamplesError(
                f"examples DataFrame has no column(s) {', '.join(map(repr, missing))}; "
                f"columns are {', '.join(map(repr, examples.columns))}"
            )
        texts, labels = examples[text_col].tolist(), examples[label_col].tolist()
    else:
        is_iterable = hasattr(examples, "__iter__") and not isinstance(examples,
                                                                       (str, bytes))
        pairs = list(examples) if is_iterable else []
        if not pairs or not all(isinstance(p, (tuple, list)) and len(p) == 2
                                for p in pairs):
            raise ExamplesError(
                "examples must be a DataFrame with text and label columns or a "
                "non-empty list of (text, label) pairs"
            )
        texts, labels = [p[0] for p in pairs], [p[1] for p in pairs]
    check_missing_labels(labels, "the examples' labels")
    return texts, labels


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
    unknown = sorted({str(y) for y in example_labels} - set(labels))
    if unknown:
        raise ExamplesError(
            f"examples use label(s) not in labels: {', '.join(map(repr, unknown))}"
        )
    return labels


def check_options(labels, **opts):
    """Raise the first user error in ``labels`` and the options of a call.

    The entry check of every way in that builds an estimator, before any
    work (no model is loaded): each option by its one definition in
    :mod:`nbllm.options` (the check ``fit`` runs too), then the rules
    between options and the labels.  Errors name options in the
    estimators' words and in ``named``; the way in words them
    (:func:`nbllm.options.in_words`).

    Raises
    ------
    UserError
        A ValueError or TypeError with a one-line message.
    """
    unknown = sorted(set(opts) - OPTION_NAMES)
    if unknown:
        raise InputTypeError(
            f"unexpected option(s) {', '.join(map(repr, unknown))}; options are "
            f"{', '.join(sorted(OPTION_NAMES))}")
    for keyword, value in opts.items():
        option = options.BY_KEYWORD.get(keyword)
        # A None that is the notebook's own default stands for the estimators'.
        if option is not None and not (value is None and option.default_for(_NB) is None):
            option.check(option.to_estimator(value))
    examples = opts.get("examples")
    raw, calibration = opts.get("raw", False), opts.get("calibration")
    template = opts.get("example_template")
    if template is not None and examples is None:
        raise OptionError("{example_template} is for few-shot; it needs examples",
                          option="example_template", named={"example_template": template})
    if opts.get("multi_label"):
        if examples is not None:
            raise OptionError("{multi_label=} is zero-shot; it takes no examples",
                              option="multi_label", named={"multi_label": True})
        if raw or calibration is not None:
            raise OptionError(
                "{multi_label=} gives each label its own yes/no probability; "
                "{probas_sum_to_1} and {calibration} do not apply", option="multi_label",
                named={"multi_label": True, "probas_sum_to_1": not raw,
                       "calibration": calibration})
    options.check_calibration_with_probas(calibration, not raw)
    if examples is None:
        check_labels(labels)
        return
    example_labels = normalize_examples(examples, opts.get("text_col", "text"),
                                        opts.get("label_col", "label"))[1]
    labels_with_examples(labels, example_labels)


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
    opts = {name: value for name, value in locals().items() if name != "labels"}
    check_options(labels, **opts)
    return _fit_estimator(labels, **opts)


def _fit_estimator(labels=None, *, model, prompt, examples, max_samples, raw, threshold,
                   device, batch_size, progress, random_state, text_col, label_col,
                   cache_dir, calibration, label_map, example_selection, multi_label,
                   use_chat_template, truncation, trust_remote_code, example_template):
    """:func:`build_estimator` after its entry check (run once per call)."""
    from ..estimators import FewShotClassifier, ZeroShotClassifier

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
        ).fit(None, [[str(label)] for label in labels])
    common.update(calibration=calibration, label_map=label_map)
    if examples is None:
        return ZeroShotClassifier(model, **common).fit(None, [str(y) for y in labels])
    texts, ex_labels = normalize_examples(examples, text_col, label_col)
    labels = None if labels is None else [str(y) for y in labels]
    if example_template is not None:
        common["example_template"] = example_template
    clf = FewShotClassifier(model, max_samples=max_samples, random_state=random_state,
                            example_selection=example_selection, **common)
    # Labels without examples must still be predictable.
    return clf.fit(texts, ex_labels, classes=labels)


# classify(explain=True) explains as many rows as the highlight shows.
EXPLAIN_ROWS = HTML_ROWS

# The keywords build_estimator takes (and so nbllm.classify and the accessors).
OPTION_NAMES = set(inspect.signature(build_estimator).parameters) - {"labels"}
# What the notebook's Python functions leave out: build_estimator's defaults.
_DEFAULTS = {name: p.default for name, p in
             inspect.signature(build_estimator).parameters.items() if name != "labels"}


def _check_texts(texts, skip_missing):
    if texts is None or isinstance(texts, (str, bytes)):
        got = "None" if texts is None else "a single string; wrap it in a list: [text]"
        raise TextsError(f"texts must be a list-like of texts, got {got}")
    if skip_missing:
        return
    missing = [i for i, text in enumerate(texts) if is_missing(text)]
    if missing:
        raise TextsError(
            f"texts contain {len(missing)} missing value(s) (None or NaN) at position(s) "
            f"{listed_positions(missing)}; drop or fill them, or pass skip_missing=True")


def check_call(texts, labels=None, estimator=None, *, skip_missing=True, **opts):
    """Raise the first user error in a classify call, before any work.

    The entry check of :func:`classify` and of the accessors' ``classify``:
    texts (missing ones too, unless ``skip_missing``), labels and options
    (see :func:`check_options`); with an ``estimator``, its labels and
    options are its own.  The caller words the error for its way in
    (:func:`nbllm.options.in_words`).

    Raises
    ------
    UserError
        A ValueError or TypeError with a one-line message.
    """
    _check_texts(texts, skip_missing)
    if estimator is None:
        check_options(labels, **opts)


def classify(texts, labels=None, *, estimator=None, previews=0, index=None,
             skip_missing=False, on_rows=None, stop=None,
             explain=options.EXPLAIN.default_for(_NB), **opts):
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
    explain : bool
        Also explain the first :data:`EXPLAIN_ROWS` rows (``result.explanation``,
        highlighted under the table; see the estimators' ``explain``).
    **opts
        Passed to :func:`build_estimator` (model, prompt, examples, ...).

    Raises
    ------
    UserError
        For bad texts, labels or options, before any work (see :func:`check_call`).
    Interrupted
        A ``KeyboardInterrupt`` (Ctrl-C, the kernel's interrupt) during the
        scoring, re-raised saying how many texts were classified and how to
        resume; no partial result is returned.

    In a Jupyter kernel, a status line in the cell says what is happening
    (loading the model, scoring) until the result is there.
    """
    if texts is not None and not hasattr(texts, "__len__"):
        texts = list(texts)  # an iterator: read once, for the check and the run
    try:
        check_call(texts, labels, estimator, skip_missing=skip_missing, **opts)
        with words_for_warnings(options.PYTHON), \
                showing_status(estimator if estimator is not None else opts.get("model")):
            return _classify(texts, labels, estimator, previews, index, skip_missing,
                             on_rows, stop, opts, explain)
    except UserError as exc:
        # Said in the notebook's words (raw=True), from this call down.
        raise options.in_words(exc, options.PYTHON) from None


def _classify(texts, labels, estimator, previews, index, skip_missing, on_rows, stop,
              opts, explain=options.EXPLAIN.default_for(_NB)):
    clf = estimator if estimator is not None else _fit_estimator(labels,
                                                                 **{**_DEFAULTS, **opts})
    texts = list(texts)
    keep = list(range(len(texts)))
    if skip_missing:
        keep = [i for i, t in enumerate(texts) if not is_missing(t)]
        if len(keep) < len(texts):
            warn(
                f"{len(texts) - len(keep)} missing text(s) (None or NaN) were "
                "skipped; their results are NaN"
            )
    # The classifier says how its results read (raw, low rows, multi-label),
    # so this layer never asks what kind of classifier it holds.
    policy = clf.result_policy()
    scores = np.full((len(texts), len(clf.classes_)), np.nan)
    pending = np.zeros(len(texts), dtype=bool)
    pending[keep] = True
    keep_array = np.asarray(keep, dtype=np.int64)

    def collect(rows, values):
        scores[keep_array[rows]] = values
        pending[keep_array[rows]] = False
        if on_rows is not None:
            on_rows(rows, values)

    stopped = False
    if keep:
        try:
            clf.label_scores([texts[i] for i in keep], on_rows=stoppable(collect, stop),
                             positions=keep)
        except Stopped:
            stopped = True
        except KeyboardInterrupt:
            # Ctrl-C or the kernel's interrupt: it must still stop the caller,
            # but in a few lines that count what is done, not a traceback
            # through torch (the finished batches are already cached).
            raise Interrupted(int((~pending[keep_array]).sum()), len(keep)) from None
    done = ~np.isnan(scores).any(axis=1)
    label_mass = None
    if policy.has_label_mass:
        label_mass = clf.label_mass(scores)
        if done.any():
            clf.low_probability_rows(scores[done])  # raises or warns as the policy says
    probas = np.full_like(scores, np.nan)
    probas[done] = clf.probas_from_scores(scores[done])
    explanation = None
    if explain and not stopped:
        report(f"explaining the first {min(len(texts), EXPLAIN_ROWS)} row(s)\u2026")
        explanation = clf.explain(texts[:EXPLAIN_ROWS])
    return ClassificationResult(
        ["" if is_missing(t) else t for t in texts],
        clf.classes_, probas, label_mass, raw=policy.raw, threshold=policy.low_threshold,
        previews=[preview(clf, texts[i]) for i in keep[:previews]] if not stopped else [],
        index=index, hide_low=policy.hide_low,
        multi_label_threshold=policy.multi_label_threshold,
        stopped=stopped, pending=pending, prompt_mode=clf.prompt_mode().reason,
        estimator=clf, explanation=explanation,
    )


def explain(texts, labels=None, *, estimator=None, method="occlusion", n_samples=10,
            max_features=40, **opts):
    """Why each text gets its label: the estimator's ``explain`` for the
    notebook's ways in, with the same entry check and status line as
    :func:`classify`.

    Parameters
    ----------
    texts : list-like of str
        Missing ones are kept as rows that say they are missing.
    labels, estimator, **opts
        As for :func:`classify`.
    method, n_samples, max_features
        As for the estimators' ``explain``.

    Returns
    -------
    nbllm.estimators.explanation.Explanation
    """
    if texts is not None and not hasattr(texts, "__len__"):
        texts = list(texts)
    try:
        check_call(texts, labels, estimator, skip_missing=True, **opts)
        from ..estimators.explain import check_method

        check_method(method, n_samples, max_features)
        with words_for_warnings(options.PYTHON), \
                showing_status(estimator if estimator is not None else opts.get("model")):
            clf = estimator if estimator is not None else _fit_estimator(
                labels, **{**_DEFAULTS, **opts})
            return clf.explain(list(texts), method=method, n_samples=n_samples,
                               max_features=max_features)
    except UserError as exc:
        raise options.in_words(exc, options.PYTHON) from None


def preview(clf, text, max_new_tokens=24):
    """A :class:`GenerationPreview` for one text with a fitted estimator."""
    with showing_status(clf):
        report(f"preview: scoring and generating up to {max_new_tokens} tokens\u2026")
        return _preview(clf, text, max_new_tokens)


def _preview(clf, text, max_new_tokens):
    prompt = clf.get_prompt(text)
    n_tokens = len(clf.prompt_token_ids([str(text)])[0])
    scores = clf.label_scores([text])
    return GenerationPreview(
        text, prompt, n_tokens, clf.generate(text, max_new_tokens=max_new_tokens),
        clf.classes_, clf.probas_alone(scores[0]),
        clf.label_mass(scores)[0] if clf.result_policy().has_label_mass else None,
    )
