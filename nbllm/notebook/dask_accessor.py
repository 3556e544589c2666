"""``ddf.llm.classify``: the pandas accessor's API on a Dask DataFrame.

Each partition is classified by :func:`classify_partition`, which runs the
pandas accessor inside the worker.  Models load through nbllm's per-process
registry (:func:`nbllm.engine.loading.models.get_model`), so a worker process loads the model
on its first partition and reuses it for every later one; ``load_counts``
counts real loads per process (read them with ``client.run``).

Dask schedules, retries lost partitions and shows progress (its progress bar
or the dashboard); nbllm adds nothing of its own there.

The accessor is registered when this module is imported, which ``import
nbllm`` does at once when ``dask.dataframe`` is already imported and
otherwise when it is (:mod:`.accessors`).
"""

import numpy as np
import pandas as pd

from ..options import (DASK, MULTI_LABEL, PROBAS_SUM_TO_1, PROGRESS, PYTHON, check_labels,
                       in_words)
from . import classify as api
from ..exceptions import ColumnError, OptionError, UserError
from .session import session

# Session settings (``%nbllm model|cache_dir ...``) that workers do not see;
# they are filled in on the client when the call leaves them out.  The device
# is not: each worker picks its own (e.g. one GPU per worker).
_SESSION_OPTIONS = ("model", "cache_dir")

# The Dask config the notebook guide recommends for nbllm's workers ("Faster
# Dask workers"): Dask's nannies set MALLOC_TRIM_THRESHOLD_, which turns off
# glibc's adaptive mmap threshold, so torch's large buffers are mapped and
# unmapped at every forward pass (1.3-1.5x slower, benchmarks/RESULTS.md).
# None unsets it; the benchmark and the guide's test use this dict.
FAST_WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def output_classes(labels, examples=None, text_col="text", label_col="label",
                   multi_label=MULTI_LABEL.default_for(DASK)):
    """The classes (output column order) a run will have, without a model.

    Mirrors :func:`nbllm.notebook.classify.build_estimator`: estimators order classes with
    ``np.unique`` of the labels they are fitted on, so integer example labels
    keep their numeric order.

    Raises
    ------
    ValueError
        With the pandas accessor's messages, for missing or bad labels and for
        examples whose labels are not in ``labels``.
    """
    if examples is None or multi_label:
        # multi_label with examples is rejected by build_estimator on the worker.
        return [str(c) for c in np.unique(check_labels(labels))]
    _, ex_labels = api.normalize_examples(examples, text_col, label_col)
    classes = np.unique(ex_labels)
    labels = api.labels_with_examples(labels, ex_labels)
    if labels is not None:
        if len(classes) < len(labels):
            classes = np.unique(labels)
    return [str(c) for c in classes]


def output_meta(classes, proba=True, raw=PROBAS_SUM_TO_1.default_for(DASK),
                multi_label=MULTI_LABEL.default_for(DASK), index=None):
    """An empty frame with the columns and dtypes the accessor returns.

    ``label`` holds strings (pandas' default string dtype) or, with
    ``multi_label``, lists (object).  ``index`` (empty) sets the index dtype.
    """
    label_dtype = object if multi_label else pd.Series(["label"]).dtype
    columns = {"label": pd.Series(dtype=label_dtype)}
    if proba:
        for c in classes:
            columns[f"proba_{c}"] = pd.Series(dtype="float64")
    if raw:
        columns["label_mass"] = pd.Series(dtype="float64")
    meta = pd.DataFrame(columns)
    return meta if index is None else meta.set_axis(index[:0])


def classify_partition(partition, column, labels, options):
    """Classify one pandas partition on a worker (the map_partitions function).

    Parameters
    ----------
    partition : pandas.DataFrame
    column : str
        The text column.
    labels : list of str or None
    options : dict
        The pandas accessor's options, plus ``_meta`` (the output frame's
        meta, whose dtypes every partition's result is given).

    Returns
    -------
    pandas.DataFrame
        The pandas accessor's result on the partition's index.
    """
    meta = options["_meta"]
    if len(partition) == 0:
        return meta.set_axis(partition.index)
    options = {k: v for k, v in options.items() if k != "_meta"}
    out = partition.llm.classify(column, labels, **options)
    # An all-missing partition would otherwise give an object label column.
    return out.astype(meta.dtypes.to_dict())


class DaskLLMAccessor:
    """``ddf.llm.classify(column, labels, ...)`` on a ``dask.dataframe.DataFrame``."""

    def __init__(self, obj):
        self._obj = obj

    def classify(self, column, labels=None, *, proba=True,
                 raw=PROBAS_SUM_TO_1.default_for(DASK), progress=PROGRESS.default_for(DASK),
                 **options):
        """Classify a text column lazily; see ``DataFrame.llm.classify``.

        Takes the pandas accessor's arguments (``model`` must be a spec the
        workers can load, e.g. ``'smollm2-135m'`` or a path they all see).
        The session's ``%nbllm model`` and ``cache_dir`` apply when the call
        leaves them out; the device is each worker's own.

        Returns
        -------
        dask.dataframe.DataFrame
            Lazy; the same columns as the pandas accessor, on the same index
            and partitions.  Call ``.compute()`` or ``.persist()``.
        """
        estimator = options.get("estimator")
        if estimator is not None and getattr(estimator, "model", None) is not None:
            raise OptionError(
                "ddf.llm.classify does not take an estimator built on a model object: "
                "the model would be copied to every worker; give the estimator the "
                "model by name (a spec or a folder every worker sees)", option="estimator")
        if column not in self._obj.columns:
            raise ColumnError(
                f"column {column!r} not found; columns are "
                f"{', '.join(map(repr, self._obj.columns))}"
            )
        # User errors are raised here, at the way in, before a graph is built.
        try:
            api.check_call(self._obj[column], labels, raw=raw, progress=progress,
                           **options)
        except UserError as exc:
            raise in_words(exc, PYTHON) from None
        for name in _SESSION_OPTIONS:
            if options.get(name) is None and getattr(session, name) is not None:
                options[name] = getattr(session, name)
        if estimator is not None:
            # A fitted estimator travels as a light pickle (no weights); each
            # worker loads its model once, through the worker's registry.  Its
            # result policy says which columns the workers' frames will have.
            policy = estimator.result_policy()
            multi_label, raw = policy.multi_label, policy.raw
            classes = [str(c) for c in estimator.classes_]
        else:
            multi_label = options.get("multi_label", False)
            classes = output_classes(labels, options.get("examples"),
                                     options.get("text_col", "text"),
                                     options.get("label_col", "label"), multi_label)
        meta = output_meta(classes, proba, raw, multi_label, self._obj._meta.index)
        shipped = dict(options, proba=proba, raw=raw, progress=progress, _meta=meta)
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
