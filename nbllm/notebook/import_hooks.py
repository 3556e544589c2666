"""Attach ``df.llm`` and ``ddf.llm`` when pandas or dask.dataframe is imported.

pandas takes ~0.2 s and ~60 MB to import and dask seconds, so ``import nbllm``
imports neither, and a first cell that only classifies a list of texts (the
estimators need neither) does not pay for them.  An accessor is registered at
once when its library is already loaded; otherwise a one-shot finder on
``sys.meta_path`` waits for the module to finish loading, whoever imports it,
and registers it then.  The module keeps its own loader: the wrapper that runs
the callback is taken out of the module's spec once it has run.
"""

import importlib.abc
import sys
import threading

_LOCK = threading.Lock()


class _Loader(importlib.abc.Loader):
    """Runs the module's own loader, then the callbacks waiting for it."""

    def __init__(self, loader, callbacks):
        self.loader = loader
        self.callbacks = callbacks

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        # The real loader back, for importlib.resources, pkgutil and reloads.
        module.__loader__ = self.loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self.loader
        for callback in self.callbacks:
            callback()

    def __getattr__(self, name):  # anything else a loader may be asked for
        return getattr(self.loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds a waited-for module with the other finders and wraps its loader."""

    def __init__(self):
        self.pending = {}

    def find_spec(self, fullname, path=None, target=None):
        with _LOCK:
            callbacks = self.pending.pop(fullname, None)
            if not self.pending:
                _remove()
        if callbacks is None:
            return None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        # pandas and dask are regular packages: their loaders have exec_module.
        spec.loader = _Loader(spec.loader, callbacks)
        return spec


_FINDER = _Finder()


def _remove():
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def when_imported(module_name, callback):
    """Call ``callback()`` now if ``module_name`` is loaded, else once it is."""
    if module_name in sys.modules:
        callback()
        return
    with _LOCK:
        _FINDER.pending.setdefault(module_name, []).append(callback)
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)


def _register_pandas():
    from . import pandas_accessor  # noqa: F401  (registers df.llm on import)


def _register_dask():
    from . import dask_accessor  # noqa: F401  (registers ddf.llm on import)


def install():
    """Register ``df.llm`` and ``ddf.llm`` now or when their library loads."""
    when_imported("pandas", _register_pandas)
    when_imported("dask.dataframe", _register_dask)
