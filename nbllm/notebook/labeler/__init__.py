"""The Labeler (:class:`~nbllm.notebook.labeler.labeler.Labeler`) and its parts."""
