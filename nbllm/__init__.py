"""nbllm: classify text in notebooks with a local language model, without training.

Heavy dependencies (torch, transformers, scikit-learn) load on first use, so
``import nbllm`` stays fast.
"""

from .exceptions import LowProbabilityError
from .prompts import DEFAULT_PROMPT_FEW_SHOT, DEFAULT_PROMPT_ZERO_SHOT

__version__ = "0.1.0"

_LAZY = {
    "ZeroShotClassifier": "estimators",
    "FewShotClassifier": "estimators",
    "get_model": "models",
    "result_cache": "cache",
}

__all__ = [
    "DEFAULT_PROMPT_FEW_SHOT",
    "DEFAULT_PROMPT_ZERO_SHOT",
    "FewShotClassifier",
    "LowProbabilityError",
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
