"""The scikit-learn layer: classifiers over the engine, and their policies.

* :mod:`.zero_shot`, :mod:`.few_shot`, :mod:`.multi_label`: the classifiers;
* :mod:`.base`: what they share (checks, model loading, the low-probability
  policy);
* :mod:`.example_selection`: which few-shot examples go into a prompt;
* :mod:`.calibration`: correcting a prompt's bias towards some labels;
* :mod:`.predictions`: from probabilities to predicted labels.

Nothing here imports IPython, ipywidgets or pandas.  The classifiers load on
first use, so the notebook layer's display can use :mod:`.predictions`
without importing scikit-learn.
"""

_CLASSES = {
    "FewShotClassifier": "few_shot",
    "MultiLabelZeroShotClassifier": "multi_label",
    "ZeroShotClassifier": "zero_shot",
}

__all__ = sorted(_CLASSES)


def __getattr__(name):
    if name in _CLASSES:
        import importlib

        return getattr(importlib.import_module(f".{_CLASSES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
