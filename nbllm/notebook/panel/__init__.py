"""The panel (:class:`~nbllm.notebook.panel.panel.Panel`) and its parts.

``panel.py`` wires the buttons, ``widgets.py`` builds the widgets,
``labels.py`` reads the labels box, ``code.py`` writes Copy as code.
"""

from .panel import Panel

__all__ = ["Panel"]
