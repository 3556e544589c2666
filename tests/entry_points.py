"""Shared texts, constants and helpers for the bad-input tests of every entry point
(estimators, magics, the panel and the accessor), on the tiny model.
"""

import math
import warnings

import numpy as np
import pytest
from IPython.core.error import UsageError

import nbllm  # noqa: F401  (registers the df.llm accessor)
from nbllm.notebook import classify as api
from nbllm.engine.scoring import scorer as scoring
from nbllm.estimators import FewShotClassifier, ZeroShotClassifier
from nbllm.estimators.multi_label import MultiLabelZeroShotClassifier
from nbllm.notebook.panel.panel import Panel
from tiny import SENTENCES, get_tiny_model, get_tiny_tokenizer, oracle_logprob


LABELS = ["positive", "negative"]
TEXTS = ["I love it.", "The train was late again this morning.", "ok"]
FEW_X = ["good movie", "bad film", "great", "awful"]
FEW_Y = ["pos", "neg", "pos", "neg"]
ML_Y = [["sports"], ["politics", "science"]]
SCRIPT = "<script>alert(1)</script>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"
# About 600 tokens: longer than the saved tiny model's context of 256 tokens.
LONG_TEXT = " ".join(SENTENCES)
# The same model with a 64-token context, for cheap long-text cases.
SMALL_CONTEXT = 64
SHORT_PROMPT = "Text: {text}\nAnswer: {labels}"
SHORT_FEW_PROMPT = "{examples}\nText: {text}\nAnswer: {labels}"

NOT_STRINGS = "{} value(s) in X are not strings and were converted with str()"
MISSING = ("X contains {} missing value(s) (None or NaN) at position(s) {}; drop or fill "
           "them first")
SKIPPED = "{} missing text(s) (None or NaN) were skipped; their results are NaN"
CUT = ("{n} sample(s) did not fit the model's context of {context} tokens; their text "
       "was cut {where} so that the prompt template and the labels fit")
WHERE = {"right": "at the end", "left": "at the start", "middle": "in the middle"}
# The advice names the option in the words of the way in: the estimators'
# probas_sum_to_1=False, raw=True in Python's notebook functions, --raw in a
# magic, 'raw probabilities' in the panel.
SINGLE_LABEL = ("Only one label ({!r}): normalised over the labels, its probability is "
                "always 1; use {words} for the model's own probability, "
                "or add labels")
RAW_WORDS = {"estimator": "probas_sum_to_1=False", "python": "raw=True", "magic": "--raw",
             "panel": "'raw probabilities'"}
LONE_BRACE = ("The prompt is not a valid template (Single '{}' encountered in format "
              "string); write literal braces as '{{{{' and '}}}}'")


# ------------------------------------------------------------------ helpers
def _objects(kwargs):
    kwargs.setdefault("model", get_tiny_model(kwargs.pop("max_positions", 256)))
    kwargs.setdefault("tokenizer", get_tiny_tokenizer())
    kwargs.setdefault("progress", False)
    return kwargs


def zero(**kwargs):
    return ZeroShotClassifier(**_objects(kwargs))


def few(**kwargs):
    kwargs.setdefault("random_state", 0)
    # These tests are about the mechanics of one fixed set of examples.
    kwargs.setdefault("example_selection", "stratified")
    return FewShotClassifier(**_objects(kwargs))


def multi(**kwargs):
    return MultiLabelZeroShotClassifier(**_objects(kwargs))


def fitted(kind, **kwargs):
    """A fitted estimator of one of the three kinds."""
    if kind == "zero":
        return zero(**kwargs).fit(None, LABELS)
    if kind == "few":
        return few(**kwargs).fit(FEW_X, FEW_Y)
    return multi(**kwargs).fit(None, ML_Y)


def small(kind, **kwargs):
    """A fitted estimator on the 64-token model with a short prompt."""
    kwargs.setdefault("use_chat_template", False)
    kwargs.setdefault("prompt", SHORT_FEW_PROMPT if kind == "few" else SHORT_PROMPT)
    if kind == "few":
        kwargs.setdefault("max_samples", 1)
    if kind == "multi":
        kwargs["prompt"] = kwargs["prompt"].replace("{labels}", "{label}")
    return fitted(kind, max_positions=SMALL_CONTEXT, **kwargs)


def messages_of(func, *args, **kwargs):
    """Call func; return its result and the messages of the warnings it gave."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = func(*args, **kwargs)
    return out, [str(w.message) for w in record]


def prompt_ids(clf, text, label=None):
    """The prompt's token ids, tokenized as the estimator does."""
    prompt = clf.get_prompt(text) if label is None else clf.get_prompt(text, label)
    special = not clf.use_chat_template_
    return clf.tokenizer_(prompt, add_special_tokens=special)["input_ids"]


def oracle(clf, texts):
    """Unnormalised label probabilities from plain forward passes."""
    return np.array([[math.exp(oracle_logprob(clf.model_, prompt_ids(clf, t), ids))
                      for ids in clf.label_ids_] for t in texts])


def multi_oracle(clf, texts):
    out = np.empty((len(texts), len(clf.classes_)))
    for i, text in enumerate(texts):
        for j, label in enumerate(clf.classes_):
            ids = prompt_ids(clf, text, label)
            lp = [oracle_logprob(clf.model_, ids, a) for a in clf.label_ids_]
            out[i, j] = 1 / (1 + math.exp(np.logaddexp(lp[2], lp[3])
                                          - np.logaddexp(lp[0], lp[1])))
    return out


def from_folder(folder, labels=LABELS, **kwargs):
    """A fresh, uncached estimator on the saved tiny model, as the API builds it."""
    return api.build_estimator(labels, model=folder, progress=False, **kwargs).set_params(
        use_caching=False)


def run_cell(ip, cell):
    """Run a cell; return (ExecutionResult, warning messages)."""
    return messages_of(ip.run_cell, cell)


def usage_error(res, capsys, message):
    """The cell failed with exactly this UsageError, shown as one line."""
    assert not res.success
    assert isinstance(res.error_in_exec, UsageError), res.error_in_exec
    assert str(res.error_in_exec) == message
    assert capsys.readouterr().err == f"UsageError: {message}\n"


# Panel helpers (the panel is driven headless, as in test_widgets.py).
def make_panel(folder, labels=LABELS, texts=TEXTS[:2], **kwargs):
    panel = Panel(threaded=False, **kwargs)
    panel.model.value = folder
    panel.labels.value = list(labels)
    panel.texts.value = "\n".join(texts)
    return panel


def error_line(panel):
    import html

    value = panel.status.value
    start, end = '<span class="nbllm-error" style="color:var(--jp-error-color1,#b00020)">', "</span>"
    assert value.startswith(start) and value.endswith(end), value
    return html.unescape(value[len(start):-len(end)])


def assert_idle(panel):
    """Buttons usable again, Stop disabled, no thread running."""
    for button in (panel.classify_button, panel.preview_button, panel.code_button,
                   panel.reset_prompt):
        assert button.disabled is False, button.description
    assert panel.stop_button.disabled is True
    assert not panel.busy


def panel_html(panel):
    """Every piece of HTML the panel shows: HTML widgets and the Output's displays."""
    import ipywidgets as widgets

    pieces, stack = [], [panel]
    while stack:
        w = stack.pop()
        if isinstance(w, widgets.HTML):
            pieces.append(w.value)
        stack.extend(getattr(w, "children", ()))
    for out in (*panel.output.outputs, *panel.preview_output.outputs):
        pieces.append(out.get("data", {}).get("text/html", ""))
    return "\n".join(pieces)


def assert_escaped(page, payload=SCRIPT, escaped=ESCAPED_SCRIPT):
    """The payload reached the HTML, but only escaped."""
    assert "<script" not in page.lower()
    assert payload not in page
    assert escaped in page


# The panel's generated code, run as a user would.
def run_magic(shell, magic):
    """Run the panel's magic code (one cell, the magic on its first line) in a
    real InteractiveShell; return its ClassificationResult."""
    from nbllm.notebook.display import ClassificationResult

    assert magic.startswith("%")
    res = shell.run_cell(magic)
    assert res.success, res.error_in_exec or res.error_before_exec
    assert isinstance(res.result, ClassificationResult)
    return res.result


def run_python(python, **namespace):
    """exec() the panel's Python code; return its namespace."""
    exec(compile(python, "<panel code>", "exec"), namespace)
    return namespace
