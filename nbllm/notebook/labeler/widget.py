"""The Labeler as ipywidgets: cards to answer, Improve, progress and a plot.

A thin view: every button calls the :class:`~nbllm.notebook.labeler.Labeler`'s
own methods (answer, skip, improve), so the widget and the Python object
never disagree.  Errors show as one escaped line, as in the panel.

The widget shows at once: the first scoring of the column (loading the model,
then every row) runs in a thread, and a status line says what it is doing
("loading smollm2-135m…", "scoring 20 / 60 texts…") until the cards come.
"""

import contextvars
import threading
from pathlib import Path

import ipywidgets as widgets

from ...engine import status as engine_status
from ...exceptions import InputError
from ..display import NO_MATH, chip, esc, label_colours
from .plot import accuracy_plot
from ..panel.panel import coloured
from ..panel.front_end import CodeBox
from ..status import first_message
from ..stopping import Stopped

__all__ = ["LabelerWidget", "accuracy_plot", "estimator_code", "save_name"]

# Improve before any answer, in the widget's words (the method's own
# message names queue(), which the widget's user never calls).
NO_ANSWERS = "no answers yet: click a label on a card, then Improve"
# The save-as box's name when the answers file is the default one, whose
# name is a hash: saved in the notebook's folder, as the panel saves.
DEFAULT_SAVE_NAME = "labeler.classifier.json"

_MUTED = "font-size:12px;color:var(--jp-ui-font-color2,#666)"
CALIBRATED_NOTE = (
    "The guesses here are the Labeler's classifier's: calibrated for these labels "
    "against the prompt's own bias at the start, then as Improve chose from your "
    "answers (prompt, examples and calibration: see 'chosen'). "
    "<code>df.llm.classify</code> gives the model's uncalibrated probabilities by "
    "default, so the same text can get other numbers there.")
ACCURACY_NOTE = (
    "Accuracy on new rows: the classifier's accuracy on the random checks (rows "
    "drawn at random, marked on their card, never used to choose or fit), with its "
    "95% interval. The chosen setting's score is cross-validated on your other "
    "answers, which the queue picks among the hardest rows, so it reads low.")


class LabelerWidget(widgets.VBox):
    """Cards for the queued rows, one button per label and Skip; Improve.

    Parameters
    ----------
    labeler : Labeler
    threaded : bool
        Run Improve in a background thread (tests may set False).
    """

    def __init__(self, labeler, threaded=True):
        super().__init__()
        self.labeler, self.threaded = labeler, threaded
        self._thread = None
        self._headline = ""  # the estimate, kept while answers come in
        self._stop = threading.Event()
        self.colours = label_colours(labeler.labels)
        self.progress_line = widgets.HTML()
        self.cards = widgets.VBox()
        # The cards are made once, here, and refilled: cheaper than new widgets.
        self._pool = [self._make_card() for _ in range(labeler.batch)]
        self.improve_button = widgets.Button(description="Improve", icon="magic",
                                             button_style="primary")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.code_button = widgets.Button(description="Copy as code", icon="code")
        self.save_path = widgets.Text(value=save_name(labeler), description="save as",
                                      layout=widgets.Layout(width="420px"))
        # The box shows a short name; the path it writes to is on hover.
        self._where_saved()
        self.save_path.observe(lambda _: self._where_saved(), "value")
        self.save_button = widgets.Button(description="Save classifier", icon="save")
        self.progress = widgets.IntProgress(min=0, max=1,
                                            layout=widgets.Layout(display="none"))
        self.status = widgets.HTML()
        self.status_line = widgets.HTML()
        self.status_line.add_class("nbllm-labeler-status")
        self.note = widgets.HTML(f'<div class="nbllm-note" style="{_MUTED}">'
                                 f"{CALIBRATED_NOTE}</div>")
        self.plot = widgets.HTML()
        self.code = CodeBox()
        self.children = [
            self.status_line, self.progress_line, self.cards,
            widgets.HBox([self.improve_button, self.stop_button, self.code_button,
                          self.progress, self.status]),
            widgets.HBox([self.save_path, self.save_button]),
            self.note, self.plot, self.code,
        ]
        for name in ("nbllm-labeler", *NO_MATH.split()):
            self.add_class(name)
        self.improve_button.on_click(lambda _: self._start_improve())
        self.stop_button.on_click(lambda _: self._stop.set())
        self.code_button.on_click(lambda _: self._safely(self._show_code))
        self.save_button.on_click(lambda _: self._safely(self._save))
        if labeler.scored:
            self._safely(self.refresh)
        else:
            self._start_job(self._first_scoring, first_message(labeler.options.get("model"))
                            or f"scoring {labeler.counts[1]} texts\u2026")

    # ------------------------------------------------------------ status
    def show_status(self, message):
        """Show what the Labeler is doing now ('' hides the line)."""
        self.status_line.value = (
            f'<div class="nbllm-status" style="{_MUTED}">\u23f3 {esc(message)}</div>'
            if message else "")

    def _start_job(self, job, message):
        """Run ``job`` (in a thread when threaded), with its status lines shown."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.improve_button.disabled, self.stop_button.disabled = True, False
        self.show_status(message)  # before any work: the first thing the user sees
        if self.threaded:
            # The thread runs in a copy of this context: ipykernel routes the
            # front end's replies to a widget by the parent message of the
            # widget's last update, and without it a thread takes whatever
            # message the kernel handled last (clicks then went nowhere).
            context = contextvars.copy_context()
            self._thread = threading.Thread(target=context.run,
                                            args=(self._run_job, job), daemon=True)
            self._thread.start()
        else:
            self._run_job(job)

    def _run_job(self, job):
        total = self.labeler.counts[1]
        self.progress.max, self.progress.value = total, 0

        def on_rows(rows, values):
            self.progress.layout.display = ""
            self.progress.value = min(total, self.progress.value + len(rows))

        try:
            with engine_status.listening(self.show_status):
                job(on_rows)
        except Stopped:
            self.status.value = ("stopped: every answer and every row scored so far is "
                                 "kept; press Improve to go on")
        except BaseException as exc:  # noqa: B902 - shown, as ipywidgets would hide it
            self.status.value = coloured("error", f"{type(exc).__name__}: {exc}")
        finally:
            self.show_status("")
            self.progress.layout.display = "none"
            self.improve_button.disabled, self.stop_button.disabled = False, True

    def _first_scoring(self, on_rows):
        self.labeler._scored(on_rows=on_rows, stop=self._stop)
        self.refresh()

    # ------------------------------------------------------------ views
    def refresh(self):
        """Show the current queue as cards and the progress line."""
        queue = self.labeler.queue()
        self.cards.children = [self._fill_card(card, idx, row) for card, (idx, row)
                               in zip(self._pool, queue.iterrows())]
        report = self.labeler.report()
        headline = ""
        if report.checks:
            headline += f"; <b>{esc(report.headline())}</b>"
        if report.choice:
            headline += f'<div class="nbllm-choice">chosen: {esc(report.choice)}</div>'
        if headline:
            headline += f'<div style="{_MUTED}">{ACCURACY_NOTE}</div>'
        if report.resumed:
            headline += (f'<div class="nbllm-resumed" style="{_MUTED}">'
                         f"{esc(report.resumed)}</div>")
        self._headline = headline
        self._show_progress(empty=not queue.shape[0])
        self.plot.value = accuracy_plot(self.labeler.rounds,
                                        start=report.start_estimated_accuracy)

    def _show_progress(self, empty=False):
        """The counts, with the latest estimate and choice (kept between Improves)."""
        answered, total = self.labeler.counts
        self.progress_line.value = (f"<b>{answered} / {total}</b> answered"
                                    + ("; nothing left to label" if empty else "")
                                    + self._headline)

    def _make_card(self):
        """An empty card: the text, a button per label and Skip."""
        text = widgets.HTML()
        buttons = []
        for number, label in enumerate(self.labeler.labels, start=1):
            button = widgets.Button(description=f"{number}. {label}" if number <= 9
                                    else label, tooltip=f"answer {label!r}")
            buttons.append(button)
        skip = widgets.Button(description="Skip", icon="forward")
        card = widgets.VBox([text, widgets.HBox(buttons + [skip])],
                            layout=widgets.Layout(border="1px solid var(--jp-border-color2,#ccc)",
                                                  padding="4px", margin="2px 0"))
        card.add_class("nbllm-card")
        card.row_index = None
        # The row is read at click time: a card shows another row after a refresh.
        for button, label in zip(buttons, self.labeler.labels):
            button.on_click(lambda _, c=card, l=label: self._safely(self._answer,
                                                                    c.row_index, l))
        skip.on_click(lambda _, c=card: self._safely(self._skip, c.row_index))
        return card

    def _fill_card(self, card, idx, row):
        """Show row ``idx`` on ``card``; returns the card."""
        guess = row["label"]
        probas = ", ".join(f"{esc(label)} {row[f'proba_{label}']:.2f}"
                           for label in self.labeler.labels)
        check = (' <span class="nbllm-check" title="a row drawn at random: its answer '
                 'measures the accuracy on new rows and is never used to fit">'
                 "(random check)</span>" if row.get("check", False) else "")
        card.children[0].value = (
            f'<div class="nbllm-card-text" style="white-space:pre-wrap">{esc(row["text"])}'
            f'</div><div style="font-size:12px">guess: {chip(guess, self.colours[guess])} '
            f"({probas}){check}</div>")
        card.row_index = idx
        return card

    # ------------------------------------------------------------ actions
    def _safely(self, job, *args):
        try:
            job(*args)
        except BaseException as exc:  # noqa: B902 - shown, as ipywidgets would hide it
            self.status.value = coloured("error", f"{type(exc).__name__}: {exc}")

    def _answer(self, idx, label):
        self.labeler.answer(idx, label)
        self._drop_card(idx)
        self.status.value = f"row {esc(idx)}: {esc(label)}"

    def _skip(self, idx):
        self.labeler.skip(idx)
        self._drop_card(idx)

    def _drop_card(self, idx):
        self.cards.children = [c for c in self.cards.children if c.row_index != idx]
        if not self.cards.children:
            self.refresh()
        else:  # no report (it refits the leave-one-out figure): the kept estimate
            self._show_progress()

    def _start_improve(self):
        if not self.labeler.scored and self.labeler.answers.empty:
            # After a Stop in the first scoring: go on with it.
            self._start_job(self._first_scoring, "scoring the rest\u2026")
        elif self.labeler.answers.empty:
            self.status.value = coloured("error", NO_ANSWERS)
        else:
            self._start_job(self._improve, "improving\u2026")

    def wait(self, timeout=None):
        """Block until a running job (the first scoring, Improve) has finished."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _improve(self, on_rows):
        def first_queue():
            # The new queue as soon as its rows are rescored; the rest follow.
            self.refresh()
            self.status.value = ("new queue ready; rescoring the other rows with the new "
                                 "prompt (answer meanwhile: every answer is kept)")

        self.labeler.improve(on_rows=on_rows, stop=self._stop, on_queue=first_queue)
        self.refresh()
        if self.code.code is not None:  # a snippet shown is of the old answers
            self._show_code()
        self.status.value = f"improved from {len(self.labeler.answers)} answers"

    def _where_saved(self):
        name = self.save_path.value.strip()
        self.save_path.tooltip = (f"saved to {Path(name).resolve()}" if name else
                                  "name a file, e.g. classifier.json")

    def _save(self):
        path = self.save_path.value.strip()
        if not path:
            raise InputError("save as: name a file, e.g. classifier.json")
        self.labeler.estimator_.save(path)
        name = type(self.labeler.estimator_).__name__
        self.status.value = (f"saved to {esc(Path(path).resolve())}; load it with "
                             f"{name}.load({esc(repr(path))})")

    def _show_code(self):
        self.code.show("The fitted classifier, in Python", estimator_code(self.labeler))


def save_name(labeler):
    """The save-as box's first value: beside a named answers file
    (``answers.json`` -> ``answers.classifier.json``), else
    :data:`DEFAULT_SAVE_NAME` in the notebook's folder."""
    if labeler.path_given:
        return str(labeler.path.with_suffix(".classifier.json"))
    return DEFAULT_SAVE_NAME


def estimator_code(labeler):
    """Python that rebuilds the Labeler's current classifier from its answers
    (the training answers: the random checks are not part of it)."""
    clf = labeler.estimator_
    name = type(clf).__name__
    args = [repr(clf.model_name)] if clf.model_name else []
    if clf.prompt is not None:
        args.append(f"prompt={clf.prompt!r}")
    if name == "FewShotClassifier":
        args.append(f"max_samples={clf.max_samples!r}, "
                    f"example_selection={clf.example_selection!r}")
    args.append(f"calibration={clf.calibration!r}")
    positions = labeler._training_positions()
    learns = clf.calibration == "fit" or name == "FewShotClassifier"
    if learns:
        lines = [f"    ({labeler._texts[p]!r}, {labeler._answers[p]!r}),"
                 for p in positions]
        fit = ("answers = [\n" + "\n".join(lines) + "\n]\n"
               f"clf = {name}({', '.join(args)})\n"
               "clf.fit([t for t, _ in answers], [y for _, y in answers], "
               f"classes={labeler.labels!r})")
    else:
        fit = (f"clf = {name}({', '.join(args)})\n"
               f"clf.fit(None, {labeler.labels!r})")
    return f"from nbllm import {name}\n\n" + fit
