"""The engine: texts' token ids and labels in, exact log-probabilities out.

It imports torch and transformers only (and lazily), never IPython, pandas or
scikit-learn.  :class:`nbllm.engine.scorer.LabelScorer` is its entry point; it
picks a backend per loaded model:

* :mod:`~nbllm.engine.tree_mask`: decoder-only models, every label of a
  prompt in one forward pass under a tree-shaped attention mask;
* :mod:`~nbllm.engine.seq2seq`: encoder-decoder models (T5, BART), the encoder
  once per text and the labels as decoder rows;
* :mod:`~nbllm.engine.exact`: the plain path, one ordinary forward pass per
  prompt and label (batched as rows), for models the tree mask cannot serve.

:mod:`~nbllm.engine.selfcheck` compares the fast backend with the plain one
once per model and falls back when they disagree.
"""
