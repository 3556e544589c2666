"""The panel (:class:`~nbllm.notebook.panel.panel.Panel`) and its parts."""
