"""The panel's Copy as code, its stale-state rules and its live status, headless.

Each generated snippet is run (the magic in a real InteractiveShell, the Python
with exec) and must give the panel's own probabilities.
"""

import html

import numpy as np
import pandas as pd
import pytest

from nbllm.engine.scoring.prompts import DEFAULT_PROMPT_ZERO_SHOT
from nbllm.notebook.panel.panel import FEW, Panel
from nbllm.notebook.magic_syntax import write_template as template_option
from nbllm.notebook.panel.code import MAX_INLINE_TEXTS, variable_holding
from entry_points import assert_idle, make_panel, run_magic, run_python
from tiny import save_tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")

LABELS = ["positive", "negative"]
TEXTS = ["I love it.", "The train was late again this morning."]


@pytest.fixture
def panel(tiny_folder):
    """A synchronous panel on the tiny model with two labels and two texts."""
    return make_panel(tiny_folder, LABELS, TEXTS)


@pytest.fixture
def tweets():
    return pd.DataFrame({"text": ["What a wonderful surprise", "The train was late",
                                  "I love it.", "The package arrived damaged",
                                  "$25 for wifi and $12 for food"],
                         "n": range(5)}, index=list("edcba"))


def same(a, b):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


# ------------------------------------------------------------------ templates
@pytest.mark.parametrize("template, option", [
    ("Text: {text}\nLabel: ", "'Text: {text}\\nLabel: '"),
    ("It's {text}\t{labels}", "\"It's {text}\\t{labels}\""),
    ("{text}", "'{text}'"),
    ("say \"hi\" {text}", "'say \"hi\" {text}'"),
])
def test_template_option_writes_newlines_and_tabs_as_escapes(template, option):
    assert template_option(template) == option


@pytest.mark.parametrize("template", [
    "a \\ backslash {text}",       # would be read as an escape
    "both ' and \" {text}",        # no quote left to wrap it
    "classify",                    # a bare word names a variable
    "bell \x07 {text}",            # a control character
])
def test_template_option_refuses_what_the_option_line_cannot_hold(template):
    assert template_option(template) is None


def test_variable_holding_finds_the_object_itself():
    frame = pd.DataFrame({"a": [1]})
    copy = frame.copy()
    assert variable_holding(frame, {"_": frame, "other": copy, "tweets": frame}) == "tweets"
    assert variable_holding(frame, {"copy": copy}) is None


# ------------------------------------------------------------------ snippets
def test_prompt_with_a_backslash_has_python_only(ip, panel):
    panel.prompt.value = "Text: {text}\\n (a literal backslash) {labels}\nLabel:"
    panel.classify_button.click()
    panel.code_button.click()
    magic, python = panel.code
    assert magic is None
    assert "This prompt cannot be written on a magic's option line" in \
        panel.magic_code.note
    assert panel.magic_code.code is None  # no code box, no Copy button
    ns = run_python(python)
    same(ns["probas"], panel.last_result.probas)


def test_typed_texts_are_all_written_up_to_the_cap(ip, panel):
    texts = [f"text number {i} is fine" for i in range(MAX_INLINE_TEXTS)]
    panel.texts.value = "\n".join(texts)
    panel.classify_button.click()
    panel.code_button.click()
    magic, python = panel.code
    assert magic.split("\n")[1:] == texts
    assert panel.magic_code.note == panel.python_code.note == ""
    ns = run_python(python)
    assert ns["texts"] == texts
    same(ns["probas"], panel.last_result.probas)
    same(run_magic(ip, magic).probas, panel.last_result.probas)


def test_more_typed_texts_than_the_cap_come_from_a_variable(ip, panel):
    texts = [f"text number {i} is fine" for i in range(MAX_INLINE_TEXTS + 1)]
    panel.texts.value = "\n".join(texts)
    ip.user_ns["my_panel"] = panel
    panel.classify_button.click()
    panel.code_button.click()
    magic, python = panel.code
    assert magic == ("%zeroshot --labels positive,negative --model "
                     f"{panel.model.value} --input texts")
    assert "# texts: the panel's 101 typed texts (too many to write out), made before " \
           "this cell" in python
    note = ("The panel holds 101 typed texts, more than the 100 the code writes out: it "
            "reads them from the variable texts. Make it first: texts = my_panel.text_list()")
    assert note in panel.magic_code.note
    assert note in panel.python_code.note
    ip.user_ns["texts"] = panel.text_list()  # what the note says
    assert panel.text_list() == texts
    same(run_magic(ip, magic).probas, panel.last_result.probas)
    ns = run_python(python, texts=panel.text_list())
    same(ns["probas"], panel.last_result.probas)


def test_dataframe_texts_are_referred_to_by_the_users_variable(ip, tweets, tiny_folder):
    ip.user_ns["tweets"] = tweets
    panel = Panel(data=tweets, column="text", labels=LABELS, threaded=False)
    panel.model.value = tiny_folder
    panel.rows.value = (1, 4)
    panel.classify_button.click()
    panel.code_button.click()
    magic, python = panel.code
    assert magic.split("\n") == [
        f"%zeroshot --labels positive,negative --model {tiny_folder} --input tweets "
        "--column text --rows 1:4"]
    assert "texts = tweets['text'].iloc[1:4].tolist()" in python
    assert "What a wonderful" not in magic + python  # no text is copied in
    result = run_magic(ip, magic)
    assert list(result.frame.index) == ["d", "c", "b"]
    same(result.probas, panel.last_result.probas)
    same(run_python(python, tweets=tweets)["probas"], panel.last_result.probas)


def test_dataframe_without_a_variable_gets_a_note(ip, tweets, tiny_folder):
    panel = Panel(data=tweets, column="text", labels=LABELS, threaded=False)
    panel.model.value = tiny_folder
    panel.code_button.click()
    magic, python = panel.code
    assert "--input data " in magic and "data['text'].iloc[0:5]" in python
    note = "No variable of yours holds the panel's DataFrame; replace 'data'"
    assert note in panel.magic_code.note and note in panel.python_code.note


def test_few_shot_dataframe_with_inline_examples(ip, tweets, tiny_folder):
    ip.user_ns["tweets"] = tweets
    panel = Panel(data=tweets, column="text", labels=LABELS, threaded=False)
    panel.model.value = tiny_folder
    panel.mode.value = FEW
    panel.examples.value = "positive: I love it\nnegative: I hate it"
    panel.classify_button.click()
    panel.code_button.click()
    magic, python = panel.code
    assert magic.split("\n")[1:] == ["positive: I love it", "negative: I hate it", "---"]
    same(run_magic(ip, magic).probas, panel.last_result.probas)
    same(run_python(python, tweets=tweets)["probas"], panel.last_result.probas)


def test_policy_has_no_magic_option_and_says_so(panel):
    panel.policy.value = "warn"
    panel.code_button.click()
    magic, python = panel.code
    assert "error_low_prob='warn'" in python
    assert "The magic has no option for the low-probability policy" in panel.magic_code.note


# ------------------------------------------------------------------ stale state
def test_every_action_clears_what_no_longer_applies(panel):
    panel.classify_button.click()
    panel.code_button.click()
    assert panel.code_area.layout.display == "" and panel.output.outputs
    # Copy as code keeps the result it describes.
    assert panel.output.outputs
    # A new Classify: the old code goes.
    panel.classify_button.click()
    assert panel.code is None and panel.code_area.layout.display == "none"
    # An edit: the code shown would no longer be what runs.
    panel.code_button.click()
    panel.labels.value = ["positive", "negative", "neutral"]
    assert panel.code is None and panel.code_area.layout.display == "none"
    # A mode switch: code, result, traceback and status of the other mode go.
    panel.code_button.click()
    panel.mode.value = FEW
    assert panel.code is None and panel.code_area.layout.display == "none"
    assert panel.output.outputs == () and panel.status.value == ""
    assert_idle(panel)


def test_an_old_traceback_never_stays_under_a_new_error(panel):
    panel.labels.value = []
    panel.classify_button.click()
    first = panel._traceback
    assert "labels must contain at least one label" in first
    panel.labels.value = list(LABELS)
    panel.texts.value = ""
    panel.classify_button.click()
    assert "no texts" in panel._traceback and "at least one label" not in panel._traceback
    panel.traceback_button.click()
    shown = panel.output.outputs[0]["text"]
    assert "no texts" in shown and "at least one label" not in shown
    # Success afterwards: no traceback button, no old output.
    panel.texts.value = "\n".join(TEXTS)
    panel.classify_button.click()
    assert panel.traceback_button.layout.display == "none" and panel._traceback == ""
    assert panel.output.outputs[0]["output_type"] == "display_data"


# ------------------------------------------------------------------ live status
def test_status_says_loading_then_progress_counts_then_hides(tmp_path):
    folder = save_tiny(tmp_path / "fresh tiny")  # a spec no test has loaded
    panel = Panel(threaded=False)
    panel.model.value = folder
    panel.labels.value = list(LABELS)
    panel.texts.value = "\n".join(TEXTS)
    seen, counts, shown = [], [], []
    panel.status.observe(lambda c: seen.append(c["new"]), "value")
    panel.progress_count.observe(lambda c: counts.append(c["new"]), "value")
    panel.progress.layout.observe(lambda c: shown.append(c["new"]), "display")
    assert panel.progress.layout.display == "none"  # idle: no empty bar
    panel.classify_button.click()
    assert seen[0] == "\u23f3 starting\u2026"
    assert f"\u23f3 loading {html.escape(folder)}\u2026" in seen
    assert "\u23f3 scoring 2 text(s)\u2026" in seen
    assert seen[-1] == "2 texts classified"
    assert counts[0] == "0 / 2 texts" and counts[-1] == "2 / 2 texts"
    assert shown == ["", "none"]
    # The model is loaded now: no loading line the second time.
    seen.clear()
    panel.classify_button.click()
    assert not [line for line in seen if "loading" in line]


def test_preview_reports_what_it_is_doing(panel):
    seen = []
    panel.status.observe(lambda c: seen.append(c["new"]), "value")
    panel.preview_button.click()
    assert "\u23f3 preview: scoring and generating up to 24 tokens\u2026" in seen
    assert seen[-1] == "preview of text #0"


def test_default_prompt_adds_no_prompt_option(panel):
    assert panel.prompt.value == DEFAULT_PROMPT_ZERO_SHOT
    magic, python = panel.as_code()
    assert "--prompt" not in magic and "prompt=" not in python


# A fresh kernel: IPython with nbllm imported and a panel made, no %load_ext.
FRESH_KERNEL = """
import contextlib, io, json, sys
from IPython.core.interactiveshell import InteractiveShell
from nbllm.notebook.display import ClassificationResult
folder, texts = json.loads(sys.argv[1])
shell = InteractiveShell.instance()
assert shell.run_cell("import nbllm").success
shell.user_ns.update(folder=folder, texts=texts)
assert shell.run_cell(
    "panel = nbllm.Panel(labels=['positive', 'negative'], threaded=False)\\n"
    "panel.model.value = folder\\n"
    "panel.texts.value = '\\\\n'.join(texts)").success
panel = shell.user_ns["panel"]
before = shell.run_cell(panel.as_code()[0])  # the magic, before Copy as code
print("RESULT", json.dumps({"before": str(before.error_in_exec)}))
panel.code_button.click()
title, magic = panel.magic_code.title, panel.code[0]
after = shell.run_cell(magic)  # pasted into the next cell
assert after.success, after.error_in_exec
assert isinstance(after.result, ClassificationResult)
with contextlib.redirect_stdout(io.StringIO()) as said:
    assert shell.run_cell("%load_ext nbllm").success
print("RESULT", json.dumps({"title": title, "magic": magic, "texts": after.result.texts,
                  "load_ext_said": said.getvalue()}))
"""


def test_the_magic_snippet_runs_in_a_fresh_kernel_after_import_nbllm(tiny_folder):
    """A kernel where only ``import nbllm`` ran (the issue's case): Copy as code
    loads the magics there, so the snippet pasted into a new cell runs; the
    title names ``%load_ext nbllm`` for another notebook."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", FRESH_KERNEL,
                          json.dumps([tiny_folder, TEXTS])],
                         capture_output=True, text=True, timeout=300,
                         env=dict(__import__("os").environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    # The shell prints its own outputs too: the script's lines start with RESULT.
    before, after = (json.loads(line[len("RESULT "):]) for line in
                     out.stdout.splitlines() if line.startswith("RESULT "))
    assert before["before"] == "Cell magic `%%zeroshot` not found."
    assert after["title"] == "As a cell magic (after %load_ext nbllm)"
    assert after["magic"].startswith("%%zeroshot --labels positive,negative")
    assert after["texts"] == TEXTS
    assert after["load_ext_said"] == ""  # not "already loaded"
