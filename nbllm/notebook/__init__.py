"""The notebook layer: magics, the panel, the pandas and Dask accessors, display.

Each way in parses its options, calls :func:`nbllm.notebook.classify.classify`
(one function for all of them) and returns a result object that renders
itself (:mod:`.display`, pure: results in, escaped HTML out).  Session
defaults live in :mod:`.session`.
"""
