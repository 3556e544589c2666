"""Why this label: each word's contribution, measured by the exact engine.

A perturbation method, not a gradient one: a word's contribution is how much
the explained quantity changes when the word is taken out of the text.  Every
perturbed text is scored exactly as a text to classify (same prompt, same
examples, same labels), in one batched call per prompt renderer, so the
engine's prompt tree (:mod:`nbllm.engine.scoring.prompt_tree`) computes each
occluded copy's prompt once up to the removed word.

* ``method='occlusion'`` (the default): ``f(text) - f(text without word i)``,
  one perturbed text per word.
* ``method='shapley'``: Shapley-value sampling (Strumbelj and Kononenko):
  ``n_samples`` random orders, adding the words one at a time to the empty
  text; a word's value is its mean marginal change.  The values add up to
  ``f(text) - f(empty text)``.

What is explained is what the estimator returns (see :func:`targets`).
Perturbed prompts go through a scorer without the result cache, memory or
disk: they are never asked for again, and would only push real results out.
"""

import math
import re

import numpy as np
from scipy.special import log_expit, logsumexp, softmax

from ..engine import status
from ..engine.scoring.prompts import is_missing
from ..engine.scoring.text_scorer import TextScorer
from ..exceptions import OptionError, TextsError
from .explanation import Explanation, RowExplanation

METHODS = ("occlusion", "shapley")
# Texts with more words than this are explained over spans: sentences when
# there are few enough of them, else runs of consecutive words.
MAX_FEATURES = 40
# Shapley sampling's default number of random orders.
N_SAMPLES = 10
# The prompt tree's span threshold for explain's calls: a tweet's occluded copies
# share runs of a few to a dozen tokens, and at the engine's default (16) each becomes
# a forward pass of its own, 1.5 times the CPU of no sharing; sparing 128 positions
# per span it was 0.83 CPU s per tweet against 1.02 without sharing
# (benchmarks/RESULTS.md, issue 39).
MIN_SAVING = 128

_WORD = re.compile(r"\S+")
# A sentence ends at . ! ? (or a run of them) before white space, or at a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")

EMPTY = "not explained: the text is empty (no words)"
MISSING = "not explained: the text is missing (None or NaN)"
TOO_LONG = ("not explained: its prompt needs {need} tokens, more than the model's "
            "context of {context} leaves ({limit}); shorten the text")
ONE_WORD = "one word: its contribution is the change from the empty text"


def words(text):
    """The (start, end) character offsets of each word (a run of non-space)."""
    return [m.span() for m in _WORD.finditer(text)]


def features(text, max_features=MAX_FEATURES):
    """The units a text is explained over, and how they were grouped.

    Returns
    -------
    spans : list of (int, int)
        Character offsets of each unit, in text order.
    grouping : str
        'words', 'sentences' or 'groups of N words'.
    """
    spans = words(text)
    if len(spans) <= max_features:
        return spans, "words"
    sentences = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        piece = text[start:m.start()]
        if piece.strip():
            sentences.append(_trim(text, start, m.start()))
        start = m.end()
    if text[start:].strip():
        sentences.append(_trim(text, start, len(text)))
    if 1 < len(sentences) <= max_features:
        return sentences, "sentences"
    size = math.ceil(len(spans) / max_features)
    groups = [(spans[i][0], spans[min(i + size, len(spans)) - 1][1])
              for i in range(0, len(spans), size)]
    return groups, f"groups of {size} words"


def _trim(text, start, end):
    piece = text[start:end]
    return start + len(piece) - len(piece.lstrip()), end - len(piece) + len(piece.rstrip())


def without(text, spans, keep):
    """``text`` with the units whose ``keep`` is false taken out.

    The removal rule, the same for every method and for the deletion test: a
    unit goes with the white space before it (the first kept unit's own
    leading space is dropped), and the text's own leading and trailing white
    space stays.
    """
    if not spans:
        return text
    head = text[:spans[0][0]]
    tail = text[spans[-1][1]:]
    pieces = []
    for i, (start, end) in enumerate(spans):
        if keep[i]:
            before = text[spans[i - 1][1]:start] if i else ""
            pieces.append(before + text[start:end])
    body = "".join(pieces).lstrip() if pieces else ""
    return head + body + tail if body else ""


class _KeptText(str):
    """A perturbed text that keeps the prompt renderer of the text it came
    from, so that with 'similar' or 'grouped' few-shot it is shown the
    original's examples, not examples chosen for the perturbed words."""

    __slots__ = ("renderer",)


class _KeptRenderers:
    """A prompt renderer that renders each :class:`_KeptText` with its own."""

    def __init__(self, base):
        self.base = base

    def for_texts(self, texts):
        return [t.renderer for t in texts]

    def render(self, text):
        return text.renderer.render(text)

    def head(self):
        return self.base.head()


def _kept(text, renderer):
    out = _KeptText(text)
    out.renderer = renderer
    return out


def _coalitions(n, method, n_samples, rng):
    """The keep-masks to score for one text, and how to combine their values.

    Returns ``masks`` (bool array, row 0 the full text) and ``combine``, a
    function from the masks' target values (shape (len(masks), k)) to each
    unit's contribution (shape (n, k)).
    """
    full = np.ones(n, dtype=bool)
    if method == "occlusion":
        masks = np.vstack([full[None], ~np.eye(n, dtype=bool)])

        def combine(values):
            return values[0][None, :] - values[1:]

        return masks, combine
    orders = [rng.permutation(n) for _ in range(n_samples)]
    masks = [full]
    steps = []  # (unit, index of mask before, index of mask after)
    for order in orders:
        current = np.zeros(n, dtype=bool)
        masks.append(current.copy())
        before = len(masks) - 1
        for unit in order:
            current[unit] = True
            masks.append(current.copy())
            steps.append((unit, before, len(masks) - 1))
            before = len(masks) - 1

    def combine(values):
        out = np.zeros((n, values.shape[1]))
        for unit, before, after in steps:
            out[unit] += values[after] - values[before]
        return out / len(orders)

    return np.array(masks), combine


def check_method(method, n_samples, max_features):
    """Check explain's own options, before any work."""
    if method not in METHODS:
        raise OptionError(f"method must be one of {', '.join(map(repr, METHODS))}; "
                          f"got {method!r}", option="method")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise OptionError(f"n_samples must be a whole number of at least 1; got "
                          f"{n_samples!r}", option="n_samples")
    if (isinstance(max_features, bool) or not isinstance(max_features, int)
            or max_features < 1):
        raise OptionError(f"max_features must be a whole number of at least 1; got "
                          f"{max_features!r}", option="max_features")


def _texts(X):
    """X as a list of str or None (missing), with check_texts' rules otherwise."""
    from .inputs import as_sequence, check_texts

    if isinstance(X, (str, bytes)):
        raise TextsError("X must be a list-like of texts, got a single string; wrap it "
                         "in a list: [text]")
    if X is None:
        raise TextsError("X must be a list-like of texts, got None")
    rows = list(as_sequence(X))
    present = [i for i, x in enumerate(rows) if not is_missing(x)]
    checked = check_texts([rows[i] for i in present]) if present else []
    out = [None] * len(rows)
    for i, text in zip(present, checked):
        out[i] = text
    return out


def explain(estimator, X, *, method="occlusion", n_samples=N_SAMPLES,
            max_features=MAX_FEATURES, random_state=0):
    """Each word's contribution to the estimator's results for each text of X.

    See the estimators' ``explain`` (this is its body).
    """
    from .base import check_fitted

    check_fitted(estimator)
    check_method(method, n_samples, max_features)
    texts = _texts(X)
    rng = np.random.default_rng(random_state)
    multi = not hasattr(estimator, "probas_from_logprobs") or hasattr(
        estimator, "label_log_odds")
    renderers = ([estimator._renderer_for(c) for c in estimator.classes_] if multi
                 else [estimator._renderer()])
    scorer = TextScorer(estimator.loaded_, use_chat_template=estimator.prompt_mode_.chat,
                        truncation=estimator.truncation, use_caching=False,
                        disk_cache=None, batch_size=estimator.batch_size,
                        min_saving=MIN_SAVING)
    tokenizer = estimator.tokenizer_
    context = estimator.loaded_.context_length
    limit = context - max(len(ids) for ids in estimator.label_ids_)

    rows, plans, batch, owners = [], {}, [], []
    for i, text in enumerate(texts):
        row = RowExplanation(index=i, text=text)
        rows.append(row)
        if text is None:
            row.outcome = MISSING
            continue
        spans, grouping = features(text, max_features)
        if not spans:
            row.outcome = EMPTY
            continue
        row.spans, row.grouping = spans, grouping
        own = [r.for_texts([text])[0] for r in renderers]
        need = max(len(tokenizer(r.render(text), add_special_tokens=scorer.special)
                       ["input_ids"]) for r in own)
        if need > limit:
            row.outcome = TOO_LONG.format(need=need, context=context, limit=limit)
            row.spans = []
            continue
        if len(spans) == 1:
            row.outcome = ONE_WORD
        masks, combine = _coalitions(len(spans), method, n_samples, rng)
        plans[i] = (len(batch), len(masks), combine)
        for mask in masks:
            batch.append((without(text, spans, mask), own))
            owners.append(i)

    n_done = sum(1 for r in rows if r.spans)
    if batch:
        status.report(f"explaining {n_done} text(s) by {method}: scoring "
                      f"{len(batch)} prompts\u2026")
    scores = _score(estimator, scorer, renderers, batch, multi)
    names = [str(c) for c in estimator.classes_]
    note = None
    if not multi and estimator.calibration == "batch" and estimator.probas_sum_to_1:
        note = ("calibration='batch' makes each row depend on the others: the "
                "uncalibrated probabilities are explained")
    if not multi and len(names) == 1:
        note = ("one label: its normalised probability is always 1, so its own "
                "log-probability is explained (as probas_sum_to_1=False gives it)")
    for i, (start, count, combine) in plans.items():
        logp, log_odds, predicted = targets(estimator, scores[start:start + count], multi)
        row = rows[i]
        row.predicted = names[predicted]
        row.probability = float(np.exp(logp[0, predicted]))
        values = np.column_stack([log_odds[:, None], logp])
        contributions = combine(values)
        row.contributions = contributions[:, 0]
        row.label_contributions = contributions[:, 1:]
    return Explanation(rows=rows, labels=names, method=method,
                       target=("each label's own log-odds" if multi else
                               "the predicted label's log-odds against the rest"),
                       note=note, n_samples=n_samples if method == "shapley" else None)


def _score(estimator, scorer, renderers, batch, multi):
    """The scores of every perturbed text: label log-probabilities (one
    call), or multi-label's log-odds (one call per label)."""
    if not batch:
        return np.zeros((0, len(estimator.classes_)))
    progress = estimator.progress
    if not multi:
        texts = [_kept(text, own[0]) for text, own in batch]
        return scorer.score(texts, _KeptRenderers(renderers[0]), estimator.label_ids_,
                            progress=progress)
    out = np.empty((len(batch), len(renderers)))
    for j, renderer in enumerate(renderers):
        texts = [_kept(text, own[j]) for text, own in batch]
        answers = scorer.score(texts, _KeptRenderers(renderer), estimator.label_ids_,
                               progress=progress)
        out[:, j] = (np.logaddexp(answers[:, 0], answers[:, 1])
                     - np.logaddexp(answers[:, 2], answers[:, 3]))
    return out


def targets(estimator, scores, multi):
    """What is explained, from one text's perturbed scores (row 0 the text).

    Returns
    -------
    logp : ndarray (n, n_labels)
        The log of each label's probability as the estimator returns it
        (calibrated if it is; ``calibration='batch'``: uncalibrated;
        multi-label: each label's own probability).
    log_odds : ndarray (n,)
        The predicted label's log-odds: against the other labels' total
        (single-label), its own (multi-label).
    predicted : int
        The label predicted for the unperturbed text (its most probable).
    """
    if multi:
        logp = log_expit(scores)
        predicted = int(np.argmax(scores[0]))
        return logp, scores[:, predicted], predicted
    if len(estimator.classes_) == 1:
        return scores, scores[:, 0], 0
    if not estimator.probas_sum_to_1:
        logp = scores
    elif estimator.calibration == "batch":
        logp = np.log(softmax(scores, axis=1))
    else:
        with np.errstate(divide="ignore"):
            logp = np.log(estimator.probas_from_logprobs(scores))
    predicted = int(np.argmax(logp[0]))
    rest = np.delete(logp, predicted, axis=1)
    return logp, logp[:, predicted] - logsumexp(rest, axis=1), predicted
