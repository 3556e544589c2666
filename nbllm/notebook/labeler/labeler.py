"""Label the rows the model is least sure of, and let every answer improve it.

A :class:`Labeler` holds a DataFrame column, the labels and the user's answers.
It starts from the zero-shot classifier (content-free calibrated), queues the
rows whose prediction is least sure, with a random row every few places (a
random check), records answers (on disk at once, so a restart or a crash
loses none), and :meth:`Labeler.improve` refits from the answers that are not
checks: below :data:`~.choice.MIN_ANSWERS` of them, ``calibration='fit'`` of
the starting prompt; from there on, the prompt, few-shot examples and
calibration that cross-validation on the answers supports (:mod:`.choice`).
The checks, never used to choose or fit, estimate the accuracy on new rows
(a Wilson interval).  The measurements are in ``benchmarks/RESULTS.md``
(``benchmarks/bench_labeling.py``).

A round that keeps the prompt is a result-cache lookup; a new prompt or new
examples rescore the column.
"""

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...engine.scoring.prompts import is_missing
from ...exceptions import (ColumnError, FileFormatError, InputTypeError, LabelsError,
                          InputError, OptionError, TextsError)
from ...options import check_labels
from ...engine import status as engine_status
from ...engine.cache_folder import cache_dir
from ...warnings_to_user import warn
from .. import classify as api
from . import choice as choosing
from ..session import session
from ..status import showing_status
from ..stopping import stoppable

STRATEGIES = ("margin", "entropy", "random")
# Measured best on the dev half (benchmarks/RESULTS.md).
DEFAULT_STRATEGY = "margin"
# Version 2 marks the random checks; version 1 files (no checks) still read.
FILE_VERSION = 2
READS_VERSIONS = (1, 2)
# The start's line on the plot is measured once, on this many checks.
START_CHECKS = 10
# A rescoring round scores this many queues' worth of rows first (the least
# sure under the previous classifier, and as many drawn at random for the
# checks), shows the new queue, then scores the rest.
FRONT = 4


def answers_path(texts, labels, root=None):
    """The default answers file: under nbllm's cache folder, keyed by the texts
    and the labels, so the same Labeler finds its answers after a restart."""
    digest = hashlib.sha256(json.dumps([list(map(str, texts)), list(labels)])
                            .encode("utf-8")).hexdigest()[:20]
    return Path(root or cache_dir()) / "labeler" / f"{digest}.json"


def uncertainty(probas, strategy):
    """How unsure each row is (higher: queued first)."""
    if strategy == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.where(probas > 0, np.log(probas), 0.0)
        return -(probas * logs).sum(axis=1)
    top = np.sort(probas, axis=1)
    return -(top[:, -1] - top[:, -2]) if probas.shape[1] > 1 else -top[:, -1]


@dataclass
class LabelerReport:
    """How good the classifier is now, from the answers.

    Attributes
    ----------
    answered, total : int
        Rows answered so far (checks included); rows with a text.
    checks : int
        Answers that were random checks (never used to choose or fit).
    check_accuracy : float or None
        The classifier's accuracy on the checks: an unbiased estimate of its
        accuracy on new rows like these (None before the first check).
    check_interval : (float, float) or (None, None)
        The 95% Wilson interval of ``check_accuracy``.
    choice : str or None
        What :meth:`Labeler.improve` chose and its cross-validated accuracy on
        the training answers, e.g. "prompt A with 5 examples, calibration
        fitted: 0.81 ± 0.04 on your 32 answers".
    estimated_accuracy : float or None
        The calibrated probabilities' expected accuracy on the rows not
        answered (the classifier's own confidence; not a measurement).
    start_estimated_accuracy : float or None
        The zero-shot start's accuracy on the first checks, fixed once
        measured (see :data:`START_CHECKS`).
    answered_accuracy : float or None
        Leave-one-out accuracy of the calibration on the training answers
        (the hardest rows, since the queue picks them).
    label_counts : dict
        Predicted label -> rows, over all rows with a text.
    rounds : list of dict
        One entry per improve(): answers, the checks' estimate and interval.
    resumed : str
        Where the answers given before this Labeler came from, and how to start
        fresh ('' when it started with none).
    """

    answered: int
    total: int
    checks: int = 0
    check_accuracy: float = None
    check_interval: tuple = (None, None)
    choice: str = None
    estimated_accuracy: float = None
    start_estimated_accuracy: float = None
    answered_accuracy: float = None
    label_counts: dict = field(default_factory=dict)
    rounds: list = field(default_factory=list)
    resumed: str = ""

    def headline(self):
        """The accuracy on new rows, as the checks say ('' before any check)."""
        if not self.checks:
            return ""
        low, high = self.check_interval
        return (f"accuracy on new rows {self.check_accuracy:.0%} "
                f"(95% interval {low:.0%}\u2013{high:.0%}, from {self.checks} random "
                f"check{'s' if self.checks != 1 else ''})")

    def _repr_html_(self):
        from ..display import NO_MATH, esc

        def pct(value):
            return "\u2013" if value is None else f"{value:.0%}"

        counts = ", ".join(f"{esc(k)}: {v}" for k, v in self.label_counts.items())
        parts = [f"<b>{self.answered} / {self.total}</b> answered"]
        if self.checks:
            parts.append(esc(self.headline()))
        if self.choice:
            parts.append(f"chosen: {esc(self.choice)}")
        parts.append(f"the classifier's own confidence: {pct(self.estimated_accuracy)}")
        return (f'<div class="nbllm-report {NO_MATH}">{"; ".join(parts)}'
                f"<br>predicted: {counts}"
                + (f'<br><span class="nbllm-resumed">{esc(self.resumed)}</span>'
                   if self.resumed else "") + "</div>")

    def __repr__(self):
        def pct(value):
            return "-" if value is None else f"{value:.3f}"

        low, high = self.check_interval
        return (f"LabelerReport(answered={self.answered}/{self.total}, "
                f"checks={self.checks}, check_accuracy={pct(self.check_accuracy)} "
                f"[{pct(low)}, {pct(high)}], choice={self.choice!r}, "
                f"confidence={pct(self.estimated_accuracy)}, "
                f"answered_rows={pct(self.answered_accuracy)}, "
                f"predicted={self.label_counts})"
                + (f"\n{self.resumed}" if self.resumed else ""))


def _predicted_columns(estimator, probas):
    """The column of each row's predicted label, by the estimator's one
    prediction rule (every row has a text, so each predicts a label)."""
    classes = [str(c) for c in estimator.classes_]
    predicted = estimator.result_policy().predictions(classes, probas)
    return np.array([classes.index(label) for label in predicted], dtype=np.int64)


def _scoring_key(estimator):
    """What decides an estimator's label log-probabilities: its class, prompt
    and examples (calibration is applied after)."""
    params = estimator.get_params(deep=False)
    params.pop("calibration", None)
    params.pop("progress", None)
    fitted = getattr(estimator, "_fit_inputs", (None,))[0]
    return type(estimator).__name__, repr(sorted(params.items(), key=str)), \
        repr(fitted) if type(estimator).__name__ == "FewShotClassifier" else None


class Labeler:
    """Label the rows the model is least sure of; each answer improves it.

    Parameters
    ----------
    data : pandas.DataFrame
        The rows to label; its index must be unique (answers are keyed by it).
    column : str
        The text column.
    labels : list of str
        The labels.
    batch : int
        Rows per :meth:`queue`.
    strategy : {'margin', 'entropy', 'random'}
        Which rows come first: the smallest gap between the two likeliest
        labels (default), the highest entropy, or at random.
    path : str or Path, optional
        The answers file; default: under nbllm's cache folder, keyed by the
        column's texts and the labels.
    resume : bool
        Start from the answers already in that file (default), so a kernel
        restart loses none; the report and the widget say how many were
        resumed, and from where.  False starts with no answers (the file is
        replaced at the first answer).
    random_state : int
        Seed of the 'random' strategy.
    **options
        For the classifier, as in ``df.llm.classify``: ``model``, ``prompt``,
        ``device``, ``cache_dir``, ``batch_size``, ``truncation``,
        ``label_map``, ``use_chat_template``, ``progress``.

    Attributes
    ----------
    estimator_ : ZeroShotClassifier or FewShotClassifier
        The classifier now: the zero-shot start, then what :meth:`improve`
        chose (a FewShotClassifier when examples from the answers won); a
        plain scikit-learn estimator, usable on new data.
    choice_ : Candidate or None
        What the last :meth:`improve` chose by cross-validation (None below
        :data:`~.choice.MIN_ANSWERS` training answers).
    candidates_ : list of Candidate
        Every candidate the last choice compared, with its held-out hits.
    n_missing : int
        Rows whose text is missing (None or NaN): never queued, NaN results.
    path : Path
        The answers file.
    path_given : bool
        Whether ``path`` was named (False: the default, a hashed name under
        the cache folder).
    resumed : int
        Answers read from the answers file when the Labeler was made.
    """

    def __init__(self, data, column="text", labels=None, *, batch=10,
                 strategy=DEFAULT_STRATEGY, path=None, resume=True, random_state=0,
                 **options):
        self._check_data(data, column)
        if strategy not in STRATEGIES:
            raise OptionError(f"strategy must be one of {', '.join(STRATEGIES)}; got "
                              f"{strategy!r}", option="strategy")
        if not isinstance(resume, bool):
            raise OptionError(f"resume must be True or False; got {resume!r}",
                              option="resume")
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise OptionError(f"batch must be a positive integer; got {batch!r}",
                              option="batch")
        for name in ("examples", "calibration", "multi_label", "raw"):
            if name in options:
                raise OptionError(
                    f"{name}= is not a Labeler option: the Labeler chooses the examples "
                    "and the calibration from your answers", option=name)
        self.data, self.column = data, column
        self.labels = check_labels(labels)
        self.batch, self.strategy, self.random_state = batch, strategy, random_state
        self.options = dict(progress=False) | options
        # The model is loaded at the first scoring, where a status line shows
        # it; the session's model is the one of now, not of that moment.
        self.options.setdefault("model", session.model)
        api.check_options(self.labels, calibration="content_free", **self.options)
        texts = data[column].tolist()
        self._has_text = np.array([not is_missing(t) for t in texts])
        self.n_missing = int((~self._has_text).sum())
        if not self._has_text.any():
            raise TextsError(f"column {column!r} has no texts (all {len(texts)} are missing)")
        if self.n_missing:
            warn(f"{self.n_missing} row(s) of column {column!r} have no text; they are "
                 "skipped (never queued, NaN predictions)")
        self._texts = [str(t) if ok else None for t, ok in zip(texts, self._has_text)]
        self.path = Path(path) if path is not None else answers_path(
            self._texts, self.labels, self.options.get("cache_dir"))
        self.path_given = path is not None
        self._answers = {}  # position -> label
        self._checks = set()  # positions whose answer is a random check
        self._offered_checks = set()  # the checks of the latest queue()
        self._skipped = set()
        self._logprobs = None  # the start's label log-probabilities
        self._fitted_logprobs = None  # the chosen classifier's
        self.choice_ = None
        self._previous = None  # (classifier, probas) while a rescoring runs
        self._check_pool = None  # the random rows scored first, while it runs
        self.candidates_ = []  # every candidate of the last choice, with its CV hits
        self._start_line = None  # the start's accuracy on the first checks, fixed
        self._lock = threading.RLock()  # the widget scores in a thread
        self.rounds = []
        self._fitted = None  # the classifier after improve()
        self._start_clf = None  # the zero-shot start, built at the first scoring
        if resume:
            self._load_answers()
        self.resumed = len(self._answers)

    # ------------------------------------------------------------ input checks
    @staticmethod
    def _check_data(data, column):
        if not hasattr(data, "columns"):
            raise InputTypeError(
                f"data must be a pandas DataFrame; got {type(data).__name__}")
        if len(data) == 0:
            raise TextsError("the DataFrame has no rows")
        if column not in data.columns:
            raise ColumnError(f"column {column!r} not found; columns are "
                           f"{', '.join(map(str, data.columns))}")
        if not data.index.is_unique:
            raise InputError("the DataFrame's index has repeated values; answers are "
                             "kept by index: use df.reset_index(drop=True)")

    def _position(self, idx):
        try:
            found = self.data.index.get_loc(idx)
        except (KeyError, TypeError):
            raise OptionError(f"{idx!r} is not in the DataFrame's index",
                              option="idx") from None
        if not isinstance(found, (int, np.integer)):
            raise OptionError(f"{idx!r} is not in the DataFrame's index", option="idx")
        return int(found)

    # ------------------------------------------------------------ answers on disk
    def _load_answers(self):
        if not self.path.is_file():
            return
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            entries, skipped = saved["answers"], saved.get("skipped", [])
            if saved.get("version", 1) not in READS_VERSIONS:
                raise ValueError(f"version {saved.get('version')!r}; this nbllm reads "
                                 f"{', '.join(map(str, READS_VERSIONS))}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FileFormatError(
                f"the answers file {str(self.path)!r} cannot be read ({exc}); move it "
                "away to start afresh, or pass path= another file") from None
        lost = 0
        for entry in entries:
            pos = entry.get("position")
            if (isinstance(pos, int) and 0 <= pos < len(self._texts)
                    and self._texts[pos] == entry.get("text")
                    and entry.get("label") in self.labels):
                self._answers[pos] = entry["label"]
                if entry.get("check") is True:  # version 1 has no checks
                    self._checks.add(pos)
            else:
                lost += 1
        self._skipped = {p for p in skipped if isinstance(p, int)
                         and 0 <= p < len(self._texts)}
        if lost:
            warn(f"{lost} saved answer(s) in {str(self.path)!r} no longer match a row "
                 "(the text at their position changed); they are ignored")

    @property
    def resumed_note(self):
        """'resumed 20 answers from FILE; to start fresh: ...', or '' if none were."""
        if not self.resumed:
            return ""
        return (f"resumed {self.resumed} answer{'s' if self.resumed != 1 else ''} from "
                f"{self.path}; to start fresh, make the Labeler with resume=False "
                "(or another path=)")

    def _save(self):
        """Write every answer now (atomically: a crash leaves the old file or the new)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "version": FILE_VERSION, "column": str(self.column), "labels": self.labels,
            "answers": [{"position": pos, "index": str(self.data.index[pos]),
                         "text": self._texts[pos], "label": label,
                         "check": pos in self._checks}
                        for pos, label in sorted(self._answers.items())],
            "skipped": sorted(self._skipped),
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(payload, f, ensure_ascii=False)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # ------------------------------------------------------------ scoring
    @property
    def _start(self):
        """The zero-shot start (content-free calibrated); loads the model once."""
        with self._lock:
            if self._start_clf is None:
                self._start_clf = api.build_estimator(
                    self.labels, calibration="content_free", **self.options)
            return self._start_clf

    @property
    def estimator_(self):
        """The classifier now (see the class docstring)."""
        return self._fitted if self._fitted is not None else self._start

    @property
    def scored(self):
        """Whether every row is scored (queue() and the widget need no model run)."""
        return self._logprobs is not None

    def _scored(self, on_rows=None, stop=None):
        """Label log-probabilities of every row with a text (NaN for the others).

        The first call loads the model and scores the column; in a notebook a
        status line says so ("loading …", then "scoring 20 / 60 texts…").
        """
        with self._lock:
            if self._logprobs is None:
                with showing_status(self.options.get("model")):
                    self._logprobs = self._score_all(on_rows, stop)
            return self._logprobs

    def _score_all(self, on_rows, stop):
        clf = self._start
        rows = np.flatnonzero(self._has_text)
        out = np.full((len(self._texts), len(clf.classes_)), np.nan)
        done_rows = [0]
        engine_status.report(f"scoring 0 / {len(rows)} texts\u2026")

        def keep(done, values):
            out[rows[done]] = values
            done_rows[0] += len(done)
            engine_status.report(f"scoring {done_rows[0]} / {len(rows)} texts\u2026")
            if on_rows is not None:
                on_rows(done, values)

        clf.label_logprobs([self._texts[i] for i in rows], stoppable(keep, stop))
        return out

    def _probas(self, estimator=None):
        estimator = estimator or self.estimator_
        logprobs = self._scored()
        if estimator is self._fitted and self._fitted_logprobs is not None:
            logprobs = self._fitted_logprobs
        out = np.full(logprobs.shape, np.nan)
        ready = self._has_text & ~np.isnan(logprobs).any(axis=1)
        out[ready] = estimator.probas_from_logprobs(logprobs[ready])
        if self._previous is not None and estimator is self._fitted:
            # Not rescored yet: the previous classifier's probabilities meanwhile.
            waiting = self._has_text & ~ready
            out[waiting] = self._previous[1][waiting]
        return out

    # ------------------------------------------------------------ public API
    def queue(self, n=None):
        """The next rows to label, least sure first.

        Parameters
        ----------
        n : int, optional
            How many (default: ``batch``).

        Every :data:`~.choice.CHECK_EVERY`-th row is a random check: drawn at
        random from the rows not answered, its answer is kept apart to
        estimate the accuracy on new rows.  Answering a row of this queue
        records whether it was a check.

        Returns
        -------
        pandas.DataFrame
            On the data's index: ``text``, ``label`` (the current guess),
            ``proba_<label>`` per label and ``check`` (a random check).
        """
        n = self.batch if n is None else n
        probas = self._probas()
        open_rows = [int(i) for i in np.flatnonzero(self._has_text)
                     if i not in self._answers and i not in self._skipped]
        # Seeded by the state: the same state queues the same rows and checks.
        rng = np.random.default_rng([self.random_state, len(self._answers),
                                     len(self._skipped)])
        if self.strategy == "random":
            order = [int(i) for i in rng.permutation(open_rows)]
        else:
            unsure = uncertainty(probas[open_rows], self.strategy)
            order = [open_rows[j] for j in np.argsort(-unsure, kind="stable")]
        pool = open_rows
        if self._check_pool is not None:  # provisional: rescored rows only
            order = [p for p in order if p in self._check_pool or not self._waiting(p)]
            pool = [p for p in open_rows if p in self._check_pool]
        queued, checks = choosing.mix_checks(order, pool, n, rng,
                                             done=len(self._answers))
        self._offered_checks = checks
        frame = self._frame(queued, probas)
        frame["check"] = [p in checks for p in queued]
        return frame

    def answer(self, idx, label):
        """Record the user's label for row ``idx`` (a second answer replaces the
        first); written to the answers file at once.

        Raises
        ------
        ValueError
            If ``idx`` is not in the data's index, its text is missing, or
            ``label`` is not one of the labels.
        """
        pos = self._position(idx)
        if label not in self.labels:
            raise LabelsError(f"label must be one of {', '.join(map(repr, self.labels))}; "
                             f"got {label!r}")
        if not self._has_text[pos]:
            raise TextsError(f"row {idx!r} has no text to label")
        # Under the lock: a round in the widget's thread reads the answers.
        with self._lock:
            if pos not in self._answers:  # a second answer keeps the row's role
                if pos in self._offered_checks:
                    self._checks.add(pos)
            self._answers[pos] = label
            self._skipped.discard(pos)
            self._save()

    def skip(self, idx):
        """Leave row ``idx`` out of the queue (kept in the answers file too)."""
        pos = self._position(idx)
        with self._lock:
            self._skipped.add(pos)
            self._save()

    def improve(self, on_rows=None, stop=None, on_queue=None):
        """Refit from the answers that are not checks; return the new predictions.

        Below :data:`~.choice.MIN_ANSWERS` such answers (or while they hold one
        label): the calibration of the starting prompt is fitted to them.
        From there on the prompt, examples and calibration are chosen by
        cross-validation on them (:mod:`.choice`); ``choice_`` says what won.
        The random checks are never used: they judge the result.

        When the choice needs the column rescored (a new prompt or new
        examples), the rows the next queue needs are scored first and
        ``on_queue()`` is called: :meth:`queue` then gives a provisional
        queue (its checks drawn from a random sample scored first) and the
        rows not rescored yet keep their previous probabilities, until the
        rest is scored.  Answers given meanwhile are kept (they count from
        the next round).

        A Stop (``stop`` event) or an error in the middle loses no answer,
        since answers are saved when given.

        Raises
        ------
        InputError
            A ValueError, before any answer.
        Stopped
            When ``stop`` is set while rows are scored (a KeyboardInterrupt,
            see :mod:`.stopping`).
        """
        if not self._answers:
            raise InputError("no answers yet: answer some rows of queue() first")
        self._scored(on_rows, stop)
        positions = self._training_positions()
        if positions:
            texts = [self._texts[p] for p in positions]
            labels = [self._answers[p] for p in positions]
            if len(positions) >= choosing.MIN_ANSWERS and len(set(labels)) > 1:
                fitted, chosen = self._choose(texts, labels)
            else:
                engine_status.report(f"fitting the calibration to {len(positions)} "
                                     f"answer{'s' if len(positions) != 1 else ''}\u2026")
                fitted = api.build_estimator(self.labels, **self.options)
                fitted.set_params(calibration="fit").fit(texts, labels,
                                                         classes=self.labels)
                chosen = None
            if _scoring_key(fitted) != _scoring_key(self._start):
                self._rescore(fitted, chosen, on_rows, stop, on_queue)
            else:
                with self._lock:
                    self._fitted, self._fitted_logprobs = fitted, None
                    self.choice_, self._previous = chosen, None
        hits, n = self._check_hits()
        low, high = choosing.wilson(hits, n)
        if self._start_line is None and n >= START_CHECKS:
            with self._lock:
                checks = sorted(self._checks)[:START_CHECKS]
            self._start_line = self._accuracy_of(self._start, checks)
        self.rounds.append({"answers": len(self._answers), "checks": n,
                            "check_accuracy": hits / n if n else None,
                            "low": low, "high": high,
                            "estimated_accuracy": self._estimate(self.estimator_)[0]})
        return self.predictions

    def _waiting(self, position):
        """Whether a row waits for its rescoring (shown with the old probabilities)."""
        logprobs = self._fitted_logprobs
        return logprobs is not None and bool(np.isnan(logprobs[position]).any())

    def _training_positions(self):
        """The answered rows that are not checks: what choosing and fitting see."""
        with self._lock:
            return sorted(p for p in self._answers if p not in self._checks)

    def _build(self, template, **extra):
        """The zero-shot (or, with ``examples=``, few-shot) classifier with
        ``template`` as its prompt (None: the default)."""
        return api.build_estimator(self.labels, **(self.options | {"prompt": template}
                                                   | extra))

    def _choose(self, texts, labels):
        """The classifier cross-validation on the training answers supports."""
        from ...estimators.few_shot import cross_fitted_logprobs

        engine_status.report(f"comparing prompts, examples and calibrations on "
                             f"{len(texts)} answers\u2026")
        classes = sorted(self.labels)
        y = np.array([classes.index(label) for label in labels])
        test_folds = choosing.folds(y)
        candidates = []
        for name, template in choosing.candidate_prompts(self.labels,
                                                        self.options.get("prompt")):
            clf = self._build(template, calibration="content_free")
            logprobs = clf.label_logprobs(texts)
            for calibration in choosing.CALIBRATIONS:
                candidates.append(choosing.Candidate(
                    name, template, 0, calibration,
                    choosing.cv_hits(logprobs, y, calibration,
                                     clf.calibration_reference_, test_folds)))
        best = choosing.choose(candidates)
        few_shot = choosing.few_shot_prompt(best.prompt)
        if few_shot is not None:
            engine_status.report(f"trying {choosing.EXAMPLES} of your answers as "
                                 "examples in the prompt\u2026")
            clf = self._few_shot(few_shot, texts, labels, "content_free")
            logprobs = cross_fitted_logprobs(clf, texts, labels)
            for calibration in choosing.CALIBRATIONS:
                candidates.append(choosing.Candidate(
                    best.prompt_name, few_shot, choosing.EXAMPLES, calibration,
                    choosing.cv_hits(logprobs, y, calibration,
                                     clf.calibration_reference_, test_folds)))
        best = choosing.choose(candidates)
        self.candidates_ = candidates
        engine_status.report(f"chose {best.describe()}; fitting it\u2026")
        if best.examples:
            return self._few_shot(best.prompt, texts, labels, best.calibration), best
        if best.calibration == "fit":
            clf = self._build(best.prompt, calibration="content_free")
            clf.set_params(calibration="fit").fit(texts, labels, classes=self.labels)
            return clf, best
        return self._build(best.prompt, calibration=best.calibration), best

    def _few_shot(self, template, texts, labels, calibration):
        return self._build(template, examples=list(zip(texts, labels)),
                           max_samples=choosing.EXAMPLES, example_selection="grouped",
                           calibration=calibration)

    def _rescore(self, estimator, chosen, on_rows, stop, on_queue):
        """Score every row under ``estimator``'s prompts, the next queue's
        rows first (see :meth:`improve`); ``estimator`` is the classifier
        from the moment those are scored."""
        rows = np.flatnonzero(self._has_text)
        out = np.full((len(self._texts), len(estimator.classes_)), np.nan)
        previous = self.estimator_
        old = self._probas()
        open_rows = [int(i) for i in rows if i not in self._answers and i not in self._skipped]
        size = min(len(open_rows), FRONT * self.batch)
        unsure = uncertainty(old[open_rows], self.strategy if self.strategy != "random"
                             else "margin")
        margin = [open_rows[j] for j in np.argsort(-unsure, kind="stable")[:size]]
        rng = np.random.default_rng([self.random_state, len(self._answers), 1])
        sample = [int(i) for i in rng.choice(open_rows, size=size, replace=False)]
        with self._lock:
            answered = sorted(self._answers)
        front = list(dict.fromkeys(answered + margin + sample))
        rest = [int(i) for i in rows if i not in set(front)]
        done_rows = [0]
        engine_status.report(f"rescoring 0 / {len(rows)} texts with the new "
                             "prompt\u2026")

        def scorer(positions):
            def keep(done, values):
                out[np.asarray(positions)[done]] = values
                done_rows[0] += len(done)
                engine_status.report(f"rescoring {done_rows[0]} / {len(rows)} texts "
                                     "with the new prompt\u2026")
                if on_rows is not None:
                    on_rows(done, values)
            return stoppable(keep, stop)

        estimator.label_logprobs([self._texts[i] for i in front], scorer(front))
        with self._lock:
            self._fitted, self._fitted_logprobs, self.choice_ = estimator, out, chosen
            self._previous = (previous, old) if rest else None
            self._check_pool = set(sample) if rest else None
        if rest:
            if on_queue is not None:
                on_queue()
            estimator.label_logprobs([self._texts[i] for i in rest], scorer(rest))
            with self._lock:
                self._previous, self._check_pool = None, None

    def _accuracy_of(self, estimator, positions):
        probas = self._probas(estimator)[positions]
        predicted = _predicted_columns(estimator, probas)
        classes = [str(c) for c in estimator.classes_]
        truth = np.array([classes.index(self._answers[p]) for p in positions])
        return float((predicted == truth).mean())

    def _check_hits(self):
        """(right, checks) of the classifier now on the random checks."""
        with self._lock:
            checks = sorted(self._checks)
        if not checks:
            return 0, 0
        return int(round(self._accuracy_of(self.estimator_, checks) * len(checks))), \
            len(checks)

    def _estimate(self, fitted):
        """Expected accuracy of the fitted and of the start predictions on the rows
        not answered, by the fitted (calibrated) probabilities."""
        rest = [i for i in np.flatnonzero(self._has_text) if i not in self._answers]
        if not rest:
            return None, None
        probas = self._probas(fitted)[rest]
        rows = np.arange(len(rest))
        now = _predicted_columns(fitted, probas)
        start = _predicted_columns(self._start, self._probas(self._start)[rest])
        return float(probas[rows, now].mean()), float(probas[rows, start].mean())

    def _answered_accuracy(self):
        """Leave-one-out accuracy of the calibration on the training answers."""
        from ...estimators.calibration import calibrate, fit_scale_and_bias

        positions = self._training_positions()
        if (len(positions) < 2 or self.estimator_.calibration != "fit"
                or self._fitted_logprobs is not None):
            return None
        classes = [str(c) for c in self.estimator_.classes_]
        logprobs = self._scored()[positions]
        y = np.array([classes.index(self._answers[p]) for p in positions])
        start = -self._start.calibration_reference_
        hits = 0
        for j in range(len(positions)):
            others = np.arange(len(positions)) != j
            fitted = fit_scale_and_bias(logprobs[others], y[others], start=start)
            predicted = _predicted_columns(self.estimator_,
                                           calibrate(logprobs[j:j + 1], "fit", fitted))
            hits += int(predicted[0] == y[j])
        return hits / len(positions)

    def report(self):
        """A :class:`LabelerReport`: the accuracy on new rows (random checks),
        the choice, the classifier's own confidence, label counts."""
        improved = self._fitted is not None
        if improved:
            engine_status.report("estimating the accuracy\u2026")
        now = self._estimate(self.estimator_)[0] if improved else None
        hits, n = self._check_hits() if self._answers else (0, 0)
        predicted = self.predictions["label"].dropna()
        return LabelerReport(
            *self.counts, checks=n, check_accuracy=hits / n if n else None,
            check_interval=choosing.wilson(hits, n),
            choice=self.choice_.summary() if self.choice_ is not None else None,
            estimated_accuracy=now, start_estimated_accuracy=self._start_line,
            answered_accuracy=self._answered_accuracy(),
            label_counts={str(k): int(v) for k, v in predicted.value_counts().items()},
            rounds=list(self.rounds), resumed=self.resumed_note,
        )

    @property
    def counts(self):
        """(rows answered, rows with a text): the progress, without a report."""
        return len(self._answers), int(self._has_text.sum())

    @property
    def predictions(self):
        """DataFrame on the data's index: ``label`` and ``proba_<label>`` per label."""
        return self._frame(range(len(self._texts)), self._probas()).drop(columns="text")

    @property
    def answers(self):
        """DataFrame of the answered rows (data's index): ``text``, ``label``."""
        import pandas as pd

        positions = sorted(self._answers)
        return pd.DataFrame(
            {"text": [self._texts[p] for p in positions],
             "label": [self._answers[p] for p in positions]},
            index=self.data.index[positions])

    def _frame(self, positions, probas):
        import pandas as pd

        positions = list(positions)
        estimator = self.estimator_
        classes = [str(c) for c in estimator.classes_]
        chosen = probas[positions]
        labels = list(estimator.result_policy().predictions(classes, chosen))
        frame = pd.DataFrame({"text": [self._texts[p] for p in positions],
                              "label": labels}, index=self.data.index[positions])
        for j, c in enumerate(classes):
            frame[f"proba_{c}"] = chosen[:, j] if len(positions) else []
        return frame

    # ------------------------------------------------------------ notebook
    @property
    def widget(self):
        """The ipywidgets view (made on first use)."""
        if getattr(self, "_widget", None) is None:
            from .widget import LabelerWidget

            self._widget = LabelerWidget(self)
        return self._widget

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self):
        return (f"Labeler({len(self._texts)} rows, column={self.column!r}, "
                f"labels={self.labels!r}, answered={len(self._answers)})")

