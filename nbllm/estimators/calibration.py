"""Calibration of label probabilities against the prompt's own bias.

A small model often prefers one label whatever the text says: the ranking of
texts is right, the threshold is not.  Two corrections, both applied to the
normalised label log-probabilities:

``'content_free'``
    Divide by the label probabilities the prompt gives for texts that carry
    no content ("N/A", "" and "[MASK]"; Zhao et al., 2021, "Calibrate before
    use").  Each prediction stays independent of the others.
``'batch'``
    Subtract the mean label log-probability over the samples being predicted
    in one call.  Needs no extra scoring, but a prediction then depends on the
    other samples in the call, and a call with one sample gives every class
    the same probability.
"""


import numpy as np
from ..warnings_to_user import warn

CONTENT_FREE_TEXTS = ("N/A", "", "[MASK]")
# Below this many samples, batch calibration's mean is mostly noise.
MIN_BATCH = 20


def normalise_logprobs(logprobs):
    """Row-wise log-softmax: log-probabilities over the labels only."""
    top = logprobs.max(axis=-1, keepdims=True)
    return logprobs - top - np.log(np.exp(logprobs - top).sum(axis=-1, keepdims=True))


def softmax_rows(logprobs):
    """Normalise log-probabilities row-wise.

    Done in log space: exact, and stable when the probabilities are tiny.
    """
    shifted = np.exp(logprobs - logprobs.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def content_free_reference(logprobs):
    """Log of the mean normalised label distribution over content-free texts.

    Parameters
    ----------
    logprobs : ndarray of shape (n_content_free, n_classes)
        Label log-probabilities for :data:`CONTENT_FREE_TEXTS`.
    """
    return np.log(softmax_rows(logprobs).mean(axis=0))


def calibrate(logprobs, mode, reference=None):
    """Normalised, calibrated label probabilities.

    Parameters
    ----------
    logprobs : ndarray of shape (n_samples, n_classes)
        log P(label | prompt) per sample and class.
    mode : {None, 'content_free', 'batch'}
    reference : ndarray of shape (n_classes,) or None
        :func:`content_free_reference` output; needed for 'content_free'.

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
        Rows sum to 1.
    """
    logp = normalise_logprobs(logprobs)
    if mode == "content_free":
        logp = logp - reference
    elif mode == "batch":
        if len(logp) < MIN_BATCH:
            warn(
                f"calibration='batch' corrects by the mean over the samples of one "
                f"call; this call has only {len(logp)}, so the correction is noisy "
                "(with one sample every class gets the same probability)"
            )
        logp = logp - logp.mean(axis=0)
    elif mode is not None:
        raise ValueError(
            f"calibration must be None, 'content_free' or 'batch'; got {mode!r}"
        )
    return softmax_rows(logp)
