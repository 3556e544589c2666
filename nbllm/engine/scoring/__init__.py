"""Scoring: texts and labels in, exact log-probabilities out, for a loaded model.

It may import :mod:`nbllm.engine.loading`, never the reverse.
"""
