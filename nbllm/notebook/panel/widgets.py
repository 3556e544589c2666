"""The panel's widgets and their layout (the :class:`.panel.Panel` reads and drives them).

Kept apart from the panel's behaviour so that each module stays short.  Every
caption and button is given the room its words need: nothing in the panel is
cut off (the browser test measures it).
"""

import ipywidgets as widgets

from ... import options
from ...engine.loading.devices import DEVICE_NAMES
from ...engine.scoring.prompts import DEFAULT_EXAMPLE_TEMPLATE, DEFAULT_PROMPT_ZERO_SHOT
from ..display import esc
from .front_end import CodeBox, EnterAddsTag
from .labels import HINT
from ..session import session

ZERO, FEW = "zero-shot", "few-shot"

# The chosen mode (zero- or few-shot) in a blue of JupyterLab's theme:
# ipywidgets marks it with --jp-layout-color3 beside the others'
# --jp-layout-color2, greys 1.6:1 apart in both themes, which the dark
# theme's dim text all but hides.  White on the
# light theme's blue, black on the dark theme's lighter one: 4.6:1 and 9.5:1
# for the words, 4.0:1 and 4.5:1 against the other mode (tests/test_browser.py
# measures it).
PANEL_STYLE = (
    "<style>.nbllm-panel .widget-toggle-button.mod-active{"
    "background-color:var(--jp-brand-color1,#1976d2);color:#fff}"
    "body[data-jp-theme-light='false'] .nbllm-panel .widget-toggle-button.mod-active{"
    "background-color:var(--jp-brand-color2,#64b5f6);color:#000}</style>"
)


def panel_default(option):
    """The option's default in the panel (the table's, or the panel's own)."""
    return option.default_for(options.PANEL)


def fit_rows(area, least=3):
    """Make a text area tall enough for all its lines (a prompt is read whole)."""
    area.rows = max(least, area.value.count("\n") + 2)


def _button(description, **kwargs):
    # width auto: the button is as wide as its words (ipywidgets' fixed
    # width cuts "show traceback" to "show traceba…").
    return widgets.Button(description=description, layout=widgets.Layout(width="auto"),
                          **kwargs)


class PanelWidgets:
    """The mixin that makes the panel's widgets (:meth:`_make_widgets`)."""

    def _make_widgets(self, data, column, labels):
        from ...engine.loading.models import DEFAULT_MODEL, loaded_models

        initial = {"description_width": "initial"}
        specs = [DEFAULT_MODEL] + [m.spec for m in loaded_models() if m.spec != DEFAULT_MODEL]
        self.model = widgets.Combobox(
            value=session.model or DEFAULT_MODEL, options=specs,
            description="model", ensure_option=False,
        )
        self.device = widgets.Dropdown(
            # The devices by name (cuda:N is for the other ways in).
            options=DEVICE_NAMES, value=session.device if session.device in DEVICE_NAMES
            else options.DEVICE.default_for(options.PANEL),
            description=options.DEVICE.widget, layout=widgets.Layout(width="180px"),
        )
        self.mode = widgets.ToggleButtons(options=[ZERO, FEW], value=ZERO)
        self.labels = widgets.TagsInput(
            value=list(labels or []), allow_duplicates=False,
            placeholder=HINT,
            layout=widgets.Layout(flex="1 1 auto", width="auto", max_width="860px",
                                  min_height="28px"),
        )
        # No fixed height: the areas grow with their lines (fit_rows), so the
        # few-shot prompt's last line ("Label:") is never below the fold.
        self.prompt = widgets.Textarea(
            value=DEFAULT_PROMPT_ZERO_SHOT, description="prompt",
            layout=widgets.Layout(width="95%"),
        )
        self.reset_prompt = _button("reset to default", icon="undo")
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
            value=panel_default(options.MAX_SAMPLES), min=1, max=100,
            description=options.MAX_SAMPLES.widget, style=initial,
            layout=widgets.Layout(width="170px"),
        )
        self.example_template = widgets.Textarea(
            value=DEFAULT_EXAMPLE_TEMPLATE, description="example as",
            layout=widgets.Layout(width="95%"),
        )
        for area in (self.prompt, self.example_template):
            fit_rows(area, least=2)
            area.observe(lambda change: fit_rows(change["owner"], least=2), "value")
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
        self.raw = widgets.Checkbox(value=panel_default(options.PROBAS_SUM_TO_1),
                                    description=options.PROBAS_SUM_TO_1.widget)
        self.threshold = widgets.BoundedFloatText(
            value=panel_default(options.THRESHOLD_LOW_PROB), min=0.0, max=1.0, step=0.05,
            description=options.THRESHOLD_LOW_PROB.widget)
        self.policy = widgets.Dropdown(options=options.ERROR_LOW_PROB.choices,
                                       value=panel_default(options.ERROR_LOW_PROB),
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
        self.classify_button = _button("Classify", button_style="primary", icon="play")
        self.stop_button = _button("Stop", icon="stop", disabled=True)
        self.preview_button = _button("Preview", icon="eye")
        self.preview_index = widgets.BoundedIntText(
            value=0, min=0, max=10**9, description="of text #", style=initial,
            layout=widgets.Layout(width="130px"),
        )
        self.code_button = _button("Copy as code", icon="code")
        self.explain_button = _button("Explain", icon="lightbulb-o",
                                      tooltip="why each label: the first rows' words "
                                              "highlighted by their contribution")
        self.save_path = widgets.Text(value="classifier.json", description="save as",
                                      layout=widgets.Layout(width="260px"))
        self.save_button = _button("Save classifier", icon="save")
        hidden = dict(display="none")
        self.progress = widgets.IntProgress(value=0, min=0, max=1,
                                            layout=widgets.Layout(width="200px", **hidden))
        self.progress_count = widgets.Label(layout=widgets.Layout(**hidden))
        self.status = widgets.HTML()
        self.traceback_button = _button("show traceback")
        self.traceback_button.layout.display = "none"
        self.warning_line = widgets.HTML()
        self.magic_code, self.python_code = CodeBox(), CodeBox()
        self.code_area = widgets.VBox([self.magic_code, self.python_code],
                                      layout=widgets.Layout(width="95%", **hidden))
        self.output = widgets.Output()
        # Preview's own place, under the results: a preview keeps the table.
        self.preview_output = widgets.Output()
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
        style = widgets.HTML(PANEL_STYLE, layout=widgets.Layout(width="0", margin="0"))
        self.children = [
            widgets.HBox([self.model, self.device, self.mode, style]),
            # Enter commits a typed tag in JupyterLab (see .front_end).
            widgets.HBox([caption, self.labels, EnterAddsTag(
                layout=widgets.Layout(width="0", margin="0"))],
                         layout=widgets.Layout(width="95%")),
            self.prompt, widgets.HBox([self.reset_prompt, self.validation]),
            self.examples_box, source,
            widgets.HBox([self.raw, self.threshold, self.policy]),
            widgets.HBox([self.classify_button, self.stop_button, self.preview_button,
                          self.preview_index, self.explain_button, self.code_button]),
            widgets.HBox([self.save_path, self.save_button]),
            widgets.HBox([self.progress, self.progress_count, self.status,
                          self.traceback_button]),
            self.warning_line, self.code_area, self.output, self.preview_output,
        ]

