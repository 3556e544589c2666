"""An ipywidgets panel to shape a classifier by hand: model, labels, prompt, examples.

The panel is a thin layer: it reads its widgets, calls :mod:`nbllm.notebook.classify` (the
same functions the magics and the accessor use) and renders the result into
its ``Output``.  Work runs in a background thread so that Stop can be
clicked; every callback catches its exceptions and shows them as one line,
because ipywidgets would swallow them.
"""

import threading
import traceback

import ipywidgets as widgets

from ... import options
from ...exceptions import ExamplesError, InputError, PromptError, TextsError, UserError
from ...options import check_labels
from .. import classify as api
from ..inline_examples import parse_inline_examples
from ..display import NO_MATH, esc
from .code import PanelSettings, build_code, variable_holding
from .labels import check_not_merged, split_added
from .widgets import FEW, ZERO, PanelWidgets, panel_default
from ...engine.status import listening
from ...warnings_to_user import collecting
from ...engine.scoring.prompts import (
    DEFAULT_EXAMPLE_TEMPLATE,
    DEFAULT_PROMPT_FEW_SHOT,
    DEFAULT_PROMPT_ZERO_SHOT,
    FEW_SHOT_PLACEHOLDERS,
    ZERO_SHOT_PLACEHOLDERS,
    template_placeholders,
)

DEFAULTS = {ZERO: DEFAULT_PROMPT_ZERO_SHOT, FEW: DEFAULT_PROMPT_FEW_SHOT}
PLACEHOLDERS = {ZERO: ZERO_SHOT_PLACEHOLDERS, FEW: FEW_SHOT_PLACEHOLDERS}


# Colours from JupyterLab's theme (light or dark), with fallbacks elsewhere.
COLOURS = {
    "ok": "var(--jp-success-color1,#2e7d32)",
    "warning": "var(--jp-warn-color1,#b26a00)",
    "error": "var(--jp-error-color1,#b00020)",
}


def coloured(kind, text):
    """One escaped line in the theme's colour for ``kind`` (ok, warning, error)."""
    return f'<span class="nbllm-{kind}" style="color:{COLOURS[kind]}">{esc(text)}</span>'


# A cell magic must be its cell's first line, so ``%load_ext nbllm`` cannot
# go in the snippet itself: the title says it, and the panel loads the magics
# in its own kernel (load_magics), where the snippet is pasted most often.
MAGIC_TITLE = "As a cell magic (after %load_ext nbllm)"


def load_magics():
    """Register nbllm's magics in the running IPython, as ``%load_ext nbllm``
    does (nothing outside IPython, nothing when they are there already).

    The extension is not marked as loaded: a later ``%load_ext nbllm`` then
    registers them again silently, rather than saying it was loaded before.
    """
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or "zeroshot" in shell.magics_manager.magics["cell"]:
        return
    from ... import load_ipython_extension

    load_ipython_extension(shell)


def validate_prompt(template, mode):
    """What the estimators will say of the template's placeholders in this mode.

    The panel follows the estimators' rules: a template that is not a valid
    format string is refused, missing or extra placeholders only warn.

    Returns
    -------
    (str, str)
        The level (``'ok'``, ``'warning'`` or ``'error'``) and the message.
    """
    try:
        found = template_placeholders(template)
    except PromptError as exc:
        return "error", str(exc)
    expected = set(PLACEHOLDERS[mode])
    missing, extra = sorted(expected - found), sorted(found - expected)
    if not missing and not extra:
        return "ok", "placeholders OK: " + ", ".join("{%s}" % p for p in sorted(expected))
    parts = []
    if missing:
        parts.append("missing " + ", ".join("{%s}" % p for p in missing))
    if extra:
        parts.append("unexpected " + ", ".join("{%s}" % p for p in extra))
    return "warning", "; ".join(parts) + " (it runs, but check the prompt)"


class Panel(PanelWidgets, widgets.VBox):
    """Shape a zero- or few-shot classifier with widgets and see results at once.

    Parameters
    ----------
    data : pandas.DataFrame or None
        Texts to classify come from ``data[column]`` (with a row range)
        instead of the text box.
    column : str or None
        The text column of ``data``.
    labels : list of str or None
        Initial labels.
    threaded : bool
        Run Classify and Preview in a background thread (so Stop works in a
        live notebook).  Tests may set False to run synchronously.
    """

    def __init__(self, data=None, column=None, labels=None, *, threaded=True):
        super().__init__()
        self.data, self.column, self.threaded = data, column, threaded
        self._thread = None
        self._stop = threading.Event()
        self._traceback = ""
        self.last_result = None
        self.last_error = None
        self.code = None
        self.warnings = []
        self._make_widgets(data, column, labels)
        self.add_class("nbllm-panel")
        for name in NO_MATH.split():  # prices in texts are not maths
            self.add_class(name)
        self._buttons = [self.classify_button, self.preview_button, self.code_button,
                         self.reset_prompt, self.save_button, self.explain_button]
        # Whether the last run was Explain: Copy as code then writes the explain call.
        self._explained = False
        self._splitting = False
        self.labels.observe(self._labels_changed, "value")
        self.prompt.observe(lambda _: self._validate(), "value")
        self.mode.observe(self._mode_changed, "value")
        for widget in self._inputs:  # the code shown no longer says what would run
            widget.observe(lambda _: self._hide_code(), "value")
        self.reset_prompt.on_click(lambda _: self._safely(self._reset_prompt))
        self.classify_button.on_click(lambda _: self._start(self._classify))
        self.preview_button.on_click(lambda _: self._start(self._preview, clear="preview"))
        self.code_button.on_click(lambda _: self._safely(self._show_code, clear="error"))
        self.explain_button.on_click(lambda _: self._start(
            self._explain, clear="preview", doing="explaining: building the classifier"))
        # Saving fits the classifier, which may load the model: it runs as a job.
        self.save_button.on_click(lambda _: self._start(
            self._save, clear="error", doing="saving: building the classifier"))
        self.stop_button.on_click(lambda _: self._stop_soon())
        self.traceback_button.on_click(lambda _: self._show_traceback())
        self._mode_changed()

    # ------------------------------------------------------------ state
    @property
    def busy(self):
        """Whether a Classify or Preview is running."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout=None):
        """Block until the running job (if any) has finished."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _validate(self):
        level, message = validate_prompt(self.prompt.value, self.mode.value)
        self.validation.value = coloured(level, message)
        return level, message

    def _mode_changed(self, change=None):
        if change is not None and self.prompt.value == DEFAULTS[change["old"]]:
            self.prompt.value = DEFAULTS[change["new"]]
        self.examples_box.layout.display = "" if self.mode.value == FEW else "none"
        self._validate()
        if change is not None:  # what was shown belongs to the other mode
            self._clear()
            self.status.value = ""

    def _reset_prompt(self):
        self.prompt.value = DEFAULTS[self.mode.value]

    def _hide_code(self):
        self.code = None
        self.code_area.layout.display = "none"

    def _clear(self, what="all"):
        """Remove the outputs that belong to an earlier action.

        ``what`` is ``'all'`` (Classify), ``'preview'`` (the code shown and an
        earlier preview, but not the result table) or ``'error'`` (Copy as
        code, Save: only an earlier error and warnings).
        """
        if what in ("all", "preview"):
            self._hide_code()
            self.preview_output.outputs = ()
        if what == "all":
            self.output.outputs = ()
        elif self._traceback and self.output.outputs and \
                self.output.outputs[0].get("output_type") == "stream":
            self.output.outputs = ()  # the traceback shown
        self.traceback_button.layout.display = "none"
        self._traceback = ""
        self.warnings = []
        self.warning_line.value = ""

    def _report(self, message):
        """Show one of the engine's status lines ("loading …")."""
        self.status.value = f"\u23f3 {esc(message)}"

    def _warned(self, message):
        """Show a warning of the estimators under the buttons (each once)."""
        if message not in self.warnings:
            self.warnings.append(message)
            self.warning_line.value = "<br>".join(
                coloured("warning", f"\u26a0 {m}") for m in self.warnings)

    def _labels_changed(self, change):
        """Split a typed or pasted ``a, b`` tag into labels, as the magic reads
        ``--labels`` (see :mod:`.panel_labels`)."""
        if self._splitting:
            return
        labels = split_added(change["old"], change["new"])
        if labels is None:
            return
        self._splitting = True  # the split labels are not split again
        try:
            self.labels.value = labels
        finally:
            self._splitting = False

    # ------------------------------------------------------------ inputs
    def _label_list(self):
        return check_not_merged(check_labels(list(self.labels.value)))

    def text_list(self):
        """The texts the panel classifies: the typed lines (blank ones left
        out) or the DataFrame column's rows in the range.

        Raises
        ------
        TextsError
            When no text is typed.
        """
        return self._text_list()

    def _text_list(self):
        if self.data is not None:
            start, end = self.rows.value
            return self.data[self.column].iloc[start:end].tolist()
        texts = [line.strip() for line in self.texts.value.splitlines() if line.strip()]
        if not texts:
            raise TextsError("no texts: write one text per line in the texts box")
        return texts

    def _namespace(self):
        from IPython import get_ipython

        shell = get_ipython()
        return shell.user_ns if shell is not None else {}

    def _examples(self):
        if self.mode.value != FEW:
            return None
        name = self.examples_var.value.strip()
        if name:
            namespace = self._namespace()
            if name not in namespace:
                raise ExamplesError(f"examples: no variable named {name!r}")
            return namespace[name]
        pairs = parse_inline_examples(self.examples.value)
        if not pairs:
            raise ExamplesError("few-shot needs examples: 'label: text' lines or a variable")
        return pairs

    def _template_option(self):
        """``example_template=`` when few-shot uses a template of its own."""
        if self.mode.value != FEW or self.example_template.value == DEFAULT_EXAMPLE_TEMPLATE:
            return {}
        return {"example_template": self.example_template.value}

    def _example_labels(self):
        examples = self._examples()
        if hasattr(examples, "columns"):
            return examples["label"].tolist()
        return [label for _, label in examples]

    def _estimator(self):
        level, message = self._validate()
        if level == "error":
            raise PromptError(f"prompt: {message}")
        shown = {option: widget.value for option, widget in self.option_widgets.items()}
        clf = api.build_estimator(
            self._label_list(), model=self.model.value.strip() or None,
            prompt=self.prompt.value, examples=self._examples(),
            progress=panel_default(options.PROGRESS), **self._template_option(),
            **{o.keyword: v for o, v in shown.items() if o.keyword in api.OPTION_NAMES},
        )
        # The options build_estimator has no keyword for.
        return clf.set_params(**{o.name: o.to_estimator(v) for o, v in shown.items()
                                 if o.keyword not in api.OPTION_NAMES})

    # ------------------------------------------------------------ actions
    def _start(self, job, clear="all", doing="starting"):
        """Run a job with the buttons disabled, in a thread when threaded.

        ``doing`` is shown at once (the engine's own lines follow), so a
        click never meets a silent panel; ``clear`` goes to :meth:`_clear`.
        """
        if self.busy:
            return
        self._stop.clear()
        for button in self._buttons:
            button.disabled = True
        self.stop_button.disabled = False
        self._report(doing + "\u2026")
        if self.threaded:
            self._thread = threading.Thread(target=self._safely, args=(job, clear),
                                            daemon=True)
            self._thread.start()
        else:
            self._safely(job, clear)

    def _stop_soon(self):
        """Ask the run to stop; it ends after its batch, which may take a while."""
        self._stop.set()
        self._report("stopping after the current batch\u2026")

    def _safely(self, job, clear=None):
        """Run ``job``; show its status lines, warnings and any error in the panel.

        ``clear`` says what of the earlier outputs goes first (see :meth:`_clear`).
        """
        if clear:
            self._clear(clear)
        try:
            # Warnings name options as the panel does ("raw probabilities").
            with listening(self._report), collecting(self._warned, options.PANEL):
                job()
            self.last_error = None
        except BaseException as exc:  # noqa: B902 - KeyboardInterrupt too
            self.last_error = exc
            self._traceback = traceback.format_exc()
            # A user error names options as the panel does.
            shown = options.in_words(exc, options.PANEL) if isinstance(exc, UserError) else exc
            self.status.value = coloured("error", f"{type(exc).__name__}: {shown}")
            self.traceback_button.layout.display = ""
        finally:
            for button in self._buttons:
                button.disabled = False
            self.stop_button.disabled = True
            self.progress.layout.display = self.progress_count.layout.display = "none"

    def _show(self, obj, output=None):
        # Assigning the outputs (not clear_output) works from a thread and
        # without a front end answering.
        output = output or self.output
        output.outputs = ()
        output.append_display_data(obj)

    def _classify(self):
        clf = self._estimator()
        texts = self._text_list()
        total = len(texts)
        self.progress.max, self.progress.value = max(total, 1), 0
        self.progress_count.value = f"0 / {total} texts"
        self.progress.layout.display = self.progress_count.layout.display = ""

        def on_rows(rows, values):
            self.progress.value = min(self.progress.max, self.progress.value + len(rows))
            self.progress_count.value = f"{self.progress.value} / {total} texts"

        result = api.classify(texts, estimator=clf, on_rows=on_rows, stop=self._stop,
                              skip_missing=True)
        self._explained = False
        self.last_result = result
        self._show(result)
        done = len(result) - int(result.pending.sum())
        self.status.value = (
            f"stopped: {done} of {len(result)} texts classified" if result.stopped
            else f"{len(result)} texts classified"
        )

    def _explain(self):
        """Explain the first rows (as many as the highlight shows) under the table."""
        clf = self._estimator()
        texts = self._text_list()[:api.EXPLAIN_ROWS]
        explanation = api.explain(texts, estimator=clf)
        self._explained = True
        self._show(explanation, self.preview_output)
        self.status.value = f"{len(texts)} text(s) explained (the first {api.EXPLAIN_ROWS} at most)"

    def _preview(self):
        clf = self._estimator()
        texts = self._text_list()
        i = self.preview_index.value
        if i >= len(texts):
            raise InputError(f"text # must be below {len(texts)}; got {i}")
        self._show(api.preview(clf, texts[i]), self.preview_output)
        self.status.value = f"preview of text #{i}"

    def _save(self):
        """Save the classifier the panel would run (JSON, see ``save()``)."""
        path = self.save_path.value.strip()
        if not path:
            raise InputError("save as: name a file, e.g. classifier.json")
        self._estimator().save(path)
        self.status.value = f"saved to {esc(path)}; load it with {esc(self._class_name())}" \
                            f".load({esc(repr(path))})"

    def _class_name(self):
        return "FewShotClassifier" if self.mode.value == FEW else "ZeroShotClassifier"

    def _show_traceback(self):
        self.output.outputs = ()
        self.output.append_stdout(self._traceback)

    # ------------------------------------------------------------ code
    def _show_code(self):
        code = build_code(self.code_settings())
        self.code = (code.magic, code.python)
        load_magics()
        self.magic_code.show(MAGIC_TITLE, code.magic, code.magic_note)
        self.python_code.show("As Python", code.python, code.python_note)
        self.code_area.layout.display = ""
        self.status.value = "code below: copy either snippet into a new cell"

    def as_code(self):
        """The equivalent magic cell and Python code, as two strings.

        The magic is None when the settings cannot be written as magic
        options (a prompt with a backslash, say); the Python always works.
        """
        code = build_code(self.code_settings())
        return code.magic, code.python

    def code_settings(self):
        """What the panel would run now, as a :class:`PanelSettings`."""
        few = self.mode.value == FEW
        labels = self._label_list()
        settings_ = PanelSettings(
            few=few, labels=labels, model=self.model.value.strip(),
            prompt=None if self.prompt.value == DEFAULTS[self.mode.value]
            else self.prompt.value,
            options=self._option_values(),
            example_template=self._template_option().get("example_template"),
            explain=self._explained,
        )
        if few:
            settings_.examples_var = self.examples_var.value.strip()
            examples = self._examples()
            if not settings_.examples_var:
                settings_.examples = list(examples)
            settings_.example_labels = self._example_labels()
        if self.data is not None:
            settings_.data_name = variable_holding(self.data, self._namespace())
            settings_.column, settings_.rows = self.column, tuple(self.rows.value)
        else:
            settings_.texts = self._text_list()
            settings_.panel_name = variable_holding(self, self._namespace())
        return settings_

    def _option_values(self):
        """The options of the classifier the panel builds, in the estimators'
        words and the table's order: the widgets' values, and the notebook's
        own defaults of options without a widget (the few-shot
        ``random_state=0``; a None there means the estimators' default, and
        the panel's ``progress`` changes no result)."""
        classifier = options.FEW_SHOT if self.mode.value == FEW else options.ZERO_SHOT
        values = {}
        for option in options.taken_by(classifier):
            if option in self.option_widgets:
                values[option] = option.to_estimator(self.option_widgets[option].value)
            elif option.overrides.get(options.NOTEBOOK) is not None:
                values[option] = option.to_estimator(panel_default(option))
        return values
