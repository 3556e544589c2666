"""What every nbllm classifier shares: parameter checks, model loading,
scoring through the engine, and the low-probability policy.

The classifiers (:mod:`.zero_shot`, :mod:`.few_shot`, :mod:`.multi_label`)
follow skorch.llm's names and semantics, and scikit-learn's estimator
contract: ``__init__`` only stores its arguments, ``fit`` validates them and
loads the (shared) model, and fitted state ends in ``_``.
"""

import numbers
import os
import re
import warnings
from collections.abc import Mapping

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

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
from ..engine.result_cache import disk_cache, result_cache, result_key
from ..exceptions import LowProbabilityError
from .calibration import (
    CALIBRATIONS,
    CONTENT_FREE_TEXTS,
    calibrate,
    content_free_reference,
)

ERROR_LOW_PROB_VALUES = ("ignore", "raise", "warn", "return_none")
TRUNCATIONS = ("right", "left", "middle", "error")
# Prompts are tokenized and scored this many at a time, so a 100k-row job
# never holds every prompt's token ids at once.
_CHUNK = 2048
# Progress bars appear from this many batches on ('auto').
_PROGRESS_MIN_BATCHES = 4


def _check_texts(X):
    """Return X as a list of str, or raise a ValueError that says what is wrong."""
    if isinstance(X, (str, bytes)):
        raise ValueError(
            "X must be a list-like of texts, got a single string; wrap it in a "
            "list: [text]"
        )
    if X is None:
        raise ValueError("X must be a list-like of texts, got None")
    texts = list(X.ravel()) if isinstance(X, np.ndarray) else list(X)
    bad = [i for i, x in enumerate(texts) if is_missing(x)]
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        raise ValueError(
            f"X contains {len(bad)} missing value(s) (None or NaN) at position(s) "
            f"{shown}; drop or fill them first"
        )
    converted = sum(not isinstance(x, str) for x in texts)
    if converted:
        warnings.warn(
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
        warnings.warn(
            f"{len(bad)} text(s) contain invalid Unicode (lone surrogates); those "
            "characters were replaced with U+FFFD"
        )
        texts = list(texts)
        for i in bad:
            texts[i] = _SURROGATES.sub("\ufffd", texts[i])
    return texts


class _LLMClassifierBase(ClassifierMixin, BaseEstimator):
    """Shared machinery: parameter checks, model loading, scoring and policies."""

    _placeholders = ZERO_SHOT_PLACEHOLDERS
    _default_prompt = DEFAULT_PROMPT_ZERO_SHOT
    # Labels share one normalised distribution (not so for multi-label).
    _labels_compete = True

    # ------------------------------------------------------------------ fit
    def _check_params(self):
        name = type(self).__name__
        if self.model_name is not None and (
            self.model is not None or self.tokenizer is not None
        ):
            raise ValueError(
                f"{name} needs to be initialized with either a model name, "
                "or a model & tokenizer, but not both."
            )
        if (self.model is None) != (self.tokenizer is None):
            # skorch's sentence first, so code matching skorch's message works.
            raise ValueError(
                f"{name} needs to be initialized with either a model name, "
                "or a model & tokenizer, but not both. It needs both model and "
                "tokenizer when one of them is passed; got only the "
                + ("model" if self.model is not None else "tokenizer")
            )
        if self.error_low_prob not in ERROR_LOW_PROB_VALUES:
            raise ValueError(
                "error_low_prob must be one of "
                f"{', '.join(ERROR_LOW_PROB_VALUES)}; got {self.error_low_prob} "
                "instead"
            )
        if not isinstance(self.threshold_low_prob, numbers.Real) or not (
            0 <= self.threshold_low_prob <= 1
        ):
            raise ValueError(
                "threshold_low_prob must be between 0 and 1, "
                f"got {self.threshold_low_prob!r} instead"
            )
        if self.use_chat_template not in ("auto", True, False):
            raise ValueError(
                "use_chat_template must be 'auto', True or False; "
                f"got {self.use_chat_template!r}"
            )
        if self.batch_size != "auto" and not (
            isinstance(self.batch_size, numbers.Integral)
            and not isinstance(self.batch_size, bool)
            and self.batch_size >= 1
        ):
            raise ValueError(
                f"batch_size must be 'auto' or a positive integer; got {self.batch_size!r}"
            )
        if self.progress not in ("auto", True, False):
            raise ValueError(
                f"progress must be 'auto', True or False; got {self.progress!r}"
            )
        if self.cache_dir is not None and not isinstance(self.cache_dir, (str, os.PathLike)):
            raise ValueError(
                f"cache_dir must be a folder path or None; got {self.cache_dir!r}"
            )
        if self.calibration not in CALIBRATIONS:
            raise ValueError(
                "calibration must be None, 'content_free' or 'batch'; "
                f"got {self.calibration!r}"
            )
        if self.calibration is not None and not self.probas_sum_to_1:
            raise ValueError(
                f"calibration={self.calibration!r} gives normalised probabilities; "
                "it cannot be combined with probas_sum_to_1=False"
            )
        if self.truncation not in TRUNCATIONS:
            raise ValueError(
                "truncation must be 'right', 'left', 'middle' or 'error'; "
                f"got {self.truncation!r}"
            )
        if self.label_map is not None and not (
            isinstance(self.label_map, Mapping)
            and all(isinstance(w, str) and w.strip() for w in self.label_map.values())
        ):
            raise ValueError(
                "label_map must be a dict from class to the non-empty word the model "
                f"scores, e.g. {{'pos': 'positive'}}; got {self.label_map!r}"
            )
        if self.prompt is not None and not isinstance(self.prompt, str):
            raise ValueError(
                f"prompt must be a string or None; got {type(self.prompt).__name__}"
            )

    def _fit_common(self, y):
        """Load the model and derive everything that depends on the labels."""
        self._check_params()
        if y is None:
            raise ValueError(
                "y cannot be None, as it is used to infer the existing classes"
            )
        y = np.asarray(y)
        if len(y) == 0:
            raise ValueError("y must contain at least one label; got an empty list")
        if not isinstance(y[0], str) and self.label_map is None:
            warnings.warn(
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
        self._set_classes(y)
        return y

    def _set_classes(self, labels):
        """Set ``classes_`` and their token ids (used by fit and by callers that
        widen a few-shot label set beyond the labels of the examples)."""
        self.classes_ = np.unique(labels)
        words = [self._word(c) for c in self.classes_]
        if len(set(words)) < len(words):
            repeated = sorted({w for w in words if words.count(w) > 1})
            raise ValueError(
                "label_map maps several classes to the same word: "
                + ", ".join(repr(w) for w in repeated)
            )
        self.label_ids_ = [self._label_ids(w) for w in words]
        if len(words) == 1 and self.probas_sum_to_1 and self._labels_compete:
            warnings.warn(
                f"Only one label ({words[0]!r}): normalised over the labels, its "
                "probability is always 1; use probas_sum_to_1=False for the "
                "model's own probability, or add labels"
            )
        # Depends on the classes, prompt and examples: computed on first use.
        self._reference = None

    def _word(self, label):
        """The text the model scores for a class (``label_map`` or the class)."""
        if self.label_map is not None and label in self.label_map:
            return self.label_map[label]
        return str(label)

    def _label_ids(self, label):
        text = str(label)
        if not text.strip():
            raise ValueError(
                f"labels must be non-empty strings; got {text!r} in the classes"
            )
        ids = label_token_ids(self.tokenizer_, text, self._label_prefix())
        # A label whose own tokens are none (e.g. only characters the
        # tokenizer drops) would be scored as the bare prefix space.
        if not ids or not self.tokenizer_(text, add_special_tokens=False)["input_ids"]:
            raise ValueError(f"label {text!r} tokenizes to no tokens")
        eos = self.tokenizer_.eos_token_id
        if self.model_.config.is_encoder_decoder and eos is not None:
            # A decoder's answer is the whole label and then its end: scoring
            # the end too (as skorch does) keeps a short label from winning
            # just because a longer one starts with it.
            ids = [*ids, eos]
        return ids

    def _label_prefix(self):
        """The spaces that end a raw prompt belong to the label (see prompts).

        Not so for an encoder-decoder model: its label starts the decoder's
        own sequence instead of continuing the prompt.
        """
        if self.use_chat_template_ or self.model_.config.is_encoder_decoder:
            return ""
        return trailing_space(self.prompt_)

    def _resolve_chat_template(self):
        has_template = bool(getattr(self.tokenizer_, "chat_template", None))
        if self.use_chat_template is True and not has_template:
            raise ValueError(
                "use_chat_template=True, but the tokenizer has no chat template; "
                "use 'auto' or False"
            )
        if self.use_chat_template == "auto":
            # A template that ends with a space ("Label: ") is a completion
            # prompt: the label continues it directly, which a chat turn
            # would break.  Other templates are instructions for a chat model.
            return has_template and not trailing_space(self.prompt_)
        return self.use_chat_template

    def _prompt_fields(self):
        return {"labels": [self._word(c) for c in self.classes_.tolist()]}

    def _renderer(self):
        return self._prompt_renderer(self._prompt_fields())

    def _prompt_renderer(self, fields):
        return PromptRenderer(
            self.prompt_, fields, self.tokenizer_, self.use_chat_template_,
            strip_end=len(self._label_prefix()),
        )

    @property
    def device_(self):
        """The device the model runs on."""
        check_is_fitted(self, "loaded_")
        return self.loaded_.device

    # ---------------------------------------------------------- prompting
    def get_prompt(self, text):
        """Return the exact prompt string the model sees for ``text``."""
        check_is_fitted(self, "loaded_")
        text = _repair_unicode([text])[0] if isinstance(text, str) else text
        return self._renderer().for_texts([text])[0].render(text)

    def _encode(self, texts, renderer, label_ids=None, positions=None):
        """Token ids of each prompt, cutting texts that do not fit the context.

        The template and the labels are kept whole; only the sample's text is
        shortened, as ``truncation`` says, and a warning counts the cut
        samples.  ``positions`` are the texts' positions in the caller's
        input, for error messages (default 0, 1, ...).
        """
        label_ids = self.label_ids_ if label_ids is None else label_ids
        special = not self.use_chat_template_
        renderers = renderer.for_texts(texts)
        ids = self.tokenizer_(
            [r.render(t) for r, t in zip(renderers, texts)], add_special_tokens=special
        )["input_ids"]
        context = self.loaded_.context_length
        limit = context - max(len(i) for i in label_ids)
        too_long = [i for i, row in enumerate(ids) if len(row) > limit]
        if too_long and self.truncation == "error":
            first = too_long[0]
            raise ValueError(
                f"{len(too_long)} sample(s) do not fit the model's context of {context} "
                f"tokens; the first, at position "
                f"{first if positions is None else positions[first]}, needs "
                f"{len(ids[first])} prompt tokens plus "
                f"{context - limit} for the longest label.  Shorten the texts or "
                "use truncation='right', 'left' or 'middle'"
            )
        for i in too_long:
            ids[i] = self._truncate(texts[i], renderers[i], limit)
        if too_long:
            where = {"right": "at the end", "left": "at the start",
                     "middle": "in the middle"}[self.truncation]
            warnings.warn(
                f"{len(too_long)} sample(s) did not fit the model's context of "
                f"{context} tokens; their text was cut {where} so that the prompt "
                "template and the labels fit"
            )
        return [list(r) for r in ids]

    def _truncate(self, text, renderer, limit):
        special = not self.use_chat_template_
        encode = lambda s: self.tokenizer_(s, add_special_tokens=special)["input_ids"]
        base = len(encode(renderer.render("")))
        if base >= limit:
            raise ValueError(
                f"The prompt template takes {base} tokens and the longest label "
                f"{self.loaded_.context_length - limit}, which leaves no room for "
                f"the text in the model's context of {self.loaded_.context_length} "
                "tokens; shorten the prompt or use fewer examples"
            )
        text_ids = self.tokenizer_(text, add_special_tokens=False)["input_ids"]
        keep = max(0, limit - base - 1)
        while True:
            ids = encode(renderer.render(self._cut(text_ids, keep)))
            if len(ids) <= limit or keep == 0:
                return ids
            # Re-tokenizing at the cut can merge differently; step back and retry.
            keep = max(0, keep - max(4, len(ids) - limit))

    def _cut(self, text_ids, keep):
        """The text of ``keep`` of its tokens, taken as ``truncation`` says."""
        decode = self.tokenizer_.decode
        if self.truncation == "right":
            return decode(text_ids[:keep])
        if self.truncation == "left":
            return decode(text_ids[len(text_ids) - keep:]) if keep else ""
        # 'middle': keep both ends, marked where the text was cut.
        head = max(0, (keep - 1) // 2)
        tail = max(0, keep - 1 - head)
        return (decode(text_ids[:head]) + "\u2026"
                + (decode(text_ids[len(text_ids) - tail:]) if tail else ""))

    # ------------------------------------------------------------ scoring
    def _label_logprobs(self, X, on_rows=None, *, renderer=None, label_ids=None,
                        progress=None, positions=None):
        """log P(label | prompt) for each sample and class, using the result cache.

        Parameters
        ----------
        X : list-like of str
        on_rows : callable or None
            Called as ``on_rows(rows, logprobs)`` whenever results for some
            rows of X are ready (cached rows first, then per batch).  It may
            raise to stop the run; finished batches stay in the cache.
        renderer, label_ids : optional
            Another prompt or other continuations to score than the
            estimator's own (the multi-label classifier asks per label).
        progress : optional
            Overrides ``self.progress`` for this call.
        positions : sequence of int, optional
            Where each text of X sits in the caller's data (error messages).
        """
        check_is_fitted(self, "loaded_")
        texts = _check_texts(X)
        renderer = self._renderer() if renderer is None else renderer
        label_ids = self.label_ids_ if label_ids is None else label_ids
        out = np.empty((len(texts), len(label_ids)), dtype=np.float64)
        special = not self.use_chat_template_
        head = self.tokenizer_(renderer.head(), add_special_tokens=special)["input_ids"]
        from ..engine.scorer import LabelScorer

        scorer = LabelScorer(self.loaded_)
        bar = _ProgressBar(self.progress if progress is None else progress, len(texts))
        try:
            for start in range(0, len(texts), _CHUNK):

                def report(rows, values, start=start):
                    rows = start + np.asarray(rows, dtype=np.int64)
                    out[rows] = values
                    bar.update(len(rows))
                    if on_rows is not None:
                        on_rows(rows, values)

                where = (range(len(texts)) if positions is None else positions)
                self._score_chunk(texts[start:start + _CHUNK], renderer, label_ids,
                                  head, scorer, report, bar,
                                  where[start:start + _CHUNK])
        finally:
            bar.close()
        return out

    def _score_chunk(self, texts, renderer, label_ids, head, scorer, report, bar,
                     positions=None):
        """Score one chunk; ``report(rows, logprobs)`` receives every row."""
        ids = self._encode(texts, renderer, label_ids, positions)
        keys = [result_key(self.loaded_.fingerprint, row, label_ids) for row in ids]
        found = (result_cache.get_many(keys, disk=self.disk_cache_) if self.use_caching
                 else [None] * len(keys))
        rows_of = {}  # key -> rows with that prompt; duplicates are scored once
        for i, (key, value) in enumerate(zip(keys, found)):
            if value is None:
                rows_of.setdefault(key, []).append(i)
        done = [i for i, value in enumerate(found) if value is not None]
        if self.use_caching:
            self.n_cache_hits_ += len(done)
            self.n_cache_misses_ += len(keys) - len(done)
        if done:
            report(done, np.stack([found[i] for i in done]))
        if not rows_of:
            return
        todo = list(rows_of)

        def on_batch(indices, values):
            batch_keys = [todo[j] for j in indices]
            if self.use_caching:
                result_cache.put_many(batch_keys, values, disk=self.disk_cache_)
            counts = [len(rows_of[k]) for k in batch_keys]
            report([r for k in batch_keys for r in rows_of[k]],
                   np.repeat(values, counts, axis=0))

        scorer.score(
            [ids[rows_of[k][0]] for k in todo], label_ids, self.batch_size, head,
            on_batch=on_batch, progress=lambda n_batches, n: bar.start(n_batches),
        )

    # --------------------------------------------------------- prediction
    def _raw_probas(self, X):
        """Unnormalised label probabilities, after the low-probability checks."""
        logprobs = self._label_logprobs(X)
        return self._apply_low_prob_policy(np.exp(logprobs), logprobs)

    def _apply_low_prob_policy(self, probas, logprobs):
        """Raise or warn per ``error_low_prob``; return (probas, logprobs, low rows)."""
        totals = probas.sum(axis=1)
        if np.any(totals == 0.0):
            raise LowProbabilityError("The sum of all probabilities is zero.")
        low = totals < self.threshold_low_prob
        if low.any() and self.error_low_prob == "raise":
            raise LowProbabilityError(
                f"The sum of all probabilities is {totals[low][0]:.3f}, "
                f"which is below the minimum threshold of {self.threshold_low_prob:.3f}"
            )
        if low.any() and self.error_low_prob == "warn":
            warnings.warn(
                f"Found {int(low.sum())} sample(s) to have a total probability "
                f"below the threshold of {self.threshold_low_prob:.3f}."
            )
        return probas, logprobs, low

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
        _, logprobs, _ = self._raw_probas(X)
        return self.probas_from_logprobs(logprobs)

    def probas_from_logprobs(self, logprobs):
        """Turn label log-probabilities into this estimator's probabilities:
        exact (``probas_sum_to_1=False``) or normalised and calibrated."""
        if not self.probas_sum_to_1:
            return np.exp(logprobs)
        return calibrate(logprobs, self.calibration, self.calibration_reference_)

    @property
    def calibration_reference_(self):
        """Log of the mean normalised label distribution for content-free
        texts: what ``calibration='content_free'`` divides by (None otherwise)."""
        check_is_fitted(self, "loaded_")
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
        check_is_fitted(self, "loaded_")
        return self._label_logprobs(list(CONTENT_FREE_TEXTS))

    def predict(self, X):
        """The most probable class per sample (None for low-probability rows
        when ``error_low_prob='return_none'``)."""
        _, logprobs, low = self._raw_probas(X)
        y_pred = self.classes_[self.probas_from_logprobs(logprobs).argmax(axis=1)]
        if self.error_low_prob == "return_none":
            y_pred = y_pred.astype(object)
            y_pred[low] = None
        return y_pred

    def generate(self, text, max_new_tokens=20):
        """The model's free, greedy continuation of the rendered prompt.

        Shows what the model would say if it were not constrained to the
        labels; useful to debug a prompt.
        """
        import torch

        check_is_fitted(self, "loaded_")
        ids = self._encode(_check_texts([text]), self._renderer())[0]
        input_ids = torch.tensor([ids], device=self.loaded_.device)
        tok = self.tokenizer_
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with torch.inference_mode():
            out = self.model_.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
            )
        # An encoder-decoder model returns the decoder's sequence only.
        new = out[0] if self.model_.config.is_encoder_decoder else out[0, len(ids):]
        return tok.decode(new, skip_special_tokens=True)

    def clear_model_cache(self):
        """Empty the result cache (shared by every estimator in the process)
        and this estimator's disk cache, if it has one."""
        result_cache.clear()
        if getattr(self, "disk_cache_", None) is not None:
            self.disk_cache_.clear()

    # ------------------------------------------------------ sklearn glue
    def __sklearn_clone__(self):
        # Model and tokenizer objects are shared, not deep-copied: a clone in
        # GridSearchCV must not duplicate gigabytes of weights.
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


class _ProgressBar:
    """One tqdm bar for a whole call, however many chunks it scores.

    With ``policy='auto'`` the bar appears once a chunk needs four batches or
    more, or the call spans several chunks.
    """

    def __init__(self, policy, total):
        self.policy, self.total, self.done, self.bar = policy, total, 0, None

    def start(self, n_batches):
        wanted = self.policy is True or (
            self.policy == "auto"
            and (n_batches >= _PROGRESS_MIN_BATCHES or self.total > _CHUNK)
        )
        if wanted and self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=self.done, desc="nbllm",
                            unit="text")

    def update(self, n):
        self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _Named:
    """Shows a model object as its quoted class name, as skorch's repr does."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return repr(self.name)


_COMMON_DOC = """
    Parameters
    ----------
    model_name : str or None, default=None
        ``"smollm2-135m"`` (the embedded model), a path to a ``.gguf`` file, a
        Hugging Face model id (from the local cache) or a model folder.  None
        with no ``model`` means the embedded model.
    model, tokenizer : objects or None, default=None
        An already loaded causal LM and its tokenizer, instead of ``model_name``.
    prompt : str or None, default=None
        A format string with {placeholders}; None uses {default}.
    probas_sum_to_1 : bool, default=True
        Normalise each row over the labels.  With False, each value is the
        model's exact probability of the label; the rest of the mass went to
        other continuations.
    device : {{'auto', 'cpu', 'cuda', 'cuda:N'}}, default='auto'
    dtype : {{'auto', 'float32', 'float16', 'bfloat16'}}, default='auto'
        'auto' is bfloat16 on CUDA where supported, else float32.
    error_low_prob : {{'ignore', 'warn', 'raise', 'return_none'}}, default='ignore'
        What to do when a row's total label probability is below
        ``threshold_low_prob``.  A total of exactly zero always raises.
    threshold_low_prob : float in [0, 1], default=0.0
    use_caching : bool, default=True
        Reuse results for prompts seen before (same model, prompt and labels).
    use_chat_template : {{'auto', True, False}}, default='auto'
        Send the prompt as a user chat message (True) or raw (False).  'auto'
        sends completion prompts, those that end with a space such as the
        defaults' "Label: ", raw, and other prompts as a chat message when
        the tokenizer has a chat template.
    batch_size : int or 'auto', default='auto'
        Prompts per forward pass; 'auto' fills a per-device token budget.
    progress : {{'auto', True, False}}, default='auto'
        Show a tqdm progress bar ('auto': on runs of four batches or more).
    calibration : {{None, 'content_free', 'batch'}}, default=None
        Correct the prompt's bias towards some labels (see
        :mod:`nbllm.estimators.calibration`): divide by the label probabilities for
        content-free texts, or by the mean over the samples of one predict
        call (predictions then depend on the call's other samples).  Needs
        ``probas_sum_to_1=True``.
    label_map : dict or None, default=None
        Maps a class (as in ``y``) to the word the model scores and the prompt
        shows, e.g. ``{{'pos': 'positive'}}``; classes not in the map are used
        as they are.  ``classes_`` and predictions keep the codes.
    truncation : {{'right', 'left', 'middle', 'error'}}, default='right'
        A text too long for the model's context is cut at its end ('right'),
        its start ('left') or in its middle ('middle', marked with an
        ellipsis), keeping the template and labels whole, with a warning that
        counts the cut texts; 'error' raises instead.
    trust_remote_code : bool, default=False
        Let transformers run Python code shipped with a Hub model.  Only set
        it for models whose code you trust.
    cache_dir : str, path or None, default=None
        Keep results in ``<cache_dir>/results.sqlite`` too, so reruns in new
        processes are instant and interrupted jobs resume.  None uses
        ``$NBLLM_CACHE_DIR`` when it is set, else memory only.
"""
