"""The single-label classifiers' shared base: zero- and few-shot.

The labels compete in one distribution; this is where the low-probability
policy, the raw or normalised probabilities and the calibration live.
"""

import numpy as np
from scipy.special import softmax
from sklearn.base import ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .. import options
from ..exceptions import LowProbabilityError, OptionError, OptionWarning
from ..options import literal
from ..warnings_to_user import warn
from .base import _LLMBase, check_fitted
from .calibration import (
    CONTENT_FREE_TEXTS,
    calibrate,
    content_free_reference,
    fit_scale_and_bias,
)
from .inputs import check_same_length
from .predictions import ResultPolicy


class _SingleLabelBase(ClassifierMixin, _LLMBase):
    """Zero- and few-shot: the labels compete in one distribution, with
    skorch's low-probability policy and optional calibration.

    Holds the parameters the two share; :class:`FewShotClassifier` adds its
    own after them.  (scikit-learn reads the parameter names from the
    signature, so it stays literal.)
    """

    _auto_raw = True

    def __init__(
        self,
        model_name=None,
        *,
        model=None,
        tokenizer=None,
        prompt=None,
        probas_sum_to_1=True,
        device="auto",
        dtype="auto",
        error_low_prob="ignore",
        threshold_low_prob=0.0,
        use_caching=True,
        use_chat_template="auto",
        batch_size="auto",
        progress="auto",
        cache_dir=None,
        calibration=None,
        label_map=None,
        truncation="right",
        trust_remote_code=False,
    ):
        self.model_name = model_name
        self.model = model
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.probas_sum_to_1 = probas_sum_to_1
        self.device = device
        self.dtype = dtype
        self.error_low_prob = error_low_prob
        self.threshold_low_prob = threshold_low_prob
        self.use_caching = use_caching
        self.use_chat_template = use_chat_template
        self.batch_size = batch_size
        self.progress = progress
        self.cache_dir = cache_dir
        self.calibration = calibration
        self.label_map = label_map
        self.truncation = truncation
        self.trust_remote_code = trust_remote_code

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Nothing is learned from X: on numbers (scikit-learn's test data)
        # the model is near chance.
        tags.classifier_tags.poor_score = True
        return tags

    def _check_params(self):
        super()._check_params()
        options.check_calibration_with_probas(self.calibration, self.probas_sum_to_1)

    def _check_classes(self, classes):
        # Known before the model runs: normalised over one label, every row is 1.
        if len(classes) == 1 and self.probas_sum_to_1:
            # The advice names an option: each way in words it (--raw, raw=True).
            warn(OptionWarning(
                f"Only one label ({literal(repr(self._word(classes[0])))}): normalised "
                "over the labels, its probability is always 1; use {probas_sum_to_1=} "
                "for the model's own probability, or add labels",
                named={"probas_sum_to_1": False}))

    def _set_classes(self, labels):
        super()._set_classes(labels)
        # Depends on the classes, prompt and examples: see _fit_reference.
        self._reference = None

    def _fit_reference(self):
        """Measure the prompt's bias for ``calibration='content_free'``; the
        last step of ``fit``, once the examples are chosen, so that predicting
        leaves the fitted state as it is."""
        if self.calibration == "content_free":
            self._reference = content_free_reference(self.calibration_logprobs())

    # --------------------------------------------------------- prediction
    def result_policy(self):
        """How this classifier's results read: raw or normalised, which rows
        are low and whether they predict None (see
        :class:`~nbllm.estimators.predictions.ResultPolicy`).

        Read from the parameters as they are now, as ``predict`` reads them.
        """
        return ResultPolicy(raw=not self.probas_sum_to_1,
                            low_threshold=self.threshold_low_prob,
                            hide_low=self.error_low_prob == "return_none")

    def label_scores(self, X, on_rows=None, *, positions=None):
        """The scores the probabilities come from, streamed: here
        :meth:`label_logprobs` (every classifier has ``label_scores``;
        multi-label's are log-odds)."""
        return self.label_logprobs(X, on_rows, positions=positions)

    def probas_from_scores(self, scores):
        """The probabilities of :meth:`label_scores`' rows: here
        :meth:`probas_from_logprobs`."""
        return self.probas_from_logprobs(scores)

    def probas_alone(self, scores):
        """The probabilities of one text's row of scores, scored on its own.

        As :meth:`probas_from_scores`, except that ``calibration='batch'``
        gives the plain normalised probabilities: a batch of one carries no
        batch statistics.
        """
        scores = np.asarray(scores, dtype=np.float64)
        if self.calibration == "batch" and self.probas_sum_to_1:
            return softmax(scores, axis=-1)
        return self.probas_from_logprobs(scores[None])[0]

    def label_mass(self, logprobs):
        """The model's total probability of all labels, per row."""
        return np.exp(logprobs).sum(axis=1)

    def low_probability_rows(self, logprobs):
        """Rows whose label mass is under ``threshold_low_prob``, after raising
        or warning as ``error_low_prob`` says.

        Raises
        ------
        LowProbabilityError
            If a row's label mass is zero, or below the threshold with
            ``error_low_prob='raise'``.
        """
        totals = self.label_mass(logprobs)
        if np.any(totals == 0.0):
            raise LowProbabilityError("The sum of all probabilities is zero.")
        low = totals < self.threshold_low_prob
        if low.any() and self.error_low_prob == "raise":
            raise LowProbabilityError(
                f"The sum of all probabilities is {totals[low][0]:.3f}, "
                f"which is below the minimum threshold of {self.threshold_low_prob:.3f}"
            )
        if low.any() and self.error_low_prob == "warn":
            warn(
                f"Found {int(low.sum())} sample(s) to have a total probability "
                f"below the threshold of {self.threshold_low_prob:.3f}."
            )
        return low

    def predict_proba(self, X):
        """Probability of each class (columns follow ``classes_``).

        Parameters
        ----------
        X : list-like of str

        Returns
        -------
        numpy.ndarray of shape (n_samples, n_classes)
            Normalised to sum to 1 per row unless ``probas_sum_to_1=False``;
            then each entry is the model's exact probability of that label.

        Raises
        ------
        LowProbabilityError
            If a row's total label probability is zero, or below
            ``threshold_low_prob`` with ``error_low_prob='raise'``.
        """
        logprobs = self.label_logprobs(X)
        self.low_probability_rows(logprobs)
        return self.probas_from_logprobs(logprobs)

    def probas_from_logprobs(self, logprobs):
        """Turn label log-probabilities into this estimator's probabilities:
        exact (``probas_sum_to_1=False``) or normalised and calibrated."""
        if not self.probas_sum_to_1:
            return np.exp(logprobs)
        return calibrate(logprobs, self.calibration, self.calibration_reference_)

    def predictions_from_logprobs(self, logprobs, low=None):
        """The predicted class per row from label log-probabilities.

        ``low`` marks low-probability rows (see :meth:`low_probability_rows`);
        with ``error_low_prob='return_none'`` they predict None.
        """
        return self.result_policy().predictions(
            self.classes_, self.probas_from_logprobs(logprobs), low)

    def _fit_calibration(self, X, y):
        """calibration='fit': learn scale and bias from labelled texts X, y."""
        if X is None or isinstance(X, (str, bytes)) or len(X) == 0:
            raise OptionError(
                "calibration='fit' learns from labelled texts: pass them to "
                "fit(X, y) (X the texts, y their labels); got no texts",
                option="calibration")
        check_same_length(X, y)
        logprobs = self.label_logprobs(X)
        index = {str(c): i for i, c in enumerate(self.classes_)}
        start = -content_free_reference(self.calibration_logprobs())
        self.calibration_fit_ = fit_scale_and_bias(
            logprobs, np.array([index[str(label)] for label in y]), start=start)

    @property
    def calibration_reference_(self):
        """Log of the mean normalised label distribution for content-free
        texts: what ``calibration='content_free'`` divides by (None otherwise)."""
        check_fitted(self)
        if self.calibration == "fit":
            check_is_fitted(self, "calibration_fit_")
            return self.calibration_fit_
        if self.calibration != "content_free":
            return None
        if self._reference is None:
            # calibration set after fit: measured now, and not kept (refit).
            return content_free_reference(self.calibration_logprobs())
        return self._reference

    def calibration_logprobs(self):
        """Label log-probabilities of the content-free texts ("N/A", "", "[MASK]").

        Their normalised mean is what ``calibration='content_free'`` divides by;
        it shows how biased the prompt is before seeing any text.
        """
        check_fitted(self)
        return self.label_logprobs(list(CONTENT_FREE_TEXTS))

    def predict(self, X):
        """The most probable class per sample (None for low-probability rows
        when ``error_low_prob='return_none'``)."""
        logprobs = self.label_logprobs(X)
        return self.predictions_from_logprobs(logprobs, self.low_probability_rows(logprobs))
