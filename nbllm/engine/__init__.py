"""The engine: texts' token ids and labels in, exact log-probabilities out.

It imports torch and transformers only, never IPython, pandas or
scikit-learn.  It has two halves, with imports one way between them:

* :mod:`nbllm.engine.loading`: getting a model (named models, GGUF files and
  their converted copies, devices and dtypes, the process-wide registry in
  :mod:`~nbllm.engine.loading.models`);
* :mod:`nbllm.engine.scoring`: scoring a loaded model, which imports from
  loading and never the reverse.  :class:`nbllm.engine.scoring.scorer.LabelScorer`
  is its entry point; it picks a backend per loaded model:

  * :mod:`~nbllm.engine.scoring.tree_mask`: decoder-only models, every label
    of a prompt in one forward pass under a tree-shaped attention mask;
  * :mod:`~nbllm.engine.scoring.seq2seq`: encoder-decoder models (T5, BART),
    the encoder once per text and the labels as decoder rows;
  * :mod:`~nbllm.engine.scoring.exact`: the plain path, one ordinary forward
    pass per prompt and label (batched as rows), for models the tree mask
    cannot serve.

  :mod:`~nbllm.engine.scoring.selfcheck` compares the fast backend with the
  plain one once per model and falls back when they disagree.

Both halves share :mod:`~nbllm.engine.cache_folder` (the cache folder and the
private files written in it) and :mod:`~nbllm.engine.status` (the status line's
messages).

The engine's modules lived directly in this package before it was split in
two, and the documentation and users' code name those paths
(``nbllm.engine.models.load_counts``, ``nbllm.engine.scorer.use_path``).  Each
old name stays importable as a stand-in that reads and writes the module in
its new home, imported on first use, so ``import nbllm`` pays nothing for it.
"""

import importlib
import sys
import types

# Each module's old name in this package -> its new home.
MOVED = {
    **{name: f"loading.{name}" for name in (
        "converted_copies", "devices", "embedded", "gguf", "gguf_convert", "models",
        "room", "special_tokens")},
    **{name: f"scoring.{name}" for name in (
        "attention", "batching", "exact", "gqa", "head", "prefix", "prompt_tree",
        "prompts", "result_cache", "scorer", "selfcheck", "seq2seq", "text_scorer",
        "tree_mask", "trie")},
}


class _MovedModule(types.ModuleType):
    """A module's old import path, standing in for the module at its new one.

    Reading an attribute imports the new module and reads it there; a patch
    belongs on the module in its new home, where its code reads it.  Dunder
    names are the stand-in's own and import nothing: tools that walk
    ``sys.modules`` (``inspect.getmodule`` reads every module's ``__file__``,
    torch does so while it is imported) must not import the engine.
    """

    def __init__(self, name, target):
        super().__init__(name, f"Moved to :mod:`{target}`.")
        self._target = target

    def _module(self):
        return importlib.import_module(self._target)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._module(), name)

    def __dir__(self):
        return dir(self._module())


for _old, _new in MOVED.items():
    _stand_in = sys.modules.setdefault(
        f"{__name__}.{_old}", _MovedModule(f"{__name__}.{_old}", f"{__name__}.{_new}"))
    globals()[_old] = _stand_in
del _old, _new, _stand_in
