"""Multi-label zero-shot classification: one yes/no question per label.

Each label is judged on its own: the prompt asks whether the label applies,
and the label's probability is P(yes) / (P(yes) + P(no)) with both answers'
capitalisations summed.  Labels do not compete, so a text can have several
or none.
"""

import warnings

import numpy as np
from sklearn.base import ClassifierMixin

from ..exceptions import LabelsError
from ..engine.scoring.prompts import template_placeholders
from ..engine.scoring.text_scorer import ProgressBar

from .. import options
from . import docs
from .base import _LLMBase, check_fitted
from .inputs import (as_sequence, check_fit_params, check_same_length, check_targets, check_texts,
                     missing_y_message)
from .predictions import ResultPolicy

DEFAULT_PROMPT_MULTI_LABEL = (
    "Does the category \"{label}\" apply to the following text? "
    "Answer yes or no.\n\nText: {text}"
)
YES = ("Yes", "yes")
NO = ("No", "no")
# Texts scored per step: every label is asked about a step's texts before the
# next step, so results (and progress) arrive row by row and an interrupted
# run keeps whole rows in the cache.
_STEP = 256


def _label_sets(y, estimator=None):
    """y as a list of label lists; a flat list of labels is one label each."""
    if y is None:
        raise LabelsError(missing_y_message(estimator))
    rows = list(as_sequence(y))
    if not rows:
        raise LabelsError("y must contain at least one label; got an empty list")
    # A row with a missing label (None, NaN), flat or in its list, by position.
    options.check_missing_labels([
        None if (np.ndim(r) == 0 and options.is_missing_label(r)) or (
            np.ndim(r) > 0 and not isinstance(r, str)
            and any(options.is_missing_label(label) for label in r)) else r
        for r in rows])
    if all(isinstance(r, str) or np.ndim(r) == 0 for r in rows):
        try:
            check_targets(np.asarray(rows))  # numbers must be whole, not inf
        except ValueError as exc:
            raise LabelsError(str(exc)) from None
        return [[r] for r in rows]
    return [[r] if isinstance(r, str) or np.ndim(r) == 0 else list(r) for r in rows]


def _indicator_width(y):
    """The number of columns when y is a 0/1 integer matrix, else 0."""
    if y is None or isinstance(y, str):
        return 0
    try:
        array = np.asarray(y)
    except ValueError:  # ragged lists
        return 0
    if (array.ndim == 2 and array.shape[1] > 0 and array.dtype.kind in "biu"
            and np.isin(array, (0, 1)).all()):
        return array.shape[1]
    return 0


def _deprecated(name, why):
    """Warn, at the caller's line, that a method of the classifier is deprecated."""
    warnings.warn(f"MultiLabelZeroShotClassifier.{name} is deprecated and will be "
                  f"removed: {why}", FutureWarning, stacklevel=3)


class MultiLabelZeroShotClassifier(ClassifierMixin, _LLMBase):
    __doc__ = (
        """Multi-label zero-shot classification: an independent yes/no question
    per label.

    ``predict`` returns the indicator matrix that scikit-learn's multi-label
    metrics take (columns follow ``classes_``); ``predict_labels`` returns
    label lists.
    """
        + docs.parameters(
            options.MULTI_LABEL_CLASSIFIER,
            "``{text}`` and ``{label}`` (one label; ``{labels}``, all of them, is "
            "optional)", "``DEFAULT_PROMPT_MULTI_LABEL``")
        + """
    Attributes
    ----------
    classes_ : ndarray of str
        All labels seen in ``y``, sorted.
    label_ids_ : list of list of int
        Token ids of the answers (yes, Yes, no, No).
    """
    )

    _default_prompt = DEFAULT_PROMPT_MULTI_LABEL

    def __init__(
        self,
        model_name=None,
        *,
        model=None,
        tokenizer=None,
        prompt=None,
        threshold=0.5,
        device="auto",
        dtype="auto",
        use_caching=True,
        use_chat_template="auto",
        batch_size="auto",
        progress="auto",
        cache_dir=None,
        label_map=None,
        truncation="right",
        trust_remote_code=False,
    ):
        self.model_name = model_name
        self.model = model
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.threshold = threshold
        self.device = device
        self.dtype = dtype
        self.use_caching = use_caching
        self.use_chat_template = use_chat_template
        self.batch_size = batch_size
        self.progress = progress
        self.cache_dir = cache_dir
        self.label_map = label_map
        self.truncation = truncation
        self.trust_remote_code = trust_remote_code

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.classifier_tags.poor_score = True  # nothing is learned from X
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        return tags

    @property
    def _placeholders(self):
        found = template_placeholders(self.prompt or self._default_prompt)
        return ("label", "text") + (("labels",) if "labels" in found else ())

    def fit(self, X, y, **fit_params):
        """Load the model and take the classes from ``y`` (no training happens).

        Parameters
        ----------
        X : list-like of str or None
            The texts of ``y``; only checked (one per label set).
        y : list of label lists, list of str, or indicator matrix
            The labels of each sample (``[["sports", "politics"], []]``); a
            flat list of labels gives one label per sample; a 0/1 integer
            matrix (scikit-learn's multi-label format) has the classes
            0, 1, ... as its columns, best named with ``label_map``.

        Returns
        -------
        self
        """
        self._check_params()  # threshold too, by the option table's rule
        check_fit_params(fit_params)
        if X is not None:
            texts = check_texts(X)
            if y is not None:
                check_same_length(texts, y)
        width = _indicator_width(y)
        if width:
            # scikit-learn's indicator matrix: the classes are its columns
            # (name them with label_map).
            labels = list(range(width))
        else:
            sets = _label_sets(y, self)
            # Labels keep their type, so that label_map keys such as 0 still match.
            labels = sorted({label for row in sets for label in row}, key=str)
        if not labels:
            raise LabelsError("y holds no labels; give at least one label")
        self._fit_common(labels)
        return self

    def _set_classes(self, labels):
        super()._set_classes(labels)  # checks the labels and label_map
        self.label_ids_ = [self._label_ids(a) for a in YES + NO]

    def _renderer_for(self, label):
        fields = {"label": self._word(label),
                  "labels": [self._word(c) for c in self.classes_]}
        return self._prompt_renderer(fields)

    def _renderer(self):
        # get_prompt and generate show the question about the first label.
        return self._renderer_for(self.classes_[0])

    def result_policy(self):
        """How this classifier's results read: each label's own probability,
        the labels at or above ``threshold`` predicted, no label mass and so
        no low rows (see :class:`~nbllm.estimators.predictions.ResultPolicy`)."""
        return ResultPolicy(low_threshold=None, multi_label_threshold=self.threshold)

    def label_log_odds(self, X, on_rows=None, *, positions=None):
        """log P(yes) - log P(no) per sample and label (the log-odds).

        The method the notebook layer builds on (as :meth:`label_scores`),
        streamed as the single-label classifiers' ``label_logprobs`` is (same
        parameters): ``on_rows(rows, log_odds)`` is called as each step of
        texts finishes.  Returns a float64 array (n_samples, n_classes).
        """
        check_fitted(self)
        texts = check_texts(X)
        out = np.empty((len(texts), len(self.classes_)))
        renderers = [self._renderer_for(c) for c in self.classes_]
        bar = ProgressBar(self.progress, len(texts))
        # One bar for the whole run, counting texts; with 'auto' tqdm shows it
        # once the run has taken PROGRESS_DELAY seconds.
        bar.start()
        try:
            for start in range(0, len(texts), _STEP):
                step = texts[start:start + _STEP]
                for j, renderer in enumerate(renderers):
                    answers = self._logprobs_for(
                        step, renderer, self.label_ids_, progress=False,
                        positions=None if positions is None
                        else positions[start:start + _STEP])
                    out[start:start + len(step), j] = (
                        np.logaddexp(answers[:, 0], answers[:, 1])
                        - np.logaddexp(answers[:, 2], answers[:, 3]))
                bar.update(len(step))
                if on_rows is not None:
                    rows = np.arange(start, start + len(step))
                    on_rows(rows, out[rows])
        finally:
            bar.close()
        return out

    def probas_from_log_odds(self, log_odds):
        """Probability that each label applies, from the log-odds."""
        return 1.0 / (1.0 + np.exp(-np.asarray(log_odds, dtype=np.float64)))

    def label_scores(self, X, on_rows=None, *, positions=None):
        """The scores the probabilities come from, streamed: here
        :meth:`label_log_odds` (every classifier has ``label_scores``;
        single-label ones give log-probabilities)."""
        return self.label_log_odds(X, on_rows, positions=positions)

    def probas_from_scores(self, scores):
        """The probabilities of :meth:`label_scores`' rows: here
        :meth:`probas_from_log_odds`."""
        return self.probas_from_log_odds(scores)

    def probas_alone(self, scores):
        """The probabilities of one text's row of scores (each label alone)."""
        return self.probas_from_log_odds(scores)

    # Former names, from when the notebook layer asked every classifier the
    # single-label questions: the log-odds are no log-probabilities, and a
    # multi-label row has no label mass.
    def label_logprobs(self, X, on_rows=None, *, positions=None):
        """Deprecated: returns log-odds; use :meth:`label_log_odds`."""
        _deprecated("label_logprobs", "it returns log-odds, not log-probabilities; "
                    "use label_log_odds")
        return self.label_log_odds(X, on_rows, positions=positions)

    def probas_from_logprobs(self, logprobs):
        """Deprecated: takes log-odds; use :meth:`probas_from_log_odds`."""
        _deprecated("probas_from_logprobs", "it takes log-odds, not "
                    "log-probabilities; use probas_from_log_odds")
        return self.probas_from_log_odds(logprobs)

    def label_mass(self, logprobs):
        """Deprecated: a multi-label row has no label mass (NaN per row)."""
        _deprecated("label_mass", "each label is its own yes/no question, so a row "
                    "has no label mass (result_policy().has_label_mass is False)")
        return np.full(len(logprobs), np.nan)

    def low_probability_rows(self, logprobs):
        """Deprecated: without a label mass no row is low (all False)."""
        _deprecated("low_probability_rows", "without a label mass no row is low "
                    "(result_policy().has_label_mass is False)")
        return np.zeros(len(logprobs), dtype=bool)

    def get_prompt(self, text, label=None):
        """The exact prompt the model sees for ``text`` and one label
        (the first class when ``label`` is None)."""
        check_fitted(self)
        label = self.classes_[0] if label is None else label
        return self._renderer_for(label).render(text)

    def predict_proba(self, X):
        """Probability that each label applies, shape (n_samples, n_classes);
        rows need not sum to 1."""
        return self.probas_from_log_odds(self.label_log_odds(X))

    def predict(self, X):
        """Indicator matrix (n_samples, n_classes) of int: 1 where the label applies."""
        return (self.predict_proba(X) >= self.threshold).astype(int)

    def predict_labels(self, X):
        """The labels that apply, as one list per sample."""
        return self.result_policy().predictions([str(c) for c in self.classes_],
                                                self.predict_proba(X))

    def score(self, X, y, sample_weight=None):
        """Subset accuracy; ``y`` may be label lists or an indicator matrix."""
        from sklearn.metrics import accuracy_score
        from sklearn.preprocessing import MultiLabelBinarizer

        if _indicator_width(y) != len(self.classes_):
            y = MultiLabelBinarizer(classes=list(self.classes_)).fit_transform(
                _label_sets(y))
        return accuracy_score(y, self.predict(X), sample_weight=sample_weight)
