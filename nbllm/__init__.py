"""nbllm: classify text in notebooks with a local language model, without training.

torch and transformers load on first use, so ``import nbllm`` stays fast;
it imports pandas and registers ``df.llm`` (and ``ddf.llm`` once dask.dataframe
is imported).
"""

from .exceptions import LowProbabilityError, UserError
from .engine.scoring.prompts import (
    DEFAULT_EXAMPLE_TEMPLATE,
    DEFAULT_PROMPT_FEW_SHOT,
    DEFAULT_PROMPT_ZERO_SHOT,
    SKORCH_EXAMPLE_TEMPLATE,
)

from ._version import __version__

_LAZY = {
    "ClassificationResult": "notebook.display",
    "GenerationPreview": "notebook.display",
    "classify": "notebook.classify",
    "compare_prompts": "notebook.compare",
    "Panel": "notebook.panel.panel",
    "Labeler": "notebook.labeler.labeler",
    "ZeroShotClassifier": "estimators",
    "FewShotClassifier": "estimators",
    "MultiLabelZeroShotClassifier": "estimators",
    "get_model": "engine.loading.models",
    "result_cache": "engine.scoring.result_cache",
}

__all__ = [
    "ClassificationResult",
    "GenerationPreview",
    "classify",
    "compare_prompts",
    "DEFAULT_EXAMPLE_TEMPLATE",
    "DEFAULT_PROMPT_FEW_SHOT",
    "DEFAULT_PROMPT_ZERO_SHOT",
    "FewShotClassifier",
    "Labeler",
    "LowProbabilityError",
    "MultiLabelZeroShotClassifier",
    "Panel",
    "SKORCH_EXAMPLE_TEMPLATE",
    "UserError",
    "ZeroShotClassifier",
    "get_model",
    "result_cache",
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'nbllm' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


def load_ipython_extension(ipython):
    """``%load_ext nbllm``: register the magics (``df.llm`` comes with ``import nbllm``)."""
    from .notebook.magics import NbllmMagics

    ipython.register_magics(NbllmMagics)


# ``df.llm`` and ``series.llm`` now; ``ddf.llm`` now or when dask.dataframe
# is imported (see notebook/accessors.py).
from .notebook import accessors as _accessors  # noqa: E402

_accessors.register()
