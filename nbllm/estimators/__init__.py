"""The scikit-learn layer: classifiers over the engine, and their policies.

* :mod:`.zero_shot`, :mod:`.few_shot`, :mod:`.multi_label`: the classifiers;
* :mod:`.base`: what they share (checks, model loading, the low-probability
  policy);
* :mod:`.example_selection`: which few-shot examples go into a prompt;
* :mod:`.calibration`: correcting a prompt's bias towards some labels.

Nothing here imports IPython, ipywidgets or pandas.
"""

from .few_shot import FewShotClassifier
from .multi_label import MultiLabelZeroShotClassifier
from .zero_shot import ZeroShotClassifier

__all__ = ["FewShotClassifier", "MultiLabelZeroShotClassifier", "ZeroShotClassifier"]
