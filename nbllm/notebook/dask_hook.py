"""Attach ``ddf.llm`` whenever ``dask.dataframe`` is imported, before or after nbllm.

Importing dask takes seconds, so ``import nbllm`` never does it.  If dask's
dataframe module is already loaded, the accessor is registered at once;
otherwise a one-shot import hook waits for ``dask.dataframe`` to finish
loading and registers it then, whatever imports it.
"""

import importlib.abc
import importlib.machinery
import sys

_TARGET = "dask.dataframe"


def _register():
    from . import dask_accessor  # noqa: F401  (registers ddf.llm on import)


class _Loader(importlib.abc.Loader):
    """Runs dask.dataframe's own loader, then registers the accessor."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        _register()


class _Hook(importlib.abc.MetaPathFinder):
    """Finds dask.dataframe the usual way and wraps its loader, once."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _TARGET:
            return None
        remove()
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Loader(spec.loader)
        return spec


_HOOK = _Hook()


def remove():
    """Take the hook out of ``sys.meta_path`` (it fires at most once)."""
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)


def install():
    """Register ``ddf.llm`` now if dask.dataframe is loaded, else when it is."""
    if _TARGET in sys.modules:
        _register()
    elif _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)
