"""How the Labeler chooses its classifier from the answers, and how it judges it.

**The choice** (:func:`choose`).  From :data:`MIN_ANSWERS` training answers on,
:meth:`~nbllm.notebook.labeler.Labeler.improve` compares, by cross-validation
on those answers, classifiers that differ in what the answers can tell:

- the prompt: the user's (when given), the default, and a few task-naming
  prompts built from the label names alone (:func:`candidate_prompts`; never
  from the rows);
- the calibration: none, content-free (nothing learned) or fitted to the answers
  (scale and per-label bias, :func:`~nbllm.estimators.calibration.fit_scale_and_bias`);
- examples: the best zero-shot prompt with :data:`EXAMPLES` answered rows
  written in as few-shot examples ('grouped' selection, through the
  prefix-sharing scorer).  A row is never its own example: each fold's rows
  are scored with examples drawn from the other folds only.

The first candidate listed wins unless a later one is better on the same
answers by a paired test (:func:`choose`: the answers are few and hard, so
near-ties are the rule).  Its pooled
cross-validated accuracy and binomial standard error are what the report
says ("the default prompt with 5 examples, calibration fitted: 0.81 ± 0.04
on your 32 answers").

**The checks** (:func:`mix_checks`, :func:`wilson`).  Every
:data:`CHECK_EVERY`-th queued row is drawn at random from the rows not
answered: a random check.  Checks are never used to choose or fit, so the
current classifier's accuracy on them is an unbiased estimate of its accuracy
on rows like these; :func:`wilson` gives its 95% interval.
"""

import math
from dataclasses import dataclass, field

import numpy as np

# From this many training answers on, improve() chooses by cross-validation;
# below, it fits the calibration of the user's (or default) prompt only, as
# the CV score of 5 folds of fewer rows is mostly noise.
MIN_ANSWERS = 20
N_FOLDS = 5
# Examples per prompt in the few-shot candidate.
EXAMPLES = 5
# One queued row in this many is a random check.
CHECK_EVERY = 5
# The interval's confidence (z of the normal quantile).
Z_95 = 1.959963984540054


def _or_list(words):
    words = [str(w).replace("{", "{{").replace("}", "}}") for w in words]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


# Label words that tell which task the labels belong to, so that a prompt can
# name it ("Sentiment: "): naming the task is what lifted the embedded model
# from 0.74 to 0.81-0.83 on tweets (RESULTS.md).  A general vocabulary of
# common label families, never read from the rows; labels outside it get the
# generic "Category".
TASK_WORDS = {
    "sentiment": {"positive", "negative", "neutral", "mixed", "pos", "neg", "neu"},
    "emotion": {"joy", "sadness", "anger", "fear", "surprise", "disgust", "love",
                "happy", "sad", "angry", "happiness"},
    "stance": {"favor", "favour", "against", "agree", "disagree", "support", "oppose"},
    "toxicity": {"toxic", "non-toxic", "nontoxic", "offensive", "not offensive",
                 "hateful", "clean"},
    "spam": {"spam", "ham", "not spam"},
    "language": {"english", "french", "german", "spanish", "italian", "dutch",
                 "portuguese", "chinese", "japanese"},
}


def task_name(labels):
    """The task the labels name ('sentiment' for negative/positive), or
    'category' when no family holds most of them."""
    words = {str(label).strip().lower() for label in labels}
    best, share = "category", 0.0
    for name, family in TASK_WORDS.items():
        found = len(words & family) / len(words)
        if found > share and found >= 0.5:
            best, share = name, found
    return best


def candidate_prompts(labels, user_prompt=None):
    """(name, zero-shot template or None for the default) to compare.

    Built from the label names alone: the task is named after the labels'
    family (:func:`task_name`: "Sentiment: " for negative/positive) and the
    labels are said ("Is this text negative or positive?"), so the same code
    serves any labels and no row can tune a prompt.
    """
    said = _or_list(labels)
    task = task_name(labels)
    noun = task.capitalize()
    out = []
    if user_prompt is not None:
        out.append(("your prompt", user_prompt))
    # In the order of preference (see choose()): naming the task first, as
    # measured on the dev half (RESULTS.md); the default after them.
    out += [
        ("prompt A", f"Categories: {{labels}}\n\nText: {{text}}\n{noun}: "),
        ("prompt B", f"What is the {task} of this text? Choose one of {{labels}}.\n\n"
                     f"Text: {{text}}\n{noun}: "),
        ("the default prompt", None),
        ("prompt C", f"Is this text {said}? Choose one of {{labels}}.\n\n"
                     "Text: {text}\nAnswer: "),
    ]
    return out


def few_shot_prompt(template):
    """The few-shot version of a zero-shot template: the examples right before
    the text; None when the template has no ``Text: {text}`` to put them before."""
    from ...engine.scoring.prompts import DEFAULT_PROMPT_FEW_SHOT

    if template is None:
        return DEFAULT_PROMPT_FEW_SHOT
    if "{examples}" in template or "Text: {text}" not in template:
        return None
    return template.replace("Text: {text}", "{examples}\n\nText: {text}", 1)


def folds(y, random_state=0, n_folds=N_FOLDS):
    """Test indices of each fold (the one rule, shared with few-shot's
    ``calibration='fit'``, so that its cross-fitted scores are cache hits)."""
    from ...estimators.few_shot import cv_folds

    return cv_folds(y, random_state, n_folds)


def cv_hits(logprobs, y, calibration, reference, test_folds):
    """Whether each row is predicted right when held out.

    Parameters
    ----------
    logprobs : ndarray (n, k)
        Label log-probabilities (for few-shot: each fold scored with examples
        from the other folds only).
    y : ndarray of int (n,)
    calibration : {None, 'content_free', 'fit'}
    reference : ndarray (k,)
        The content-free reference (log of the prompt's own label distribution).
    test_folds : list of ndarray
    """
    from ...estimators.calibration import calibrate, fit_scale_and_bias

    hits = np.zeros(len(y), dtype=bool)
    for test in test_folds:
        if calibration in (None, "content_free"):
            probas = calibrate(logprobs[test], calibration, reference)
        else:
            train = np.setdiff1d(np.arange(len(y)), test)
            fitted = fit_scale_and_bias(logprobs[train], y[train], start=-reference)
            probas = calibrate(logprobs[test], "fit", fitted)
        hits[test] = probas.argmax(axis=1) == y[test]
    return hits


@dataclass
class Candidate:
    """One classifier compared by :func:`choose`, with its held-out hits."""

    prompt_name: str
    prompt: str = None  # the template as the estimator takes it (None: default)
    examples: int = 0
    calibration: str = "fit"
    hits: np.ndarray = field(default=None, repr=False)

    @property
    def accuracy(self):
        return float(self.hits.mean())

    @property
    def error(self):
        """Binomial standard error of the pooled CV accuracy."""
        p = self.accuracy
        return math.sqrt(p * (1 - p) / len(self.hits))

    def describe(self):
        shots = f" with {self.examples} examples" if self.examples else ""
        calibrated = {"fit": "calibration fitted", None: "no calibration"}.get(
            self.calibration, "content-free calibration")
        return f"{self.prompt_name}{shots}, {calibrated}"

    def summary(self):
        """'the default prompt, calibration fitted: 0.81 ± 0.04 on your 32 answers'."""
        return (f"{self.describe()}: {self.accuracy:.2f} \u00b1 {self.error:.2f} on "
                f"your {len(self.hits)} answers")


def choose(candidates, z=Z_95):
    """The candidate the answers support: the first listed, unless a later one
    is better on the same answers by a paired test at 95% (McNemar's normal
    form: it gets ``b`` rows right that the current choice gets wrong, and
    ``c`` the other way round, with ``b - c > z * sqrt(b + c)``).

    The answers are few and, as the queue picks them, mostly hard rows, on
    which every candidate is near chance: differences of a few rows are
    noise.  So the order of preference decides among candidates the answers
    cannot tell apart (the user's prompt, the prompts that name the task, as
    measured on the dev half, the default; nothing learned before a fitted
    calibration; zero-shot before few-shot, which costs a rescoring with
    longer prompts), and the answers overrule it when a candidate is clearly
    better.
    """
    current = candidates[0]
    for candidate in candidates[1:]:
        better = int((candidate.hits & ~current.hits).sum())
        worse = int((~candidate.hits & current.hits).sum())
        if better - worse > z * math.sqrt(better + worse):
            current = candidate
    return current


# What each candidate prompt is tried with, in the order of preference.
CALIBRATIONS = (None, "content_free", "fit")


# ------------------------------------------------------------------ checks
def mix_checks(order, open_rows, n, rng, every=CHECK_EVERY, done=0):
    """The queue of ``n`` rows: ``order`` (least sure first), with every
    ``every``-th place given to a row drawn at random from ``open_rows``,
    counting on from ``done`` rows answered (so small queues get checks too).

    Returns
    -------
    (list of int, set of int)
        The queued positions and which of them are random checks.
    """
    queue, checks = [], set()
    rest = list(order)
    pool = list(open_rows)
    while len(queue) < n and (rest or pool):
        if (done + len(queue) + 1) % every == 0 and pool:
            pick = pool[int(rng.integers(len(pool)))]
            checks.add(pick)
        else:
            pick = next((p for p in rest if p not in queue), None)
            if pick is None:
                break
        queue.append(pick)
        rest = [p for p in rest if p != pick]
        pool = [p for p in pool if p != pick]
    return queue, checks


def wilson(hits, n, z=Z_95):
    """The Wilson score interval (low, high) of a proportion ``hits / n``."""
    if n == 0:
        return None, None
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
