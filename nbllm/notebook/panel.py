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

from .. import options
from ..exceptions import ExamplesError, InputError, PromptError, TextsError
from ..options import check_labels
from . import classify as api
from .inline_examples import parse_inline_examples
from .session import session
from .display import NO_MATH, esc
from .panel_code import PanelSettings, build_code, code_box, variable_holding
from ..engine.status import listening
from ..warnings_to_user import collecting
from ..engine.prompts import (
    DEFAULT_EXAMPLE_TEMPLATE,
    DEFAULT_PROMPT_FEW_SHOT,
    DEFAULT_PROMPT_ZERO_SHOT,
    FEW_SHOT_PLACEHOLDERS,
    ZERO_SHOT_PLACEHOLDERS,
    template_placeholders,
)

ZERO, FEW = "zero-shot", "few-shot"
# The devices the panel offers (cuda:N is for the other ways in).
DEVICES = ("auto", "cpu", "cuda")
DEFAULTS = {ZERO: DEFAULT_PROMPT_ZERO_SHOT, FEW: DEFAULT_PROMPT_FEW_SHOT}
PLACEHOLDERS = {ZERO: ZERO_SHOT_PLACEHOLDERS, FEW: FEW_SHOT_PLACEHOLDERS}


# Colours from JupyterLab's theme (light or dark), with fallbacks elsewhere.
COLOURS = {
    "ok": "var(--jp-success-color1,#2e7d32)",
    "warning": "var(--jp-warn-color1,#b26a00)",
    "error": "var(--jp-error-color1,#b00020)",
}


def _default(option):
    """The option's default in the panel (the table's, or the panel's own)."""
    return option.default_for(options.PANEL)


def coloured(kind, text):
    """One escaped line in the theme's colour for ``kind`` (ok, warning, error)."""
    return f'<span class="nbllm-{kind}" style="color:{COLOURS[kind]}">{esc(text)}</span>'


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


class Panel(widgets.VBox):
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
                         self.reset_prompt, self.save_button]
        self.prompt.observe(lambda _: self._validate(), "value")
        self.mode.observe(self._mode_changed, "value")
        for widget in self._inputs:  # the code shown no longer says what would run
            widget.observe(lambda _: self._hide_code(), "value")
        self.reset_prompt.on_click(lambda _: self._safely(self._reset_prompt))
        self.classify_button.on_click(lambda _: self._start(self._classify))
        self.preview_button.on_click(lambda _: self._start(self._preview))
        self.code_button.on_click(lambda _: self._safely(self._show_code, clear="error"))
        self.save_button.on_click(lambda _: self._safely(self._save, clear="error"))
        self.stop_button.on_click(lambda _: self._stop.set())
        self.traceback_button.on_click(lambda _: self._show_traceback())
        self._mode_changed()

    def _make_widgets(self, data, column, labels):
        from ..engine.models import DEFAULT_MODEL, loaded_models

        initial = {"description_width": "initial"}
        specs = [DEFAULT_MODEL] + [m.spec for m in loaded_models() if m.spec != DEFAULT_MODEL]
        self.model = widgets.Combobox(
            value=session.model or DEFAULT_MODEL, options=specs,
            description="model", ensure_option=False,
        )
        self.device = widgets.Dropdown(
            options=DEVICES, value=session.device if session.device in DEVICES
            else options.DEVICE.default_for(options.PANEL),
            description=options.DEVICE.widget, layout=widgets.Layout(width="180px"),
        )
        self.mode = widgets.ToggleButtons(options=[ZERO, FEW], value=ZERO)
        self.labels = widgets.TagsInput(
            value=list(labels or []), allow_duplicates=False,
            placeholder="type a label, then Enter",
            layout=widgets.Layout(flex="1 1 auto", width="auto", max_width="860px",
                                  min_height="28px"),
        )
        self.prompt = widgets.Textarea(
            value=DEFAULT_PROMPT_ZERO_SHOT, description="prompt",
            layout=widgets.Layout(width="95%", height="90px"),
        )
        self.reset_prompt = widgets.Button(description="reset to default", icon="undo")
        self.validation = widgets.HTML()
        self.examples = widgets.Textarea(
            placeholder="label: text  (one example per line)", description="examples",
            layout=widgets.Layout(width="95%", height="90px"),
        )
        self.examples_var = widgets.Text(
            placeholder="a DataFrame with text and label columns",
            description="or from variable", style=initial,
            layout=widgets.Layout(width="420px"),
        )
        self.max_samples = widgets.BoundedIntText(
            value=_default(options.MAX_SAMPLES), min=1, max=100,
            description=options.MAX_SAMPLES.widget, style=initial,
            layout=widgets.Layout(width="170px"),
        )
        self.example_template = widgets.Textarea(
            value=DEFAULT_EXAMPLE_TEMPLATE, description="example as",
            layout=widgets.Layout(width="95%", height="50px"),
        )
        self.examples_box = widgets.VBox([self.examples, widgets.HBox(
            [self.examples_var, self.max_samples]), self.example_template])
        self.texts = widgets.Textarea(
            placeholder="one text per line", description="texts",
            layout=widgets.Layout(width="95%", height="110px"),
        )
        n_rows = len(data) if data is not None else 0
        self.rows = widgets.IntRangeSlider(
            value=(0, min(n_rows, 20)), min=0, max=max(n_rows, 1), description="rows",
            layout=widgets.Layout(width="60%"),
        )
        self.raw = widgets.Checkbox(value=_default(options.PROBAS_SUM_TO_1),
                                    description=options.PROBAS_SUM_TO_1.widget)
        self.threshold = widgets.BoundedFloatText(
            value=_default(options.THRESHOLD_LOW_PROB), min=0.0, max=1.0, step=0.05,
            description=options.THRESHOLD_LOW_PROB.widget)
        self.policy = widgets.Dropdown(options=options.ERROR_LOW_PROB.choices,
                                       value=_default(options.ERROR_LOW_PROB),
                                       description=options.ERROR_LOW_PROB.widget)
        # The one mapping from the table's options to the panel's widgets: the
        # classifier is built, and its code written, from it.
        self.option_widgets = {
            options.PROBAS_SUM_TO_1: self.raw, options.DEVICE: self.device,
            options.ERROR_LOW_PROB: self.policy,
            options.THRESHOLD_LOW_PROB: self.threshold,
            options.MAX_SAMPLES: self.max_samples,
        }
        for option, widget in self.option_widgets.items():
            widget.tooltip = option.help_text  # the magic's --help line, on hover
        self.classify_button = widgets.Button(description="Classify", button_style="primary",
                                              icon="play")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.preview_button = widgets.Button(description="Preview", icon="eye")
        self.preview_index = widgets.BoundedIntText(
            value=0, min=0, max=10**9, description="of text #", style=initial,
            layout=widgets.Layout(width="130px"),
        )
        self.code_button = widgets.Button(description="Copy as code", icon="code")
        self.save_path = widgets.Text(value="classifier.json", description="save as",
                                      layout=widgets.Layout(width="260px"))
        self.save_button = widgets.Button(description="Save classifier", icon="save")
        hidden = dict(display="none")
        self.progress = widgets.IntProgress(value=0, min=0, max=1,
                                            layout=widgets.Layout(width="200px", **hidden))
        self.progress_count = widgets.Label(layout=widgets.Layout(**hidden))
        self.status = widgets.HTML()
        self.traceback_button = widgets.Button(description="show traceback",
                                               layout=widgets.Layout(**hidden))
        self.warning_line = widgets.HTML()
        self.magic_code, self.python_code = widgets.HTML(), widgets.HTML()
        self.code_area = widgets.VBox([self.magic_code, self.python_code],
                                      layout=widgets.Layout(width="95%", **hidden))
        self.output = widgets.Output()
        self._inputs = [self.model, self.labels, self.prompt, self.examples,
                        self.examples_var, self.example_template, self.texts, self.rows,
                        *self.option_widgets.values()]

        source = (
            widgets.HBox([widgets.HTML(f"texts: column <b>{esc(column)}</b>"), self.rows])
            if data is not None else self.texts
        )
        # Aligned with the other widgets' descriptions (JupyterLab's width).
        caption = widgets.HTML(
            '<div style="width:var(--jp-widgets-inline-description-width,80px);'
            'text-align:right;padding-right:8px;box-sizing:border-box;'
            'line-height:var(--jp-widgets-inline-height,28px)">labels</div>',
            layout=widgets.Layout(margin="0"),
        )
        self.children = [
            widgets.HBox([self.model, self.device, self.mode]),
            widgets.HBox([caption, self.labels], layout=widgets.Layout(width="95%")),
            self.prompt, widgets.HBox([self.reset_prompt, self.validation]),
            self.examples_box, source,
            widgets.HBox([self.raw, self.threshold, self.policy]),
            widgets.HBox([self.classify_button, self.stop_button, self.preview_button,
                          self.preview_index, self.code_button]),
            widgets.HBox([self.save_path, self.save_button]),
            widgets.HBox([self.progress, self.progress_count, self.status,
                          self.traceback_button]),
            self.warning_line, self.code_area, self.output,
        ]

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
        """Remove the outputs that belong to an earlier action: all of them, or
        (``what='error'``, for Copy as code) only an earlier error and warnings."""
        if what == "all":
            self._hide_code()
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

    # ------------------------------------------------------------ inputs
    def _label_list(self):
        return check_labels(list(self.labels.value))

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
            progress=_default(options.PROGRESS), **self._template_option(),
            **{o.keyword: v for o, v in shown.items() if o.keyword in api.OPTION_NAMES},
        )
        # The options build_estimator has no keyword for.
        return clf.set_params(**{o.name: o.to_estimator(v) for o, v in shown.items()
                                 if o.keyword not in api.OPTION_NAMES})

    # ------------------------------------------------------------ actions
    def _start(self, job):
        """Run a job with the buttons disabled, in a thread when threaded."""
        if self.busy:
            return
        self._stop.clear()
        for button in self._buttons:
            button.disabled = True
        self.stop_button.disabled = False
        self.status.value = "\u23f3 starting\u2026"
        if self.threaded:
            self._thread = threading.Thread(target=self._safely, args=(job, "all"),
                                            daemon=True)
            self._thread.start()
        else:
            self._safely(job, "all")

    def _safely(self, job, clear=None):
        """Run ``job``; show its status lines, warnings and any error in the panel.

        ``clear`` says what of the earlier outputs goes first (see :meth:`_clear`).
        """
        if clear:
            self._clear(clear)
        try:
            # Messages name options as the panel does ("raw probabilities").
            with options.way_in(options.PANEL), listening(self._report), \
                    collecting(self._warned):
                job()
            self.last_error = None
        except BaseException as exc:  # noqa: B902 - KeyboardInterrupt too
            self.last_error = exc
            self._traceback = traceback.format_exc()
            self.status.value = coloured("error", f"{type(exc).__name__}: {exc}")
            self.traceback_button.layout.display = ""
        finally:
            for button in self._buttons:
                button.disabled = False
            self.stop_button.disabled = True
            self.progress.layout.display = self.progress_count.layout.display = "none"

    def _show(self, obj):
        # Assigning the outputs (not clear_output) works from a thread and
        # without a front end answering.
        self.output.outputs = ()
        self.output.append_display_data(obj)

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
        self.last_result = result
        self._show(result)
        done = len(result) - int(result.pending.sum())
        self.status.value = (
            f"stopped: {done} of {len(result)} texts classified" if result.stopped
            else f"{len(result)} texts classified"
        )

    def _preview(self):
        clf = self._estimator()
        texts = self._text_list()
        i = self.preview_index.value
        if i >= len(texts):
            raise InputError(f"text # must be below {len(texts)}; got {i}")
        self._show(api.preview(clf, texts[i]))
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
        self.magic_code.value = code_box("As a cell magic", code.magic, code.magic_note)
        self.python_code.value = code_box("As Python", code.python, code.python_note)
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
                values[option] = option.to_estimator(_default(option))
        return values
