"""The pandas accessors ``df.llm`` and ``series.llm``.

pandas builds a new accessor object on every attribute access, so
``__init__`` only keeps a reference; all work is delegated to
:func:`nbllm.notebook.classify.classify`, the same function the magics use.
"""

import pandas as pd

from .. import options
from ..exceptions import ColumnError, UserError
from ..options import PYTHON, in_words
from . import classify as api


def _default(option):
    """The option's default for the notebook's Python keywords (``raw=False``)."""
    return option.default_for(options.PYTHON)


def _output_frame(result, proba, raw):
    frame = result.frame.drop(columns=["text"])
    if not proba:
        frame = frame[["label"] + (["label_mass"] if raw else [])]
    return frame


class _Base:
    def __init__(self, obj):
        self._obj = obj

    def _classify(self, series, labels, proba, raw, estimator, **options):
        try:
            # User errors are raised at the way in, before any work.
            api.check_call(series, labels, estimator, raw=raw, **options)
            if estimator is not None:
                # A fitted estimator brings its own labels, prompt and model.
                result = api.classify(series.tolist(), estimator=estimator,
                                      index=series.index, skip_missing=True)
            else:
                result = api.classify(series.tolist(), labels, raw=raw,
                                      index=series.index, skip_missing=True, **options)
        except UserError as exc:
            # Said in the notebook's words (raw=True), two frames from the call.
            raise in_words(exc, PYTHON) from None
        return _output_frame(result, proba, result.raw)


@pd.api.extensions.register_dataframe_accessor("llm")
class DataFrameLLMAccessor(_Base):
    """``df.llm.classify(column, labels, ...)``, ``df.llm.explain(column, ...)`` and
    ``df.llm.preview(...)``."""

    def _column(self, column):
        if column not in self._obj.columns:
            raise ColumnError(
                f"column {column!r} not found; columns are "
                f"{', '.join(map(repr, self._obj.columns))}"
            )
        return self._obj[column]

    def classify(self, column, labels=None, *, model=_default(options.MODEL_NAME),
                 prompt=_default(options.PROMPT), examples=None,
                 max_samples=_default(options.MAX_SAMPLES), proba=True,
                 raw=_default(options.PROBAS_SUM_TO_1), estimator=None,
                 batch_size=_default(options.BATCH_SIZE), progress=_default(options.PROGRESS),
                 **kwargs):
        """Classify a text column; return a new DataFrame on the same index.

        Parameters
        ----------
        column : str
            The text column.
        labels : list of str
            Required unless ``estimator`` or ``examples`` provide them.
        model, prompt : optional
            Model spec and prompt template.
        examples : DataFrame or list of (text, label), optional
            Switches to few-shot, with ``max_samples`` examples in the prompt.
        proba : bool
            Add ``proba_<label>`` columns.
        raw : bool
            Unnormalised probabilities, plus a ``label_mass`` column.
        estimator : fitted ZeroShotClassifier or FewShotClassifier, optional
            Reuse it instead of building one.

        Returns
        -------
        pandas.DataFrame
            ``label``, ``proba_<label>``..., and ``label_mass`` with ``raw``.
            Rows with a missing text get NaN (with a warning counting them).
        """
        texts = self._column(column)
        options = dict(model=model, prompt=prompt, examples=examples,
                       max_samples=max_samples, batch_size=batch_size, progress=progress,
                       **kwargs)
        return self._classify(texts, labels, proba, raw, estimator, **options)

    def explain(self, column, labels=None, *, estimator=None, method="occlusion",
                n_samples=10, max_features=40, **kwargs):
        """Why each text of ``column`` gets its label: each word's contribution.

        Parameters
        ----------
        column : str
            The text column.
        labels, estimator, **kwargs
            As for :meth:`classify` (model, prompt, examples, ...).
        method : {'occlusion', 'shapley'}
        n_samples, max_features : int
            As for the estimators' ``explain``.

        Returns
        -------
        pandas.DataFrame
            One row per (text, word): ``row`` (this frame's index label),
            ``unit``, ``word``, ``start``, ``end``, ``label`` (the label
            explained), ``contribution`` (to its log-odds against the rest),
            ``logp:<label>`` (to each label's log-probability) and
            ``outcome`` (why a row is not explained: empty, missing, too long).
        """
        texts = self._column(column)
        try:
            explanation = api.explain(texts.tolist(), labels, estimator=estimator,
                                      method=method, n_samples=n_samples,
                                      max_features=max_features, **kwargs)
        except UserError as exc:
            raise in_words(exc, PYTHON) from None
        frame = explanation.to_frame()
        frame["row"] = texts.index[frame["row"].to_numpy()]
        return frame

    def panel(self, column, labels=None):
        """An interactive :class:`nbllm.notebook.panel.Panel` over ``column``."""
        from .panel.panel import Panel

        self._column(column)
        return Panel(self._obj, column, labels)

    def labeler(self, column, labels=None, **options):
        """A :class:`nbllm.Labeler` over ``column``: label the rows the model is
        least sure of (options as for the Labeler)."""
        from .labeler.labeler import Labeler

        self._column(column)
        return Labeler(self._obj, column, labels, **options)

    def preview(self, column, i, labels=None, **options):
        """A generation preview for row ``i`` (by position) of ``column``."""
        text = self._column(column).iloc[i]
        clf = options.pop("estimator", None) or api.build_estimator(labels, **options)
        return api.preview(clf, text)


@pd.api.extensions.register_series_accessor("llm")
class SeriesLLMAccessor(_Base):
    """``series.llm.classify(labels, ...)``: the Series holds the texts."""

    def classify(self, labels=None, *, model=_default(options.MODEL_NAME),
                 prompt=_default(options.PROMPT), examples=None,
                 max_samples=_default(options.MAX_SAMPLES), proba=True,
                 raw=_default(options.PROBAS_SUM_TO_1), estimator=None,
                 batch_size=_default(options.BATCH_SIZE), progress=_default(options.PROGRESS),
                 **kwargs):
        """Classify the texts of this Series; see ``DataFrame.llm.classify``."""
        options = dict(model=model, prompt=prompt, examples=examples,
                       max_samples=max_samples, batch_size=batch_size, progress=progress,
                       **kwargs)
        return self._classify(self._obj, labels, proba, raw, estimator, **options)

    def preview(self, i, labels=None, **options):
        """A generation preview for position ``i``."""
        clf = options.pop("estimator", None) or api.build_estimator(labels, **options)
        return api.preview(clf, self._obj.iloc[i])
