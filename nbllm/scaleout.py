"""``ddf.llm.classify``: the pandas accessor's API on a Dask DataFrame.

Each partition is classified by :func:`classify_partition`, which runs the
pandas accessor inside the worker.  Models load through nbllm's per-process
registry (:func:`nbllm.models.get_model`), so a worker process loads the model
on its first partition and reuses it for every later one; ``load_counts``
counts real loads per process (read them with ``client.run``).

Dask schedules, retries lost partitions and shows progress (its progress bar
or the dashboard); nbllm adds nothing of its own there.

The accessor is registered when this module is imported, which ``import
nbllm`` does whenever ``dask.dataframe`` is already imported.
"""

import numpy as np
import pandas as pd

from . import api

# Options that name things on the client that workers cannot share.
_NOT_SHIPPABLE = ("estimator",)


def output_classes(labels, examples=None, text_col="text", label_col="label",
                   multi_label=False):
    """The classes (output column order) a run will have, without a model."""
    names = set(api.check_labels(labels)) if labels is not None else set()
    if examples is not None and not multi_label:
        _, ex_labels = api.normalize_examples(examples, text_col, label_col)
        names |= {str(y) for y in ex_labels}
    if not names:
        raise ValueError("labels are required (or examples with labels)")
    # Estimators order classes with np.unique, i.e. sorted.
    return [str(c) for c in np.unique(sorted(names))]


def output_meta(classes, proba=True, raw=False):
    """An empty frame with the columns and dtypes the accessor returns."""
    columns = {"label": pd.Series(dtype=object)}
    if proba:
        for c in classes:
            columns[f"proba_{c}"] = pd.Series(dtype="float64")
    if raw:
        columns["label_mass"] = pd.Series(dtype="float64")
    return pd.DataFrame(columns)


def classify_partition(partition, column, labels, options):
    """Classify one pandas partition on a worker (the map_partitions function)."""
    if len(partition) == 0:
        return output_meta(options["_classes"], options.get("proba", True),
                           options.get("raw", False))
    options = {k: v for k, v in options.items() if k != "_classes"}
    return partition.llm.classify(column, labels, **options)


class DaskLLMAccessor:
    """``ddf.llm.classify(column, labels, ...)`` on a ``dask.dataframe.DataFrame``."""

    def __init__(self, obj):
        self._obj = obj

    def classify(self, column, labels=None, *, proba=True, raw=False, progress=False,
                 **options):
        """Classify a text column lazily; see ``DataFrame.llm.classify``.

        Takes the pandas accessor's arguments (``model`` must be a spec the
        workers can load, e.g. ``'smollm2-135m'`` or a path they all see).

        Returns
        -------
        dask.dataframe.DataFrame
            Lazy; the same columns as the pandas accessor, on the same index
            and partitions.  Call ``.compute()`` or ``.persist()``.
        """
        for name in _NOT_SHIPPABLE:
            if options.get(name) is not None:
                raise ValueError(
                    f"ddf.llm.classify does not take {name}=: a fitted estimator holds "
                    "its model and would be copied to every worker; pass the options "
                    "(labels, model, prompt, examples, ...) instead"
                )
        if column not in self._obj.columns:
            raise KeyError(
                f"column {column!r} not found; columns are "
                f"{', '.join(map(repr, self._obj.columns))}"
            )
        classes = output_classes(labels, options.get("examples"),
                                 options.get("text_col", "text"),
                                 options.get("label_col", "label"),
                                 options.get("multi_label", False))
        meta = output_meta(classes, proba, raw)
        shipped = dict(options, proba=proba, raw=raw, progress=progress,
                       _classes=classes)
        return self._obj.map_partitions(
            classify_partition, column, labels, shipped, meta=meta,
        )


def register():
    """Attach ``.llm`` to Dask DataFrames (idempotent)."""
    import dask.dataframe as dd

    if not isinstance(getattr(dd.DataFrame, "llm", None), _DaskAccessorProperty):
        dd.DataFrame.llm = _DaskAccessorProperty()


class _DaskAccessorProperty:
    """Builds the accessor on attribute access, like pandas' accessors.

    Set directly rather than through dask's register function so that a
    second import (e.g. after a module reload) does not warn."""

    def __get__(self, obj, owner=None):
        return DaskLLMAccessor if obj is None else DaskLLMAccessor(obj)


register()
