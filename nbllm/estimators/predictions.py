"""From probabilities to predicted labels: the one place the rules live.

Used by the estimators' ``predict`` and by the notebook layer's result
tables, the Labeler and ``compare_prompts``, so all of them always agree.
Plain numpy, no model.

:class:`ResultPolicy` is how a fitted classifier answers the notebook layer's
questions about its results (``clf.result_policy()``): whether the
probabilities are raw, which rows are low and whether they are hidden, and
the multi-label threshold.  The notebook layer reads it instead of probing
the classifier's type or parameters.
"""

from dataclasses import dataclass

import numpy as np


def single_label_predictions(classes, probas, low=None, return_none=False):
    """The most probable class per row.

    Rows with NaN probabilities (skipped inputs) give None; so do rows marked
    ``low`` when ``return_none`` (``error_low_prob='return_none'``).  The
    classes keep their type (an array of ``classes_``' dtype) unless a row
    gives None; then the result is an object array.
    """
    classes = classes if isinstance(classes, np.ndarray) else np.asarray(classes, dtype=object)
    probas = np.asarray(probas, dtype=np.float64).reshape(-1, len(classes))
    none = np.isnan(probas).any(axis=1)
    if return_none and low is not None:
        none |= np.asarray(low, dtype=bool)
    # argmax takes the first of equal probabilities: ties go to the earlier class.
    picked = classes[np.argmax(probas, axis=1)]
    if not none.any():
        return picked
    out = picked.astype(object)
    out[none] = None
    return out


def multi_label_predictions(classes, probas, threshold):
    """The labels at or above ``threshold``, one list per row (None if skipped)."""
    return [None if np.isnan(row).any() else
            [c for c, p in zip(classes, row) if p >= threshold]
            for row in np.asarray(probas, dtype=np.float64)]


@dataclass(frozen=True)
class ResultPolicy:
    """How a fitted classifier's results read; ``clf.result_policy()``.

    Attributes
    ----------
    raw : bool
        The probabilities are each label's exact probability, not normalised
        (``probas_sum_to_1=False``); the label mass then goes with them.
    low_threshold : float or None
        Rows whose label mass is under it are low (``threshold_low_prob``);
        None for a classifier without a label mass (multi-label).
    hide_low : bool
        Low rows predict None (``error_low_prob='return_none'``).
    multi_label_threshold : float or None
        Multi-label: each label has its own probability, and a row's labels
        are those at or above this threshold.  None for single-label.
    """

    raw: bool = False
    low_threshold: float = 0.0
    hide_low: bool = False
    multi_label_threshold: float = None

    @property
    def multi_label(self):
        """Whether each label is judged on its own (several or none per row)."""
        return self.multi_label_threshold is not None

    @property
    def has_label_mass(self):
        """Whether the labels share one distribution, whose total over the
        labels (the label mass) says how much the model would answer with one
        of them.  Multi-label questions have no such total."""
        return not self.multi_label

    def predictions(self, classes, probas, low=None):
        """The predicted label per row: a class or None (single-label), or a
        list of classes or None (multi-label); None for rows with NaN
        probabilities and, with ``hide_low``, for rows marked ``low``."""
        if self.multi_label:
            return multi_label_predictions(classes, probas, self.multi_label_threshold)
        return single_label_predictions(classes, probas, low, return_none=self.hide_low)
