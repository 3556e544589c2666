"""From probabilities to predicted labels: the one place the rules live.

Used by the estimators' ``predict`` and by the notebook layer's result
tables, so both always agree.  Plain numpy, no model.
"""

import numpy as np


def single_label_predictions(classes, probas, low=None, return_none=False):
    """The most probable class per row.

    Rows with NaN probabilities (skipped inputs) give None; so do rows marked
    ``low`` when ``return_none`` (``error_low_prob='return_none'``).
    """
    classes = np.asarray(classes, dtype=object)
    probas = np.asarray(probas, dtype=np.float64)
    hidden = np.zeros(len(probas), dtype=bool) if low is None else np.asarray(low, bool)
    out = np.empty(len(probas), dtype=object)
    for i, row in enumerate(probas):
        skipped = np.isnan(row).any() or (return_none and hidden[i])
        out[i] = None if skipped else classes[int(np.argmax(row))]
    return out


def multi_label_predictions(classes, probas, threshold):
    """The labels at or above ``threshold``, one list per row (None if skipped)."""
    return [None if np.isnan(row).any() else
            [c for c, p in zip(classes, row) if p >= threshold]
            for row in np.asarray(probas, dtype=np.float64)]
