"""What every nbllm classifier shares: parameter checks, model loading,
prompts and scoring through the engine.

The classifiers (:mod:`.zero_shot`, :mod:`.few_shot`, :mod:`.multi_label`)
follow skorch.llm's names and semantics, and scikit-learn's estimator
contract through its own base classes: ``__init__`` only stores its
arguments, ``fit`` validates them and loads the (shared) model, and fitted
state ends in ``_``.  The single-label policies are in :mod:`.single_label`.
"""

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .. import options
from ..engine.loading import models
from ..engine.scoring.prompts import (
    DEFAULT_PROMPT_ZERO_SHOT,
    ZERO_SHOT_PLACEHOLDERS,
    PromptRenderer,
    check_template,
    label_token_ids,
)
from ..engine.scoring.result_cache import disk_cache, result_cache
from ..engine.scoring.text_scorer import TextScorer
from ..exceptions import LabelsError, ModelError, OptionError
from . import persistence
from . import prompt_mode as prompt_modes
from ..warnings_to_user import warn
from .inputs import as_sequence, check_targets, check_texts, missing_y_message, repair_unicode


def check_fitted(estimator):
    """Raise scikit-learn's ``NotFittedError`` unless ``fit`` has run.

    scikit-learn's ``check_is_fitted`` asks the estimator's
    ``__sklearn_is_fitted__``, which reads ``__dict__``: an unpickled
    estimator counts as fitted, and its model is not loaded to find out.
    """
    check_is_fitted(estimator)


class CacheCounts:
    """Result-cache lookups of an estimator's scoring calls.

    Counted in place, in one object made by ``fit``: they describe the shared
    cache's work, not the estimator, so predicting leaves the estimator's
    attributes as they are (scikit-learn's rule).
    """

    def __init__(self):
        self.hits = 0
        self.misses = 0

    def __repr__(self):
        return f"CacheCounts(hits={self.hits}, misses={self.misses})"


class _LLMBase(BaseEstimator):
    """What every classifier shares: parameter checks, model loading, prompts
    and scoring through the engine."""

    _placeholders = ZERO_SHOT_PLACEHOLDERS
    _default_prompt = DEFAULT_PROMPT_ZERO_SHOT
    # use_chat_template='auto' means raw, the label after a space (single-label).
    _auto_raw = False

    # ------------------------------------------------------------------ fit
    def _check_params(self):
        """Check the parameters, before any work (the first step of ``fit``)."""
        name = type(self).__name__
        if self.model_name is not None and (
            self.model is not None or self.tokenizer is not None
        ):
            raise ModelError(
                f"{name} needs to be initialized with either a model name, "
                "or a model & tokenizer, but not both."
            )
        if (self.model is None) != (self.tokenizer is None):
            # skorch's sentence first, so code matching skorch's message works.
            raise ModelError(
                f"{name} needs to be initialized with either a model name, "
                "or a model & tokenizer, but not both. It needs both model and "
                "tokenizer when one of them is passed; got only the "
                + ("model" if self.model is not None else "tokenizer")
            )
        # Every parameter by its one definition in the option table.
        options.check_params(self.get_params(deep=False))

    def _fit_common(self, y, classes=None):
        """Load the model and derive everything that depends on the labels
        (``classes`` when given, else the labels of ``y``); ``fit`` has
        checked the parameters first (:meth:`_check_params`)."""
        if y is None:
            raise LabelsError(missing_y_message(self))
        if len(as_sequence(y)) == 0:
            raise LabelsError("y must contain at least one label; got an empty list")
        options.check_missing_labels(as_sequence(y))
        y = np.asarray(y)
        try:
            # A column of labels is read as a list, with scikit-learn's warning;
            # continuous numbers and infinities are not classes.
            y = column_or_1d(y, warn=True)
            check_targets(y)
        except ValueError as exc:
            raise LabelsError(str(exc)) from None
        if classes is not None:
            missing = sorted({str(label) for label in y} - {str(c) for c in classes})
            if missing:
                raise LabelsError(
                    "classes must hold every label of y; missing "
                    + ", ".join(map(repr, missing))
                )
            options.check_missing_labels(as_sequence(classes), "classes")
        options.check_spaced_labels(y if classes is None else classes)
        if not isinstance(y[0], str) and self.label_map is None:
            warn(
                "y should contain the name of the labels as strings, e.g. "
                "'positive' and 'negative', don't pass label-encoded targets"
            )
        # Before the model loads: what is known from the labels alone is said now.
        self._check_classes(np.unique(y if classes is None else classes))
        if self.model is not None:
            self.loaded_ = models.wrap_model(self.model, self.tokenizer)
        else:
            self.loaded_ = models.get_model(self.model_name, self.device, self.dtype,
                                            trust_remote_code=self.trust_remote_code)
        self.model_ = self.loaded_.model
        self.tokenizer_ = self.loaded_.tokenizer
        self.prompt_ = self._default_prompt if self.prompt is None else self.prompt
        check_template(self.prompt_, self._placeholders)
        self.prompt_mode_ = prompt_modes.resolve(
            self.use_chat_template, self.prompt_, self.tokenizer_,
            encoder_decoder=self.model_.config.is_encoder_decoder,
            auto_raw=self._auto_raw,
            example_placement=getattr(self, "example_placement", None))
        self.disk_cache_ = disk_cache(self.cache_dir) if self.use_caching else None
        self.cache_counts_ = CacheCounts()
        # Set once: a first call with y's labels alone could warn of a lone label.
        self._set_classes(y if classes is None else classes)
        # What save() writes, so that load() can refit to the same state.
        self._fit_inputs = (None, list(y), None if classes is None else list(classes))
        return y

    def _check_classes(self, classes):
        """Warn of what the classes alone tell, before any model work (subclasses)."""

    def _set_classes(self, labels):
        """Set ``classes_`` and their token ids (used by fit and by callers that
        widen a few-shot label set beyond the labels of the examples)."""
        self.classes_ = np.unique(labels)
        words = [self._word(c) for c in self.classes_]
        if len(set(words)) < len(words):
            repeated = sorted({w for w in words if words.count(w) > 1})
            raise OptionError(
                "label_map maps several classes to the same word: "
                + ", ".join(repr(w) for w in repeated), option="label_map")
        self.label_ids_ = [self._label_ids(w) for w in words]

    def _word(self, label):
        """The text the model scores for a class (``label_map`` or the class)."""
        if self.label_map is not None and label in self.label_map:
            return self.label_map[label]
        return str(label)

    def _label_ids(self, label):
        text = str(label)
        if not text.strip():
            raise LabelsError(
                f"labels must be non-empty strings; got {text!r} in the classes"
            )
        ids = label_token_ids(self.tokenizer_, text, self.prompt_mode_.label_prefix)
        # A label whose own tokens are none (e.g. only characters the
        # tokenizer drops) would be scored as the bare prefix space.
        if not ids or not self.tokenizer_(text, add_special_tokens=False)["input_ids"]:
            raise LabelsError(f"label {text!r} tokenizes to no tokens")
        eos = self.tokenizer_.eos_token_id
        if self.model_.config.is_encoder_decoder and eos is not None:
            # A decoder's answer is the whole label and then its end: scoring
            # the end too (as skorch does) keeps a short label from winning
            # just because a longer one starts with it.
            ids = [*ids, eos]
        return ids

    def prompt_mode(self):
        """How the prompt goes to the model, and why (decided in ``fit``).

        Returns
        -------
        PromptMode
            ``mode`` ('raw' or 'chat'), ``label_prefix``, ``cut`` and
            ``reason``, e.g. ``"sent raw, the label after a space
            (use_chat_template='auto')"``.
        """
        check_fitted(self)
        return self.prompt_mode_

    @property
    def use_chat_template_(self):
        """Whether the prompt goes through the chat template (``prompt_mode_.chat``)."""
        check_fitted(self)
        return self.prompt_mode_.chat

    @property
    def n_cache_hits_(self):
        """Rows of this estimator's scoring calls answered by the result cache."""
        check_fitted(self)
        return self.cache_counts_.hits

    @property
    def n_cache_misses_(self):
        """Rows of this estimator's scoring calls the model had to score."""
        check_fitted(self)
        return self.cache_counts_.misses

    def _prompt_fields(self):
        return {"labels": [self._word(c) for c in self.classes_.tolist()]}

    def _renderer(self):
        return self._prompt_renderer(self._prompt_fields())

    def _prompt_renderer(self, fields):
        return PromptRenderer(
            self.prompt_, fields, self.tokenizer_, self.prompt_mode_.chat,
            strip_end=self.prompt_mode_.cut,
        )

    @property
    def device_(self):
        """The device the model runs on."""
        check_fitted(self)
        return self.loaded_.device

    # ---------------------------------------------------------- prompting
    def get_prompt(self, text):
        """Return the exact prompt string the model sees for ``text``."""
        check_fitted(self)
        text = repair_unicode([text])[0] if isinstance(text, str) else text
        return self._renderer().for_texts([text])[0].render(text)

    def _text_scorer(self):
        """The engine's text-level scorer, set up as this estimator says."""
        return TextScorer(
            self.loaded_, use_chat_template=self.prompt_mode_.chat,
            truncation=self.truncation, use_caching=self.use_caching,
            disk_cache=self.disk_cache_, batch_size=self.batch_size,
        )

    def prompt_token_ids(self, X):
        """The token ids of each text's prompt, as scored (after truncation)."""
        check_fitted(self)
        return self._text_scorer().encode(check_texts(X), self._renderer(), self.label_ids_)

    # ------------------------------------------------------------ scoring
    def label_logprobs(self, X, on_rows=None, *, positions=None):
        """log P(label | prompt) per sample and class, streamed as rows finish.

        The notebook layer builds on it (through ``label_scores``): results come from
        the result cache where possible, and ``on_rows(rows, logprobs)`` is
        called whenever some rows of X are ready (cached rows first, then per
        batch).  It may raise to stop the run; finished batches stay cached.

        Parameters
        ----------
        X : list-like of str
        on_rows : callable or None
        positions : sequence of int, optional
            Where each text of X sits in the caller's data (error messages).

        Returns
        -------
        numpy.ndarray of shape (n_samples, n_classes), float64
        """
        check_fitted(self)
        return self._logprobs_for(check_texts(X), self._renderer(), self.label_ids_,
                                  on_rows, positions=positions)

    def _logprobs_for(self, texts, renderer, label_ids, on_rows=None, progress=None,
                      positions=None):
        """Score ``label_ids`` after ``renderer``'s prompts; count cache lookups."""
        scorer = self._text_scorer()
        try:
            return scorer.score(texts, renderer, label_ids, on_rows,
                                self.progress if progress is None else progress, positions)
        finally:
            self.cache_counts_.hits += scorer.hits
            self.cache_counts_.misses += scorer.misses

    def explain(self, X, *, method="occlusion", n_samples=10, max_features=40,
                random_state=0):
        """Why each text got its label: each word's contribution, measured exactly.

        Each word is taken out of the text and the text scored again by the
        same exact engine, in one batched call, with the same prompt and
        examples (see ``docs/explain.md``).  What is explained is what this
        estimator returns: calibrated probabilities if it is calibrated
        (``calibration='batch'``: the uncalibrated ones, as the result's
        ``note`` says); multi-label: each label's own log-odds.

        Parameters
        ----------
        X : list-like of str
            Missing, empty and too long texts are kept as rows whose
            ``outcome`` says, in one line, why they are not explained.
        method : {'occlusion', 'shapley'}
            Occlusion (one text per word) or Shapley-value sampling.
        n_samples : int
            Shapley sampling's number of random word orders.
        max_features : int
            A text with more words is explained over sentences or runs of
            words (its ``grouping`` says which).
        random_state : int
            Seeds Shapley sampling's orders.

        Returns
        -------
        nbllm.estimators.explanation.Explanation
            ``to_frame()``, an HTML highlight, ``method``, ``target`` and
            one :class:`~nbllm.estimators.explanation.RowExplanation` per text.

        Raises
        ------
        ValueError
            For an unknown ``method`` or a bad ``n_samples`` or ``max_features``.
        """
        from .explain import explain

        return explain(self, X, method=method, n_samples=n_samples,
                       max_features=max_features, random_state=random_state)

    def generate(self, text, max_new_tokens=20):
        """The model's free, greedy continuation of the rendered prompt.

        Shows what the model would say if it were not constrained to the
        labels; useful to debug a prompt.
        """
        check_fitted(self)
        text = check_texts([text])[0]
        return self._text_scorer().generate(text, self._renderer(), self.label_ids_,
                                            max_new_tokens)

    def clear_model_cache(self):
        """Empty the result cache (shared by every estimator in the process)
        and this estimator's disk cache, if it has one."""
        result_cache.clear()
        if getattr(self, "disk_cache_", None) is not None:
            self.disk_cache_.clear()

    # ------------------------------------------------------ saving
    def __getstate__(self):
        # Light: a model from a spec is not pickled; it comes back through the
        # registry on first use (see estimators/persistence.py).
        return persistence.light_state(self, super().__getstate__())

    def __getattr__(self, name):
        # Only reached when normal lookup fails: the model of an unpickled
        # estimator loads on first use.  (check_fitted never comes here.)
        if name in persistence.RUNTIME_ATTRIBUTES and persistence.needs_restore(self):
            persistence.restore_model(self)
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def save(self, path):
        """Write this fitted classifier to ``path`` as JSON (parameters and
        fitted state; no pickle, no weights).  Reload it with :meth:`load`.

        Raises
        ------
        ValueError
            If the model was passed as an object, or a parameter is not JSON.
        """
        persistence.save(self, path)

    @classmethod
    def load(cls, path, trust_remote_code=False):
        """A classifier saved by :meth:`save`, refitted from the file's values.

        No code from the file runs; ``trust_remote_code`` stays off unless
        passed here.

        Raises
        ------
        ValueError
            If the file is damaged, not an nbllm classifier file, or of
            another class.
        """
        return persistence.load(cls, path, trust_remote_code=trust_remote_code)

    # ------------------------------------------------------ sklearn glue
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True  # X holds texts
        return tags

    def __sklearn_is_fitted__(self):
        # What check_is_fitted asks.  Read from __dict__: hasattr would go
        # through __getattr__ and load the model of an unpickled estimator.
        return "classes_" in self.__dict__

    def __sklearn_clone__(self):
        # Model and tokenizer objects are shared, not deep-copied: a clone in
        # GridSearchCV must not duplicate gigabytes of weights.
        from sklearn.base import clone

        params = self.get_params(deep=False)
        for name, value in params.items():
            if name not in ("model", "tokenizer"):
                params[name] = clone(value, safe=False)
        return type(self)(**params)

    def __repr__(self, N_CHAR_MAX=700):
        if self.model is None and self.tokenizer is None:
            return super().__repr__(N_CHAR_MAX)
        # sklearn's repr prints parameter values; show class names, not the
        # model's full module tree.  It prints a shallow copy, so this
        # estimator is only read: another thread never sees a stand-in.
        shown = object.__new__(type(self))
        vars(shown).update(vars(self))
        vars(shown).update(
            model=_Named(type(self.model).__name__) if self.model is not None else None,
            tokenizer=(_Named(type(self.tokenizer).__name__)
                       if self.tokenizer is not None else None),
        )
        return super(_LLMBase, shown).__repr__(N_CHAR_MAX)


class _Named:
    """Shows a model object as its quoted class name, as skorch's repr does."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return repr(self.name)
