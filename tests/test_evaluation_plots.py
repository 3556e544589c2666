"""nbllm.evaluation's confusion plot, drawn by scikit-learn's ConfusionMatrixDisplay."""

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from nbllm.evaluation import plot_confusion  # noqa: E402
from nbllm.exceptions import LabelsError  # noqa: E402


def test_plot_confusion_counts_the_argmax_predictions():
    import matplotlib.pyplot as plt

    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
    fig, ax = plt.subplots()
    try:
        assert plot_confusion(["neg", "pos", "pos", "neg", "pos"], proba, ["neg", "pos"],
                              ax=ax) is ax
        # Rows are the true labels, columns the predicted ones.
        counts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
                  for t in ax.texts}
        assert counts == {(0, 0): "1", (0, 1): "1", (1, 0): "1", (1, 1): "2"}
        assert [t.get_text() for t in ax.get_xticklabels()] == ["neg", "pos"]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["neg", "pos"]
        assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
            "predicted", "true", "Confusion matrix")
        assert len(fig.axes) == 1  # no colour bar
    finally:
        plt.close(fig)


def test_plot_confusion_names_unknown_labels():
    with pytest.raises(LabelsError, match=r"^y_true holds label\(s\) not among the classes: "
                                          r"'maybe'$"):
        plot_confusion(["maybe"], np.array([[0.5, 0.5]]), ["neg", "pos"], ax=object())
