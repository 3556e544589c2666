"""An ipywidgets panel to shape a classifier by hand: model, labels, prompt, examples.

The panel is a thin layer: it reads its widgets, calls :mod:`nbllm.notebook.classify` (the
same functions the magics and the accessor use) and renders the result into
its ``Output``.  Work runs in a background thread so that Stop can be
clicked; every callback catches its exceptions and shows them as one line,
because ipywidgets would swallow them.
"""

import csv
import io
import threading
import traceback

import ipywidgets as widgets

from .. import options
from ..options import check_labels
from . import classify as api
from .inline_examples import parse_inline_examples
from .session import settings
from .display import NO_MATH, esc
from ..engine.prompts import (
    DEFAULT_EXAMPLE_TEMPLATE,
    DEFAULT_PROMPT_FEW_SHOT,
    DEFAULT_PROMPT_ZERO_SHOT,
    FEW_SHOT_PLACEHOLDERS,
    ZERO_SHOT_PLACEHOLDERS,
    template_placeholders,
)

ZERO, FEW = "zero-shot", "few-shot"
DEFAULTS = {ZERO: DEFAULT_PROMPT_ZERO_SHOT, FEW: DEFAULT_PROMPT_FEW_SHOT}
PLACEHOLDERS = {ZERO: ZERO_SHOT_PLACEHOLDERS, FEW: FEW_SHOT_PLACEHOLDERS}


def validate_prompt(template, mode):
    """One line saying whether the template's placeholders fit the mode.

    Returns
    -------
    (bool, str)
        Whether it is usable as is, and the message.
    """
    try:
        found = template_placeholders(template)
    except ValueError as exc:
        return False, str(exc)
    expected = set(PLACEHOLDERS[mode])
    missing, extra = sorted(expected - found), sorted(found - expected)
    if not missing and not extra:
        return True, "placeholders OK: " + ", ".join("{%s}" % p for p in sorted(expected))
    parts = []
    if missing:
        parts.append("missing " + ", ".join("{%s}" % p for p in missing))
    if extra:
        parts.append("unexpected " + ", ".join("{%s}" % p for p in extra))
    return False, "; ".join(parts)


def quote_option(value):
    """Quote one option value for the magics' parser, which strips one pair
    of outer quotes; raise when it holds both kinds of quote."""
    if not any(c in value for c in " \"'\t"):
        return value
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(
        f"{value!r} holds both ' and \" and cannot be written as a magic option; "
        "use the Python code instead"
    )


def _labels_option(labels):
    """Labels as one ``--labels`` value (CSV, so commas can be quoted)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(labels)
    return quote_option(buffer.getvalue())


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
        self.data, self.column, self.threaded = data, column, threaded
        self._thread = None
        self._stop = threading.Event()
        self.last_result = None
        self.last_error = None
        self.code = None
        from ..engine.models import DEFAULT_MODEL, loaded_models

        specs = [DEFAULT_MODEL] + [m.spec for m in loaded_models() if m.spec != DEFAULT_MODEL]
        self.model = widgets.Combobox(
            value=settings["model"] or DEFAULT_MODEL, options=specs,
            description="model", ensure_option=False,
        )
        self.device = widgets.Dropdown(
            options=["auto", "cpu", "cuda"], value=settings["device"]
            if settings["device"] in ("auto", "cpu", "cuda") else "auto",
            description="device",
        )
        self.mode = widgets.ToggleButtons(options=[ZERO, FEW], value=ZERO)
        self.labels = widgets.TagsInput(value=list(labels or []), allow_duplicates=False)
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
            placeholder="or a DataFrame variable (text, label columns)",
            description="from var",
        )
        self.max_samples = widgets.BoundedIntText(value=options.MAX_SAMPLES.default,
                                                  min=1, max=100,
                                                  description="max samples")
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
        self.raw = widgets.Checkbox(value=False, description="raw probabilities")
        self.threshold = widgets.BoundedFloatText(value=0.0, min=0.0, max=1.0, step=0.05,
                                                  description="threshold")
        self.policy = widgets.Dropdown(options=options.ERROR_LOW_PROB.choices,
                                       value=options.ERROR_LOW_PROB.default,
                                       description="low prob")
        self.classify_button = widgets.Button(description="Classify", button_style="primary",
                                              icon="play")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.preview_index = widgets.BoundedIntText(value=0, min=0, max=10**9,
                                                    description="text #")
        self.preview_button = widgets.Button(description="Preview", icon="eye")
        self.code_button = widgets.Button(description="Copy as code", icon="code")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="")
        self.status = widgets.HTML()
        self.traceback_button = widgets.Button(description="show traceback",
                                               layout=widgets.Layout(display="none"))
        self.code_box = widgets.Textarea(layout=widgets.Layout(width="95%", height="160px",
                                                               display="none"))
        self.output = widgets.Output()

        source = (
            widgets.HBox([widgets.HTML(f"texts: column <b>{esc(column)}</b>"), self.rows])
            if data is not None else self.texts
        )
        super().__init__([
            widgets.HBox([self.model, self.device, self.mode]),
            widgets.HBox([widgets.Label("labels"), self.labels]),
            self.prompt, widgets.HBox([self.reset_prompt, self.validation]),
            self.examples_box, source,
            widgets.HBox([self.raw, self.threshold, self.policy]),
            widgets.HBox([self.classify_button, self.stop_button, self.preview_index,
                          self.preview_button, self.code_button]),
            widgets.HBox([self.progress, self.status, self.traceback_button]),
            self.code_box, self.output,
        ])
        self.add_class("nbllm-panel")
        for name in NO_MATH.split():  # prices in texts are not maths
            self.add_class(name)
        self._buttons = [self.classify_button, self.preview_button, self.code_button,
                         self.reset_prompt]
        self.prompt.observe(lambda _: self._validate(), "value")
        self.mode.observe(self._mode_changed, "value")
        self.reset_prompt.on_click(lambda _: self._safely(self._reset_prompt))
        self.classify_button.on_click(lambda _: self._start(self._classify))
        self.preview_button.on_click(lambda _: self._start(self._preview))
        self.code_button.on_click(lambda _: self._safely(self._show_code))
        self.stop_button.on_click(lambda _: self._stop.set())
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
        ok, message = validate_prompt(self.prompt.value, self.mode.value)
        color = "#2e7d32" if ok else "#b00020"
        self.validation.value = f'<span style="color:{color}">{esc(message)}</span>'
        return ok

    def _mode_changed(self, change=None):
        if change is not None and self.prompt.value == DEFAULTS[change["old"]]:
            self.prompt.value = DEFAULTS[change["new"]]
        self.examples_box.layout.display = "" if self.mode.value == FEW else "none"
        self._validate()

    def _reset_prompt(self):
        self.prompt.value = DEFAULTS[self.mode.value]

    # ------------------------------------------------------------ inputs
    def _label_list(self):
        return check_labels(list(self.labels.value))

    def _text_list(self):
        if self.data is not None:
            start, end = self.rows.value
            return self.data[self.column].iloc[start:end].tolist()
        texts = [line.strip() for line in self.texts.value.splitlines() if line.strip()]
        if not texts:
            raise ValueError("no texts: write one text per line in the texts box")
        return texts

    def _examples(self):
        if self.mode.value != FEW:
            return None
        name = self.examples_var.value.strip()
        if name:
            from IPython import get_ipython

            shell = get_ipython()
            namespace = shell.user_ns if shell is not None else {}
            if name not in namespace:
                raise ValueError(f"examples: no variable named {name!r}")
            return namespace[name]
        pairs = parse_inline_examples(self.examples.value)
        if not pairs:
            raise ValueError("few-shot needs examples: 'label: text' lines or a variable")
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
        if not self._validate():
            raise ValueError(f"prompt: {validate_prompt(self.prompt.value, self.mode.value)[1]}")
        clf = api.build_estimator(
            self._label_list(), model=self.model.value.strip() or None,
            prompt=self.prompt.value, examples=self._examples(),
            max_samples=self.max_samples.value, raw=self.raw.value,
            threshold=self.threshold.value, device=self.device.value, progress=False,
            **self._template_option(),
        )
        return clf.set_params(error_low_prob=self.policy.value)

    # ------------------------------------------------------------ actions
    def _start(self, job):
        """Run a job with the buttons disabled, in a thread when threaded."""
        if self.busy:
            return
        self._stop.clear()
        for button in self._buttons:
            button.disabled = True
        self.stop_button.disabled = False
        self.status.value = "<i>working\u2026</i>"
        self.traceback_button.layout.display = "none"
        if self.threaded:
            self._thread = threading.Thread(target=self._safely, args=(job,), daemon=True)
            self._thread.start()
        else:
            self._safely(job)

    def _safely(self, job):
        try:
            job()
            self.last_error = None
        except BaseException as exc:  # noqa: B902 - KeyboardInterrupt too
            self.last_error = exc
            self._traceback = traceback.format_exc()
            self.status.value = (
                f'<span style="color:#b00020">{esc(type(exc).__name__)}: '
                f"{esc(exc)}</span>"
            )
            self.traceback_button.layout.display = ""
        finally:
            for button in self._buttons:
                button.disabled = False
            self.stop_button.disabled = True

    def _show(self, obj):
        # Assigning the outputs (not clear_output) works from a thread and
        # without a front end answering.
        self.output.outputs = ()
        self.output.append_display_data(obj)

    def _classify(self):
        clf = self._estimator()
        texts = self._text_list()
        self.progress.max, self.progress.value = max(len(texts), 1), 0

        def on_rows(rows, values):
            self.progress.value = min(self.progress.max, self.progress.value + len(rows))

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
            raise ValueError(f"text # must be below {len(texts)}; got {i}")
        self._show(api.preview(clf, texts[i]))
        self.status.value = f"preview of text #{i}"

    def _show_traceback(self):
        self.output.outputs = ()
        self.output.append_stdout(getattr(self, "_traceback", ""))

    # ------------------------------------------------------------ code
    def _show_code(self):
        magic, python = self.as_code()
        self.code = (magic, python)
        self.code_box.value = f"# --- as a cell magic ---\n{magic}\n\n# --- as Python ---\n{python}"
        self.code_box.layout.display = ""
        self.status.value = "code below: copy it into a cell"

    def as_code(self):
        """The equivalent magic cell(s) and Python code, as two strings.

        The magic part may be two cells: one assigning the prompt to a
        variable, then the magic cell itself.
        """
        labels = self._label_list()
        model = self.model.value.strip()
        few = self.mode.value == FEW
        options = [f"--labels {_labels_option(labels)}"]
        if model:
            options.append(f"--model {quote_option(model)}")
        options += [magic for magic, _ in self._option_pairs()]
        setup = ""
        if self.prompt.value != DEFAULTS[self.mode.value]:
            setup = f"nbllm_prompt = {self.prompt.value!r}\n\n"
            options.append("--prompt nbllm_prompt")
        texts = "\n".join(self._text_list())
        if few:
            options.append(f"--max-samples {self.max_samples.value}")
            if self._template_option():
                setup += f"nbllm_example_template = {self.example_template.value!r}\n\n"
                options.append("--example-template nbllm_example_template")
            if self.examples_var.value.strip():
                options.append(f"--examples {self.examples_var.value.strip()}")
                body = texts
            else:
                lines = [f'"{label}": {text}' if ":" in label else f"{label}: {text}"
                         for text, label in self._examples()]
                body = "\n".join(lines) + "\n---\n" + texts
        else:
            body = texts
        magic = f"{setup}%%{'fewshot' if few else 'zeroshot'} {' '.join(options)}\n{body}"
        python = self._python_code(labels, model, few)
        return magic, python

    def _option_pairs(self):
        """The options that differ from their defaults, as (magic option,
        estimator keyword) pairs, so both kinds of code say the same."""
        pairs = []
        if self.device.value != "auto":
            pairs.append((f"--device {self.device.value}", f"device={self.device.value!r}"))
        if self.raw.value:
            pairs.append(("--raw", "probas_sum_to_1=False"))
        if self.threshold.value:
            value = f"{self.threshold.value:g}"
            pairs.append((f"--threshold {value}", f"threshold_low_prob={value}"))
        return pairs

    def _python_code(self, labels, model, few):
        cls = "FewShotClassifier" if few else "ZeroShotClassifier"
        args = [repr(model)] if model else []
        if self.prompt.value != DEFAULTS[self.mode.value]:
            args.append(f"prompt={self.prompt.value!r}")
        args += [python for _, python in self._option_pairs()]
        if self.policy.value != options.ERROR_LOW_PROB.default:
            args.append(f"error_low_prob={self.policy.value!r}")
        if few:
            args += [f"max_samples={self.max_samples.value}",
                     f"random_state={options.NOTEBOOK_RANDOM_STATE}"]
            if self._template_option():
                args.append(f"example_template={self.example_template.value!r}")
        lines = [f"from nbllm import {cls}", "", f"clf = {cls}({', '.join(args)})"]
        if few:
            source = self.examples_var.value.strip()
            # Labels without examples must stay predictable, as in the panel.
            extra = (f", classes={labels!r}"
                     if set(labels) - {str(y) for y in self._example_labels()} else "")
            if source:
                lines.append(f"clf.fit({source}['text'], {source}['label']{extra})")
            else:
                pairs = self._examples()
                lines.append(f"examples = {pairs!r}")
                lines.append("clf.fit([t for t, _ in examples], [y for _, y in examples]"
                             f"{extra})")
        else:
            lines.append(f"clf.fit(None, {labels!r})")
        if self.data is not None:
            start, end = self.rows.value
            lines.append(f"texts = data[{self.column!r}].iloc[{start}:{end}].tolist()"
                         "  # data: your DataFrame")
        else:
            lines.append(f"texts = {self._text_list()!r}")
        lines.append("probas = clf.predict_proba(texts)  # columns: clf.classes_")
        return "\n".join(lines)
