"""The Labeler as ipywidgets: cards to answer, Improve, progress and a small plot.

A thin view: every button calls the :class:`~nbllm.notebook.labeler.Labeler`'s
own methods (answer, skip, improve), so the widget and the Python object
never disagree.  Errors show as one escaped line, as in the panel.
"""

import threading

import ipywidgets as widgets

from ..exceptions import InputError
from .display import NO_MATH, chip, esc, label_colours
from .panel import coloured
from .panel_code import code_box
from .stopping import Stopped


def accuracy_plot(rounds, width=220, height=60):
    """An inline SVG of the estimated accuracy per round ('' before two rounds)."""
    values = [r["estimated_accuracy"] for r in rounds if r["estimated_accuracy"] is not None]
    if len(values) < 2:
        return ""
    low, high = min(values + [0.5]), max(values + [1.0])
    step = (width - 20) / (len(values) - 1)
    points = " ".join(f"{10 + i * step:.1f},{height - 8 - (v - low) / (high - low) * (height - 16):.1f}"
                      for i, v in enumerate(values))
    return (f'<svg class="nbllm-plot" width="{width}" height="{height}" role="img" '
            f'aria-label="estimated accuracy per round">'
            f'<polyline fill="none" stroke="var(--jp-brand-color1,#1976d2)" '
            f'stroke-width="2" points="{points}"/></svg>')


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
        self._stop = threading.Event()
        self.colours = label_colours(labeler.labels)
        self.progress_line = widgets.HTML()
        self.cards = widgets.VBox()
        self.improve_button = widgets.Button(description="Improve", icon="magic",
                                             button_style="primary")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.code_button = widgets.Button(description="Copy as code", icon="code")
        self.save_path = widgets.Text(value=str(labeler.path.with_suffix(".classifier.json")),
                                      description="save as",
                                      layout=widgets.Layout(width="420px"))
        self.save_button = widgets.Button(description="Save classifier", icon="save")
        self.progress = widgets.IntProgress(min=0, max=1,
                                            layout=widgets.Layout(display="none"))
        self.status = widgets.HTML()
        self.plot = widgets.HTML()
        self.code = widgets.HTML()
        self.children = [
            self.progress_line, self.cards,
            widgets.HBox([self.improve_button, self.stop_button, self.code_button,
                          self.progress, self.status]),
            widgets.HBox([self.save_path, self.save_button]),
            self.plot, self.code,
        ]
        for name in ("nbllm-labeler", *NO_MATH.split()):
            self.add_class(name)
        self.improve_button.on_click(lambda _: self._start_improve())
        self.stop_button.on_click(lambda _: self._stop.set())
        self.code_button.on_click(lambda _: self._safely(self._show_code))
        self.save_button.on_click(lambda _: self._safely(self._save))
        self._safely(self.refresh)

    # ------------------------------------------------------------ views
    def refresh(self):
        """Show the current queue as cards and the progress line."""
        queue = self.labeler.queue()
        self.cards.children = [self._card(idx, row) for idx, row in queue.iterrows()]
        report = self.labeler.report()
        line = f"<b>{report.answered} / {report.total}</b> answered"
        if report.estimated_accuracy is not None:
            line += (f"; estimated accuracy {report.estimated_accuracy:.0%} (at the start "
                     f"{report.start_estimated_accuracy:.0%})")
        if not queue.shape[0]:
            line += "; nothing left to label"
        self.progress_line.value = line
        self.plot.value = accuracy_plot(self.labeler.rounds)

    def _card(self, idx, row):
        guess = row["label"]
        probas = ", ".join(f"{esc(label)} {row[f'proba_{label}']:.2f}"
                           for label in self.labeler.labels)
        text = widgets.HTML(
            f'<div class="nbllm-card-text" style="white-space:pre-wrap">{esc(row["text"])}'
            f'</div><div style="font-size:12px">guess: {chip(guess, self.colours[guess])} '
            f"({probas})</div>")
        buttons = []
        for number, label in enumerate(self.labeler.labels, start=1):
            button = widgets.Button(description=f"{number}. {label}" if number <= 9
                                    else label, tooltip=f"answer {label!r}")
            button.on_click(lambda _, i=idx, l=label: self._safely(self._answer, i, l))
            buttons.append(button)
        skip = widgets.Button(description="Skip", icon="forward")
        skip.on_click(lambda _, i=idx: self._safely(self._skip, i))
        card = widgets.VBox([text, widgets.HBox(buttons + [skip])],
                            layout=widgets.Layout(border="1px solid var(--jp-border-color2,#ccc)",
                                                  padding="4px", margin="2px 0"))
        card.add_class("nbllm-card")
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
        else:  # the counts only: a report refits the leave-one-out estimate
            answered, total = self.labeler.counts
            self.progress_line.value = f"<b>{answered} / {total}</b> answered"

    def _start_improve(self):
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.improve_button.disabled, self.stop_button.disabled = True, False
        self.status.value = "\u23f3 improving\u2026"
        if self.threaded:
            self._thread = threading.Thread(target=self._improve, daemon=True)
            self._thread.start()
        else:
            self._improve()

    def wait(self, timeout=None):
        """Block until a running Improve has finished."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _improve(self):
        total = self.labeler.counts[1]
        self.progress.max, self.progress.value = total, 0
        self.progress.layout.display = ""

        def on_rows(rows, values):
            self.progress.value = min(total, self.progress.value + len(rows))

        try:
            self.labeler.improve(on_rows=on_rows, stop=self._stop)
            self.refresh()
            self.status.value = f"improved from {len(self.labeler.answers)} answers"
        except Stopped:
            self.status.value = "stopped: every answer is kept; Improve again to finish"
        except BaseException as exc:  # noqa: B902
            self.status.value = coloured("error", f"{type(exc).__name__}: {exc}")
        finally:
            self.progress.layout.display = "none"
            self.improve_button.disabled, self.stop_button.disabled = False, True

    def _save(self):
        path = self.save_path.value.strip()
        if not path:
            raise InputError("save as: name a file, e.g. classifier.json")
        self.labeler.estimator_.save(path)
        self.status.value = (f"saved to {esc(path)}; load it with "
                             f"ZeroShotClassifier.load({esc(repr(path))})")

    def _show_code(self):
        self.code.value = code_box("The fitted classifier, in Python", estimator_code(
            self.labeler))


def estimator_code(labeler):
    """Python that rebuilds the Labeler's current classifier from its answers."""
    clf = labeler.estimator_
    args = [repr(clf.model_name)] if clf.model_name else []
    if clf.prompt is not None:
        args.append(f"prompt={clf.prompt!r}")
    answers = labeler.answers
    if clf.calibration == "fit":
        args.append("calibration='fit'")
        lines = [f"    ({t!r}, {y!r})," for t, y in zip(answers["text"], answers["label"])]
        fit = ("answers = [\n" + "\n".join(lines) + "\n]\n"
               f"clf = ZeroShotClassifier({', '.join(args)})\n"
               "clf.fit([t for t, _ in answers], [y for _, y in answers], "
               f"classes={labeler.labels!r})")
    else:
        args.append("calibration='content_free'")
        fit = (f"clf = ZeroShotClassifier({', '.join(args)})\n"
               f"clf.fit(None, {labeler.labels!r})")
    return "from nbllm import ZeroShotClassifier\n\n" + fit
