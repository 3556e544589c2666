"""``df.llm``, ``series.llm`` and ``ddf.llm``, registered by ``import nbllm``.

pandas is a core dependency: its accessors are registered at once, with
pandas' own ``register_*_accessor``.  Dask is optional and slow to import, so
``import nbllm`` does not import it: ``ddf.llm`` is attached at once when
``dask.dataframe`` is already loaded, and otherwise by a post-import hook of
``wrapt``, which fires when the module really loads (a ``find_spec`` probe,
as libraries make to see what is installed, leaves the hook in place).
"""

import sys

from . import pandas_accessor  # noqa: F401  (registers df.llm and series.llm)

DASK_MODULE = "dask.dataframe"


def _register_dask(module=None):
    from . import dask_accessor

    dask_accessor.register()


def register():
    """Attach ``ddf.llm`` now or when ``dask.dataframe`` is imported (idempotent)."""
    if DASK_MODULE in sys.modules:
        _register_dask()
        return
    import wrapt

    wrapt.register_post_import_hook(_register_dask, DASK_MODULE)
