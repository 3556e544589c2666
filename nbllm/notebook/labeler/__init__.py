"""The Labeler (:class:`~nbllm.notebook.labeler.labeler.Labeler`) and its parts.

``labeler.py`` holds the answers and the classifier, ``choice.py`` the
cross-validated choice of prompt, examples and calibration and the random
checks' estimate, ``widget.py`` the widget, ``plot.py`` the static SVG plot of
the accuracy on new rows against answers.
"""

from .labeler import Labeler

__all__ = ["Labeler"]
