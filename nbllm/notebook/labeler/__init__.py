"""The Labeler (:class:`~nbllm.notebook.labeler.labeler.Labeler`) and its parts.

``labeler.py`` holds the answers and the calibration, ``widget.py`` the
widget, ``plot.py`` the static SVG plot of accuracy against answers.
"""

from .labeler import Labeler

__all__ = ["Labeler"]
