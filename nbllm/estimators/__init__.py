"""The scikit-learn layer: classifiers over the engine, and their policies.

* :mod:`.zero_shot`, :mod:`.few_shot`, :mod:`.multi_label`: the classifiers;
* :mod:`.base`: what they all share (parameter checks, model loading,
  scoring), on scikit-learn's ``BaseEstimator``;
* :mod:`.single_label`: zero- and few-shot's shared base (the
  low-probability policy, calibration), a ``ClassifierMixin``;
* :mod:`.prompt_mode`: how a prompt goes to the model, decided once in fit;
* :mod:`.inputs`: the checks of X (texts) and y (classes);
* :mod:`.example_selection`: which few-shot examples go into a prompt;
* :mod:`.calibration`: correcting a prompt's bias towards some labels;
* :mod:`.predictions`: from probabilities to predicted labels (the one rule),
  and the ``ResultPolicy`` every classifier states in ``result_policy()``.

Nothing here imports IPython or ipywidgets.  The classifiers load on first
use, so that importing the notebook layer does not import torch.
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
