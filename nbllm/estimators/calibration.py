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
``'fit'``
    Learn the correction from labelled texts (zero-shot ``fit(X, y)`` with
    texts): a scale (temperature) and a per-label bias on the normalised
    log-probabilities, fitted by maximum likelihood and pulled towards the
    content-free correction, so that a handful of labels cannot swing it far.
    This is what :class:`nbllm.Labeler` improves with; the comparison that
    chose it is in ``benchmarks/RESULTS.md``.
"""


import numpy as np
from scipy.special import log_softmax, softmax

from ..exceptions import OptionError
from ..warnings_to_user import warn

CONTENT_FREE_TEXTS = ("N/A", "", "[MASK]")
# How strongly calibration='fit' keeps its scale and bias near the content-free
# start (an L2 penalty; measured in benchmarks/bench_labeling.py: 1 keeps the
# fitted probabilities honest enough to estimate accuracy from them).
FIT_PENALTY = 1.0
# Below this many samples, batch calibration's mean is mostly noise.
MIN_BATCH = 20


def content_free_reference(logprobs):
    """Log of the mean normalised label distribution over content-free texts.

    Parameters
    ----------
    logprobs : ndarray of shape (n_content_free, n_classes)
        Label log-probabilities for :data:`CONTENT_FREE_TEXTS`.
    """
    return np.log(softmax(logprobs, axis=-1).mean(axis=0))


def fit_scale_and_bias(logprobs, y, start=None, penalty=FIT_PENALTY):
    """The scale and per-label bias that make labelled rows most likely.

    Parameters
    ----------
    logprobs : ndarray of shape (n_samples, n_classes)
        Label log-probabilities of the labelled texts.
    y : ndarray of int, shape (n_samples,)
        The index of each text's true class.
    start : ndarray of shape (n_classes,) or None
        The bias to start from and to be pulled towards (the content-free
        correction, ``-reference``); zeros when None.
    penalty : float
        Strength of the L2 pull of log(scale) and the bias towards the start.

    Returns
    -------
    ndarray of shape (n_classes + 1,)
        ``[scale, bias_0, ..., bias_{k-1}]``, for :func:`calibrate`'s 'fit'.
    """
    from scipy.optimize import minimize

    logp = log_softmax(np.asarray(logprobs, dtype=np.float64), axis=-1)
    k = logp.shape[1]
    start = np.zeros(k) if start is None else np.asarray(start, dtype=np.float64)
    rows = np.arange(len(y))

    def loss(w):
        # w = [log scale, bias offsets from the start]; the first class's offset
        # is fixed at 0 (a common shift changes nothing after the softmax).
        bias = start + np.r_[0.0, w[1:]]
        z = log_softmax(np.exp(w[0]) * logp + bias, axis=-1)
        return -z[rows, y].sum() + penalty * (w ** 2).sum()

    w = minimize(loss, np.zeros(k), method="L-BFGS-B").x
    return np.r_[np.exp(w[0]), start + np.r_[0.0, w[1:]]]


def calibrate(logprobs, mode, reference=None):
    """Normalised, calibrated label probabilities.

    Parameters
    ----------
    logprobs : ndarray of shape (n_samples, n_classes)
        log P(label | prompt) per sample and class.
    mode : {None, 'content_free', 'batch', 'fit'}
    reference : ndarray or None
        :func:`content_free_reference` output for 'content_free';
        :func:`fit_scale_and_bias` output for 'fit'.

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
        Rows sum to 1.
    """
    # Normalised over the labels only, in log space: exact, and stable when
    # the probabilities are tiny.
    logp = log_softmax(logprobs, axis=-1)
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
    elif mode == "fit":
        logp = reference[0] * logp + reference[1:]
    elif mode is not None:
        raise OptionError(
            f"calibration must be None, 'content_free', 'batch' or 'fit'; got {mode!r}",
            option="calibration")
    return softmax(logp, axis=-1)
