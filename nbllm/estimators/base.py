"""What every nbllm classifier shares: parameter checks, model loading,
scoring through the engine, and the low-probability policy.

The classifiers (:mod:`.zero_shot`, :mod:`.few_shot`, :mod:`.multi_label`)
follow skorch.llm's names and semantics, and scikit-learn's estimator
contract: ``__init__`` only stores its arguments, ``fit`` validates them and
loads the (shared) model, and fitted state ends in ``_``.
"""

import os
import re
from collections.abc import Mapping

import numpy as np

from .. import options
from ..engine import models
from ..engine.prompts import (
    DEFAULT_PROMPT_ZERO_SHOT,
    ZERO_SHOT_PLACEHOLDERS,
    PromptRenderer,
    check_template,
    is_missing,
    label_token_ids,
    trailing_space,
)
from ..engine.result_cache import disk_cache, result_cache
from ..engine.text_scorer import TextScorer
from ..exceptions import (LabelsError, ModelError, OptionError, PromptError,
                          TextsError)
from ..exceptions import LowProbabilityError
from .predictions import single_label_predictions
from . import persistence
from .sklearn_api import ClassifierAPI, check_fitted
from .calibration import (
    CONTENT_FREE_TEXTS,
    calibrate,
    content_free_reference,
    fit_scale_and_bias,
)
from ..warnings_to_user import warn



def _check_same_length(X, y):
    """Raise, with skorch's wording, unless X and y hold as many samples."""
    if len(X) != len(y):
        raise TextsError(
            "X and y don't have the same number of samples, found "
            f"{len(X)} and {len(y)} samples, respectively"
        )


def _check_texts(X):
    """Return X as a list of str, or raise a ValueError that says what is wrong."""
    if isinstance(X, (str, bytes)):
        raise TextsError(
            "X must be a list-like of texts, got a single string; wrap it in a "
            "list: [text]"
        )
    if X is None:
        raise TextsError("X must be a list-like of texts, got None")
    texts = list(X.ravel()) if isinstance(X, np.ndarray) else list(X)
    bad = [i for i, x in enumerate(texts) if is_missing(x)]
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        raise TextsError(
            f"X contains {len(bad)} missing value(s) (None or NaN) at position(s) "
            f"{shown}; drop or fill them first"
        )
    converted = sum(not isinstance(x, str) for x in texts)
    if converted:
        warn(
            f"{converted} value(s) in X are not strings and were converted with str()"
        )
        texts = [
            x.decode("utf-8", errors="replace") if isinstance(x, bytes) else str(x)
            for x in texts
        ]
    return _repair_unicode(texts)


_SURROGATES = re.compile("[\ud800-\udfff]")


def _repair_unicode(texts):
    """Replace lone surrogates (text that is not valid Unicode, e.g. from a
    broken decode) with U+FFFD, which tokenizers reject otherwise."""
    bad = []
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(i)
    if bad:
        warn(
            f"{len(bad)} text(s) contain invalid Unicode (lone surrogates); those "
            "characters were replaced with U+FFFD"
        )
        texts = list(texts)
        for i in bad:
            texts[i] = _SURROGATES.sub("\ufffd", texts[i])
    return texts


class _LLMBase(ClassifierAPI):
    """What every classifier shares: parameter checks, model loading, prompts
    and scoring through the engine."""

    _placeholders = ZERO_SHOT_PLACEHOLDERS
    _default_prompt = DEFAULT_PROMPT_ZERO_SHOT
    # use_chat_template='auto' means raw, the label after a space (single-label).
    _auto_raw = False

    # ------------------------------------------------------------------ fit
    def _check_params(self):
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
        for option in (options.USE_CHAT_TEMPLATE, options.BATCH_SIZE, options.PROGRESS):
            option.validate(getattr(self, option.name))
        if self.cache_dir is not None and not isinstance(self.cache_dir, (str, os.PathLike)):
            raise OptionError(
                f"cache_dir must be a folder path or None; got {self.cache_dir!r}",
                option="cache_dir")
        options.TRUNCATION.validate(self.truncation)
        if self.label_map is not None and not (
            isinstance(self.label_map, Mapping)
            and all(isinstance(w, str) and w.strip() for w in self.label_map.values())
        ):
            raise OptionError(
                "label_map must be a dict from class to the non-empty word the model "
                f"scores, e.g. {{'pos': 'positive'}}; got {self.label_map!r}",
                option="label_map")
        if self.prompt is not None and not isinstance(self.prompt, str):
            raise PromptError(
                f"prompt must be a string or None; got {type(self.prompt).__name__}"
            )

    def _fit_common(self, y, classes=None):
        """Load the model and derive everything that depends on the labels
        (``classes`` when given, else the labels of ``y``)."""
        self._check_params()
        if y is None:
            raise LabelsError(
                "y cannot be None, as it is used to infer the existing classes"
            )
        y = np.asarray(y)
        if len(y) == 0:
            raise LabelsError("y must contain at least one label; got an empty list")
        if classes is not None:
            missing = sorted({str(label) for label in y} - {str(c) for c in classes})
            if missing:
                raise LabelsError(
                    "classes must hold every label of y; missing "
                    + ", ".join(map(repr, missing))
                )
        if not isinstance(y[0], str) and self.label_map is None:
            warn(
                "y should contain the name of the labels as strings, e.g. "
                "'positive' and 'negative', don't pass label-encoded targets"
            )
        if self.model is not None:
            self.loaded_ = models.wrap_model(self.model, self.tokenizer)
        else:
            self.loaded_ = models.get_model(self.model_name, self.device, self.dtype,
                                            trust_remote_code=self.trust_remote_code)
        self.model_ = self.loaded_.model
        self.tokenizer_ = self.loaded_.tokenizer
        self.prompt_ = self._default_prompt if self.prompt is None else self.prompt
        check_template(self.prompt_, self._placeholders)
        self.use_chat_template_ = self._resolve_chat_template()
        self.disk_cache_ = disk_cache(self.cache_dir) if self.use_caching else None
        self.n_cache_hits_ = 0
        self.n_cache_misses_ = 0
        # Set once: a first call with y's labels alone could warn of a lone label.
        self._set_classes(y if classes is None else classes)
        # What save() writes, so that load() can refit to the same state.
        self._fit_inputs = (None, list(y), None if classes is None else list(classes))
        return y

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
        ids = label_token_ids(self.tokenizer_, text, self._label_prefix())
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

    def _label_prefix(self):
        """What goes before the label's own text when it continues a raw prompt.

        With ``use_chat_template='auto'`` a raw label always follows after one
        space, whatever whitespace ends the template (the template's trailing
        whitespace is dropped), so "...Label:" and "...Label: " score alike.
        With False (skorch's scoring), the spaces that end the template belong
        to the label (see prompts).  Not so for an encoder-decoder model: its
        label starts the decoder's own sequence instead of continuing the prompt.
        """
        if self.use_chat_template_ or self.model_.config.is_encoder_decoder:
            return ""
        if self.use_chat_template == "auto" and self._auto_raw:
            return " "
        return trailing_space(self.prompt_)

    def _prompt_cut(self):
        """How many characters of the filled template's end the label takes over."""
        prefix = self._label_prefix()
        if prefix and self.use_chat_template == "auto" and self._auto_raw:
            return len(self.prompt_) - len(self.prompt_.rstrip())
        return len(prefix)

    def _resolve_chat_template(self):
        has_template = bool(getattr(self.tokenizer_, "chat_template", None))
        if self.use_chat_template is True and not has_template:
            raise OptionError(
                "use_chat_template=True, but the tokenizer has no chat template; "
                "use 'auto' or False", option="use_chat_template")
        if self.use_chat_template == "auto" and self._auto_raw:
            # Raw, the label after a space: on 22 phrasings (half with trailing
            # whitespace) this beat chat, the former trailing-space rule and a
            # choice by label mass, and it cannot depend on invisible spaces
            # (benchmarks/prompt_modes.py, RESULTS.md).  Few-shot examples
            # placed as chat turns are a chat by nature.
            return has_template and getattr(self, "example_placement", None) == "turns"
        if self.use_chat_template == "auto":
            # Multi-label's yes/no questions (not measured under the rule above):
            # a template ending with a space is a completion, others a chat turn.
            return has_template and not trailing_space(self.prompt_)
        return self.use_chat_template

    def prompt_mode(self):
        """How the prompt goes to the model, and why, in a few words.

        Returns
        -------
        (str, str)
            ``'raw'`` or ``'chat'``, and e.g. ``"sent raw: the prompt ends
            with a space"``.
        """
        check_fitted(self, "use_chat_template_")
        if self.use_chat_template_:
            if self.use_chat_template == "auto" and not self._auto_raw:
                return "chat", ("sent as chat: the prompt does not end with a space "
                                "(use_chat_template='auto')")
            if self.use_chat_template == "auto":
                return "chat", "sent as chat turns (example_placement='turns')"
            return "chat", "sent as a chat message (use_chat_template=True)"
        if self.model_.config.is_encoder_decoder:
            return "raw", "sent raw to the encoder; the label is the decoder's answer"
        if self.use_chat_template == "auto" and self._auto_raw:
            return "raw", "sent raw, the label after a space (use_chat_template='auto')"
        if self.use_chat_template == "auto":
            return "raw", "sent raw: the prompt ends with a space (use_chat_template='auto')"
        return "raw", "sent raw as typed (use_chat_template=False, skorch's scoring)"

    def _prompt_fields(self):
        return {"labels": [self._word(c) for c in self.classes_.tolist()]}

    def _renderer(self):
        return self._prompt_renderer(self._prompt_fields())

    def _prompt_renderer(self, fields):
        return PromptRenderer(
            self.prompt_, fields, self.tokenizer_, self.use_chat_template_,
            strip_end=self._prompt_cut(),
        )

    @property
    def device_(self):
        """The device the model runs on."""
        check_fitted(self, "loaded_")
        return self.loaded_.device

    # ---------------------------------------------------------- prompting
    def get_prompt(self, text):
        """Return the exact prompt string the model sees for ``text``."""
        check_fitted(self, "loaded_")
        text = _repair_unicode([text])[0] if isinstance(text, str) else text
        return self._renderer().for_texts([text])[0].render(text)

    def _text_scorer(self):
        """The engine's text-level scorer, set up as this estimator says."""
        return TextScorer(
            self.loaded_, use_chat_template=self.use_chat_template_,
            truncation=self.truncation, use_caching=self.use_caching,
            disk_cache=self.disk_cache_, batch_size=self.batch_size,
        )

    def prompt_token_ids(self, X):
        """The token ids of each text's prompt, as scored (after truncation)."""
        check_fitted(self, "loaded_")
        return self._text_scorer().encode(_check_texts(X), self._renderer(), self.label_ids_)

    # ------------------------------------------------------------ scoring
    def label_logprobs(self, X, on_rows=None, *, positions=None):
        """log P(label | prompt) per sample and class, streamed as rows finish.

        This is the method the notebook layer builds on: results come from
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
        check_fitted(self, "loaded_")
        return self._logprobs_for(_check_texts(X), self._renderer(), self.label_ids_,
                                  on_rows, positions=positions)

    def _logprobs_for(self, texts, renderer, label_ids, on_rows=None, progress=None,
                      positions=None):
        """Score ``label_ids`` after ``renderer``'s prompts; count cache lookups."""
        scorer = self._text_scorer()
        try:
            return scorer.score(texts, renderer, label_ids, on_rows,
                                self.progress if progress is None else progress, positions)
        finally:
            self.n_cache_hits_ += scorer.hits
            self.n_cache_misses_ += scorer.misses

    def generate(self, text, max_new_tokens=20):
        """The model's free, greedy continuation of the rendered prompt.

        Shows what the model would say if it were not constrained to the
        labels; useful to debug a prompt.
        """
        check_fitted(self, "loaded_")
        text = _check_texts([text])[0]
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
        return persistence.light_state(self, dict(self.__dict__))

    def __getattr__(self, name):
        # Only reached when normal lookup fails: the model of an unpickled
        # estimator loads on first use.
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
        saved = self.model, self.tokenizer
        try:
            # sklearn's repr prints parameter values; show class names, not
            # the model's full module tree.
            self.model = _Named(type(saved[0]).__name__) if saved[0] is not None else None
            self.tokenizer = (
                _Named(type(saved[1]).__name__) if saved[1] is not None else None
            )
            return super().__repr__(N_CHAR_MAX)
        finally:
            self.model, self.tokenizer = saved


class _SingleLabelBase(_LLMBase):
    """Zero- and few-shot: the labels compete in one distribution, with
    skorch's low-probability policy and optional calibration."""

    _auto_raw = True

    def _check_params(self):
        super()._check_params()
        options.check_error_low_prob(self.error_low_prob)
        options.check_threshold_low_prob(self.threshold_low_prob)
        options.CALIBRATION.validate(self.calibration)
        if self.calibration is not None and not self.probas_sum_to_1:
            raise OptionError(
                f"{options.CALIBRATION.setting(self.calibration)} gives normalised "
                "probabilities; it cannot be combined with "
                f"{options.PROBAS_SUM_TO_1.setting(False)}", option="calibration")

    def _set_classes(self, labels):
        super()._set_classes(labels)
        if len(self.classes_) == 1 and self.probas_sum_to_1:
            warn(
                f"Only one label ({self._word(self.classes_[0])!r}): normalised over "
                "the labels, its probability is always 1; use "
                f"{options.PROBAS_SUM_TO_1.setting(False)} for the model's own "
                "probability, or add labels"
            )
        # Depends on the classes, prompt and examples: computed on first use.
        self._reference = None

    # --------------------------------------------------------- prediction
    def label_mass(self, logprobs):
        """The model's total probability of all labels, per row."""
        return np.exp(logprobs).sum(axis=1)

    def low_probability_rows(self, logprobs):
        """Rows whose label mass is under ``threshold_low_prob``, after raising
        or warning as ``error_low_prob`` says.

        Raises
        ------
        LowProbabilityError
            If a row's label mass is zero, or below the threshold with
            ``error_low_prob='raise'``.
        """
        totals = self.label_mass(logprobs)
        if np.any(totals == 0.0):
            raise LowProbabilityError("The sum of all probabilities is zero.")
        low = totals < self.threshold_low_prob
        if low.any() and self.error_low_prob == "raise":
            raise LowProbabilityError(
                f"The sum of all probabilities is {totals[low][0]:.3f}, "
                f"which is below the minimum threshold of {self.threshold_low_prob:.3f}"
            )
        if low.any() and self.error_low_prob == "warn":
            warn(
                f"Found {int(low.sum())} sample(s) to have a total probability "
                f"below the threshold of {self.threshold_low_prob:.3f}."
            )
        return low

    def predict_proba(self, X):
        """Probability of each class (columns follow ``classes_``).

        Parameters
        ----------
        X : list-like of str

        Returns
        -------
        numpy.ndarray of shape (n_samples, n_classes)
            Normalised to sum to 1 per row unless ``probas_sum_to_1=False``;
            then each entry is the model's exact probability of that label.

        Raises
        ------
        LowProbabilityError
            If a row's total label probability is zero, or below
            ``threshold_low_prob`` with ``error_low_prob='raise'``.
        """
        logprobs = self.label_logprobs(X)
        self.low_probability_rows(logprobs)
        return self.probas_from_logprobs(logprobs)

    def probas_from_logprobs(self, logprobs):
        """Turn label log-probabilities into this estimator's probabilities:
        exact (``probas_sum_to_1=False``) or normalised and calibrated."""
        if not self.probas_sum_to_1:
            return np.exp(logprobs)
        return calibrate(logprobs, self.calibration, self.calibration_reference_)

    def predictions_from_logprobs(self, logprobs, low=None):
        """The predicted class per row from label log-probabilities.

        ``low`` marks low-probability rows (see :meth:`low_probability_rows`);
        with ``error_low_prob='return_none'`` they predict None.
        """
        probas = self.probas_from_logprobs(logprobs)
        if self.error_low_prob != "return_none":
            return self.classes_[probas.argmax(axis=1)]
        return single_label_predictions(self.classes_, probas, low, return_none=True)

    def _fit_calibration(self, X, y):
        """calibration='fit': learn scale and bias from labelled texts X, y."""
        if X is None or isinstance(X, (str, bytes)) or len(X) == 0:
            raise OptionError(
                "calibration='fit' learns from labelled texts: pass them to "
                "fit(X, y) (X the texts, y their labels); got no texts",
                option="calibration")
        _check_same_length(X, y)
        logprobs = self.label_logprobs(X)
        index = {str(c): i for i, c in enumerate(self.classes_)}
        start = -content_free_reference(self.calibration_logprobs())
        self.calibration_fit_ = fit_scale_and_bias(
            logprobs, np.array([index[str(label)] for label in y]), start=start)

    @property
    def calibration_reference_(self):
        """Log of the mean normalised label distribution for content-free
        texts: what ``calibration='content_free'`` divides by (None otherwise)."""
        check_fitted(self, "loaded_")
        if self.calibration == "fit":
            check_fitted(self, "calibration_fit_")
            return self.calibration_fit_
        if self.calibration != "content_free":
            return None
        if self._reference is None:
            self._reference = content_free_reference(self.calibration_logprobs())
        return self._reference

    def calibration_logprobs(self):
        """Label log-probabilities of the content-free texts ("N/A", "", "[MASK]").

        Their normalised mean is what ``calibration='content_free'`` divides by;
        it shows how biased the prompt is before seeing any text.
        """
        check_fitted(self, "loaded_")
        return self.label_logprobs(list(CONTENT_FREE_TEXTS))

    def predict(self, X):
        """The most probable class per sample (None for low-probability rows
        when ``error_low_prob='return_none'``)."""
        logprobs = self.label_logprobs(X)
        return self.predictions_from_logprobs(logprobs, self.low_probability_rows(logprobs))


class _Named:
    """Shows a model object as its quoted class name, as skorch's repr does."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return repr(self.name)
