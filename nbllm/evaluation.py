"""Judging a prompt on labelled data: metrics and the plots that show them.

``evaluate`` gives accuracy, macro-F1, log-loss and the expected calibration
error (ECE) of a probability matrix; the ``plot_*`` functions draw the
reliability diagram, the confusion matrix and the probability histogram with
matplotlib.  They take plain arrays, so they work for any classifier.
"""

import numpy as np

from .exceptions import LabelsError, MissingDependencyError

def _index(y_true, classes):
    lookup = {str(c): j for j, c in enumerate(classes)}
    unknown = sorted({str(y) for y in y_true} - set(lookup))
    if unknown:
        raise LabelsError(
            f"y_true holds label(s) not among the classes: {', '.join(map(repr, unknown))}"
        )
    return np.array([lookup[str(y)] for y in y_true])


def reliability_bins(y_true, proba, classes, n_bins=10):
    """Confidence against accuracy of the predicted label, in equal-width bins.

    Returns
    -------
    list of (mean confidence, accuracy, count), one per non-empty bin.
    """
    truth = _index(y_true, classes)
    proba = np.asarray(proba, dtype=np.float64)
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == truth
    # Bin i holds confidences in (i/n, (i+1)/n]; a confidence of 1 goes last.
    which = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    return [
        (float(confidence[which == b].mean()), float(correct[which == b].mean()),
         int((which == b).sum()))
        for b in range(n_bins) if (which == b).any()
    ]


def expected_calibration_error(y_true, proba, classes, n_bins=10):
    """Top-label ECE: the count-weighted gap between confidence and accuracy."""
    bins = reliability_bins(y_true, proba, classes, n_bins)
    total = sum(count for _, _, count in bins)
    return sum(count * abs(conf - acc) for conf, acc, count in bins) / total


def evaluate(y_true, proba, classes):
    """Accuracy, macro-F1, log-loss and ECE of a probability matrix.

    Parameters
    ----------
    y_true : sequence of labels
    proba : ndarray of shape (n_samples, n_classes)
        Rows sum to 1; columns follow ``classes``.
    classes : sequence of labels

    Returns
    -------
    dict
    """
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    truth = _index(y_true, classes)
    proba = np.asarray(proba, dtype=np.float64)
    pred = proba.argmax(axis=1)
    return {
        "accuracy": float(accuracy_score(truth, pred)),
        "macro_f1": float(f1_score(truth, pred, average="macro",
                                   labels=range(len(classes)))),
        "log_loss": float(log_loss(truth, np.clip(proba, 1e-12, 1),
                                   labels=range(len(classes)))),
        "ece": float(expected_calibration_error(y_true, proba, classes)),
    }


def _axes(ax):
    if ax is None:
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise MissingDependencyError(
                "the plots need nbllm's plots extra: pip install 'nbllm[plots]'"
            ) from exc

        _, ax = plt.subplots(figsize=(4, 4))
    return ax


def plot_reliability(y_true, proba, classes, ax=None, label=None, n_bins=10):
    """Reliability diagram: accuracy against confidence; the diagonal is perfect."""
    ax = _axes(ax)
    bins = reliability_bins(y_true, proba, classes, n_bins)
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1)
    ax.plot([b[0] for b in bins], [b[1] for b in bins], marker="o", label=label)
    ax.set(xlabel="confidence of the predicted label", ylabel="accuracy",
           xlim=(0, 1), ylim=(0, 1), title="Reliability")
    return ax


def plot_confusion(y_true, proba, classes, ax=None):
    """Confusion matrix of the argmax predictions (rows: true, columns: predicted),
    drawn by scikit-learn's ``ConfusionMatrixDisplay``."""
    from sklearn.metrics import ConfusionMatrixDisplay

    ax = _axes(ax)
    ConfusionMatrixDisplay.from_predictions(
        _index(y_true, classes), np.asarray(proba).argmax(axis=1),
        labels=list(range(len(classes))), display_labels=[str(c) for c in classes],
        cmap="Blues", colorbar=False, ax=ax)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
    return ax


def plot_probability_histogram(y_true, proba, classes, positive=None, ax=None, bins=20):
    """Histogram of P(positive) split by the true label: separated humps mean
    the model ranks well, wherever the threshold sits."""
    ax = _axes(ax)
    classes = [str(c) for c in classes]
    positive = classes[-1] if positive is None else str(positive)
    column = np.asarray(proba)[:, classes.index(positive)]
    truth = np.array([str(y) for y in y_true])
    for c in classes:
        ax.hist(column[truth == c], bins=bins, range=(0, 1), alpha=0.6, label=f"true {c}")
    ax.set(xlabel=f"P({positive})", ylabel="texts", title="Predicted probability")
    ax.legend()
    return ax
