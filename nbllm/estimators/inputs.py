"""What the estimators accept as texts and targets, checked the same way
everywhere: X is a list-like of texts (one per row), y names classes."""

import math
import re

import numpy as np
from sklearn.utils.multiclass import check_classification_targets

from ..engine.scoring.prompts import is_missing
from ..exceptions import OptionError, TextsError
from ..options import listed_positions
from ..warnings_to_user import warn


def check_targets(y):
    """Reject targets that are not classes, with scikit-learn's own check.

    Numbers that are not whole (a regression target) and infinities or NaN
    raise scikit-learn's ``ValueError``; strings and whole numbers pass.

    Parameters
    ----------
    y : numpy.ndarray

    Raises
    ------
    ValueError
        ``"Unknown label type: continuous..."`` or ``"Input y contains
        infinity..."``, as any scikit-learn classifier says.
    """
    # Object arrays (strings, mixed label values) are names, which
    # type_of_target calls 'unknown'; only numbers can be continuous.
    if y.dtype.kind in "fc":
        check_classification_targets(y)


def as_sequence(values):
    """``values`` as something to iterate row by row: array-likes (a
    DataFrame, whose iteration gives its column names, or an object with only
    ``__array__``) become NumPy arrays; lists and arrays stay as they are."""
    if hasattr(values, "__array__") and not isinstance(values, (np.ndarray, list, tuple)):
        return np.asarray(values)
    return values


def check_same_length(X, y):
    """Raise, with skorch's wording, unless X and y hold as many samples."""
    n_x, n_y = len(as_sequence(X)), len(as_sequence(y))
    if n_x != n_y:
        raise TextsError(
            "X and y don't have the same number of samples, found "
            f"{n_x} and {n_y} samples, respectively"
        )


def missing_y_message(estimator=None):
    """The message for ``y=None``: scikit-learn's phrase, then skorch's sentence.

    scikit-learn's ``check_requires_y_none`` looks for its phrase in the
    message and skorch's own ``test_fit_y_none_raises`` searches for its
    sentence, so one message satisfies both.
    """
    name = type(estimator).__name__ if estimator is not None else "This classifier"
    return (f"{name} requires y to be passed, but the target y is None; y cannot be "
            "None, as it is used to infer the existing classes")


def check_fit_params(fit_params):
    """Reject ``sample_weight``: nothing is learned from samples, so weights
    would be ignored in silence; other fit parameters are ignored (skorch's
    signature)."""
    if fit_params.get("sample_weight") is not None:
        raise OptionError(
            "sample_weight is not supported: the classes come from y and the model "
            "is not trained on the samples", option="sample_weight")


def check_texts(X):
    """Return X as a list of str, or raise a TextsError that says what is wrong.

    X holds one text per row: a list-like of texts, or a 2-D array or
    DataFrame whose columns are fields of one text (a row's values are joined
    with a space; one column is the texts as they are).  Sparse matrices,
    missing values and infinities are rejected.
    """
    if isinstance(X, (str, bytes)):
        raise TextsError(
            "X must be a list-like of texts, got a single string; wrap it in a "
            "list: [text]"
        )
    if X is None:
        raise TextsError("X must be a list-like of texts, got None")
    if type(X).__module__.startswith("scipy.sparse"):
        raise TextsError(
            f"X must be a list-like of texts; sparse input ({type(X).__name__}) is "
            "not supported")
    X = as_sequence(X)  # a DataFrame, a Series, anything array-like
    if isinstance(X, np.ndarray) and X.ndim != 1:
        if X.ndim != 2:
            raise TextsError(
                f"X must be a list-like of texts, one per row; got an array of shape "
                f"{X.shape}")
        if X.shape[1] == 0:
            # scikit-learn's words for an array with no columns.
            raise TextsError(
                f"X must hold texts; found an array with 0 feature(s) (shape={X.shape}) "
                "while a minimum of 1 is required.")
        X = X[:, 0] if X.shape[1] == 1 else np.array([_join(row) for row in X],
                                                      dtype=object)
    texts = list(X)
    bad = [i for i, x in enumerate(texts) if is_missing(x)]
    if bad:
        raise TextsError(
            f"X contains {len(bad)} missing value(s) (None or NaN) at position(s) "
            f"{listed_positions(bad)}; drop or fill them first"
        )
    bad = [i for i, x in enumerate(texts) if isinstance(x, float) and math.isinf(x)]
    if bad:
        raise TextsError(
            f"X contains {len(bad)} infinite number(s) (inf) at position(s) "
            f"{listed_positions(bad)}; X holds texts"
        )
    converted = sum(not isinstance(x, str) for x in texts)
    if converted:
        warn(
            f"{converted} value(s) in X are not strings and were converted with str()"
        )
        texts = [
            x.decode("utf-8", errors="replace") if isinstance(x, bytes) else str(x)
            for x in texts
        ]
    return repair_unicode(texts)


def _join(row):
    """One text from a row of several columns; a missing or infinite value
    stands for the whole row, so that it is reported as such."""
    for value in row:
        if is_missing(value) or (isinstance(value, float) and math.isinf(value)):
            return value
    return " ".join(str(value) for value in row)


_SURROGATES = re.compile("[\ud800-\udfff]")


def repair_unicode(texts):
    """Replace lone surrogates (text that is not valid Unicode, e.g. from a
    broken decode) with U+FFFD, which tokenizers reject otherwise."""
    bad = []
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(i)
    if bad:
        warn(
            f"{len(bad)} text(s) contain invalid Unicode (lone surrogates); those "
            "characters were replaced with U+FFFD"
        )
        texts = list(texts)
        for i in bad:
            texts[i] = _SURROGATES.sub("\ufffd", texts[i])
    return texts
