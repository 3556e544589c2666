"""The ipywidgets Panel, driven headless: set widget values, click buttons, read state.

Every classification uses the tiny random model by its saved folder (never the
embedded default).  Most panels run synchronously (``threaded=False``); one
test runs the background thread and waits for it.
"""

import html
import os

import numpy as np
import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

import nbllm  # noqa: F401  (registers the df.llm accessor)
from nbllm.engine.loading import models
from nbllm.notebook import classify as api
from nbllm.notebook import session
from nbllm.engine.scoring import scorer as scoring
from nbllm.engine.scoring.result_cache import result_cache
from nbllm.notebook.display import ClassificationResult
from nbllm.engine.scoring.prompts import DEFAULT_PROMPT_FEW_SHOT, DEFAULT_PROMPT_ZERO_SHOT
from nbllm.notebook.panel.panel import FEW, ZERO, Panel, validate_prompt
from nbllm.notebook.panel.front_end import CodeBox
from entry_points import assert_idle, make_panel, error_line, run_magic, run_python
from tiny import save_tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")

LABELS = ["positive", "negative"]
TEXTS = ["I love it.", "The train was late again this morning."]
SCRIPT = "<script>alert(1)</script>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"
TWELVE = [
    "The movie was great.",
    "This is the worst product.",
    "The weather today is sunny.",
    "I am not sure how I feel.",
    "The service was slow but friendly.",
    "She went to the market.",
    "Our team won the match.",
    "The battery dies after two hours.",
    "What a wonderful surprise!",
    "The train was late again.",
    "He reads a book every night.",
    "The package arrived damaged.",
]


# ------------------------------------------------------------------ fixtures
@pytest.fixture
def panel(tiny_folder):
    """A synchronous panel on the tiny model with two labels and two texts."""
    return make_panel(tiny_folder, LABELS, TEXTS)


@pytest.fixture
def batch_size_one(monkeypatch):
    """Make the panel's estimators score one text per batch (several on_rows calls)."""
    real = api.build_estimator

    def build(*args, **kwargs):
        kwargs["batch_size"] = 1
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "build_estimator", build)


# ------------------------------------------------------------------ helpers
def last_html(panel):
    """The HTML of the latest display in the panel's Output."""
    outputs = panel.output.outputs
    assert outputs, "the Output is empty"
    assert outputs[-1]["output_type"] == "display_data"
    return outputs[-1]["data"]["text/html"]


def fresh_estimator(folder, labels=LABELS, **kwargs):
    return api.build_estimator(labels, model=folder, progress=False, **kwargs)


# ------------------------------------------------------------------ classify
def test_classify_shows_the_result(panel, tiny_folder):
    assert panel.last_result is None
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    result = panel.last_result
    assert isinstance(result, ClassificationResult)
    assert result.texts == TEXTS and result.classes == ["negative", "positive"]
    assert result.stopped is False and not result.pending.any()
    np.testing.assert_allclose(
        result.probas, fresh_estimator(tiny_folder).predict_proba(TEXTS), rtol=0, atol=1e-9)
    out = panel.output.outputs[0]
    assert out["output_type"] == "display_data"
    page = out["data"]["text/html"]
    assert "<caption>2 text(s), 2 labels<span class=\"nbllm-mode\">" in page
    assert "stopped early" not in page
    assert "I love it." in page and "<th>negative</th><th>positive</th>" in page
    assert panel.status.value == "2 texts classified"
    assert (panel.progress.value, panel.progress.max) == (2, 2)
    assert panel.traceback_button.layout.display == "none"
    assert_idle(panel)


def test_texts_box_ignores_blank_lines_and_spaces(panel):
    panel.texts.value = "\n   I love it.   \n\n  \nThe train was late again this morning.\n"
    panel.classify_button.click()
    assert panel.last_result.texts == TEXTS


def test_buttons_are_disabled_during_the_run(panel):
    seen = []

    def record(change):
        if change["new"] > 0:
            seen.append((panel.classify_button.disabled, panel.preview_button.disabled,
                         panel.code_button.disabled, panel.reset_prompt.disabled,
                         panel.stop_button.disabled))

    panel.progress.observe(record, "value")
    assert (panel.classify_button.disabled, panel.stop_button.disabled) == (False, True)
    panel.classify_button.click()
    assert seen, "progress never moved"
    assert all(state == (True, True, True, True, False) for state in seen), seen
    assert (panel.classify_button.disabled, panel.stop_button.disabled) == (False, True)
    assert_idle(panel)


def test_threaded_classify(tiny_folder):
    panel = Panel(threaded=True)
    panel.model.value = tiny_folder
    panel.labels.value = list(LABELS)
    panel.texts.value = "\n".join(TEXTS)
    during = []
    panel.progress.observe(
        lambda change: during.append((panel.busy, panel.classify_button.disabled,
                                      panel.stop_button.disabled)), "value")
    panel.classify_button.click()
    panel.wait(30)
    assert not panel.busy
    assert panel.last_error is None, panel.last_error
    assert panel.status.value == "2 texts classified"
    assert panel.last_result.texts == TEXTS and not panel.last_result.stopped
    assert "<caption>2 text(s), 2 labels<span class=\"nbllm-mode\">" in last_html(panel)
    assert during and all(state == (True, True, False) for state in during), during
    assert_idle(panel)
    np.testing.assert_allclose(
        panel.last_result.probas, fresh_estimator(tiny_folder).predict_proba(TEXTS),
        rtol=0, atol=1e-9)


def test_threaded_error_is_reported(tiny_folder):
    panel = Panel(threaded=True)
    panel.model.value = tiny_folder
    panel.texts.value = "\n".join(TEXTS)
    panel.classify_button.click()
    panel.wait(30)
    assert error_line(panel) == "LabelsError: labels must contain at least one label; got none"
    assert_idle(panel)


def test_stop_keeps_partial_results_and_the_cache_finishes_them(panel, batch_size_one):
    panel.texts.value = "\n".join(TWELVE)
    stop_after_first = [True]
    updates = []

    def stop_early(change):
        if change["new"] > 0:
            updates.append(change["new"])
            if stop_after_first[0]:
                stop_after_first[0] = False
                panel.stop_button.click()

    panel.progress.observe(stop_early, "value")
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    result = panel.last_result
    assert result.stopped is True
    assert len(result) == 12 and result.texts == TWELVE
    done = int((~result.pending).sum())
    assert 0 < done < 12
    assert updates == [done]  # no batch ran after Stop
    assert not np.isnan(result.probas[~result.pending]).any()
    assert np.isnan(result.probas[result.pending]).all()
    assert [label is None for label in result.labels] == result.pending.tolist()
    page = last_html(panel)
    assert "<caption>stopped early: 12 text(s), 2 labels<span class=\"nbllm-mode\">" in page
    assert panel.status.value == f"stopped: {done} of 12 texts classified"
    assert panel.progress.value == done
    assert_idle(panel)

    # Classify again, unchanged: the finished rows come from the cache.
    hits, misses = result_cache.hits, result_cache.misses
    panel.classify_button.click()
    again = panel.last_result
    assert again.stopped is False and not again.pending.any()
    assert not np.isnan(again.probas).any()
    assert result_cache.hits - hits == done
    assert result_cache.misses - misses == 12 - done
    np.testing.assert_array_equal(again.probas[~result.pending],
                                  result.probas[~result.pending])
    assert panel.status.value == "12 texts classified"
    assert "<caption>12 text(s), 2 labels<span class=\"nbllm-mode\">" in last_html(panel)
    assert panel.progress.value == 12
    assert_idle(panel)


def test_stop_is_cleared_before_the_next_run(panel, batch_size_one):
    """A Stop clicked while idle must not cut the next run short."""
    panel.stop_button.click()
    panel.classify_button.click()
    assert panel.last_result.stopped is False
    assert panel.status.value == "2 texts classified"


def test_classify_twice_hits_the_cache_for_every_text(panel):
    panel.classify_button.click()
    first = panel.last_result
    hits, misses = result_cache.hits, result_cache.misses
    panel.classify_button.click()
    assert result_cache.hits - hits == len(TEXTS)
    assert result_cache.misses - misses == 0
    np.testing.assert_array_equal(panel.last_result.probas, first.probas)


def test_changing_labels_does_not_reload_the_model(tmp_path):
    folder = save_tiny(tmp_path / "tiny-for-load-counts")
    panel = Panel(threaded=False)
    panel.model.value = folder
    panel.labels.value = list(LABELS)
    panel.texts.value = "\n".join(TEXTS)
    assert folder not in models.load_counts
    panel.classify_button.click()
    assert models.load_counts[folder] == 1
    panel.labels.value = ["spam", "ham", "neutral"]
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    assert panel.last_result.classes == ["ham", "neutral", "spam"]
    panel.prompt.value = "Review: {text}\nOptions: {labels}\nAnswer:"
    panel.raw.value = True
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    assert models.load_counts[folder] == 1
    np.testing.assert_allclose(
        panel.last_result.probas,
        fresh_estimator(folder, ["spam", "ham", "neutral"], raw=True,
                        prompt=panel.prompt.value).predict_proba(TEXTS),
        rtol=0, atol=1e-9)


def test_raw_threshold_and_policy(panel, tiny_folder):
    panel.raw.value = True
    panel.threshold.value = 1.0
    panel.policy.value = "return_none"
    panel.classify_button.click()
    result = panel.last_result
    assert result.raw is True
    assert result.low.all()  # the tiny model puts little mass on any label
    assert result.labels == [None, None]
    page = last_html(panel)
    assert "raw label probabilities" in page and "<th>label mass</th>" in page
    clf = fresh_estimator(tiny_folder, raw=True)
    np.testing.assert_allclose(result.probas, clf.predict_proba(TEXTS), rtol=0, atol=1e-9)

    panel.policy.value = "raise"
    panel.classify_button.click()
    assert error_line(panel).startswith("LowProbabilityError: The sum of all probabilities")
    assert_idle(panel)


# ------------------------------------------------------------------ errors
def test_empty_labels_show_one_line_and_a_traceback(panel):
    panel.labels.value = []
    panel.classify_button.click()
    assert error_line(panel) == "LabelsError: labels must contain at least one label; got none"
    assert isinstance(panel.last_error, ValueError)
    assert panel.last_result is None
    assert panel.traceback_button.layout.display == ""
    assert_idle(panel)

    panel.traceback_button.click()
    out = panel.output.outputs[-1]
    assert out["output_type"] == "stream" and out["name"] == "stdout"
    assert out["text"].startswith("Traceback (most recent call last):")
    assert "check_labels" in out["text"]
    assert out["text"].rstrip().endswith(
        "LabelsError: labels must contain at least one label; got none")

    # Fixing the input makes the next Classify work and hides the button.
    panel.labels.value = list(LABELS)
    panel.classify_button.click()
    assert panel.last_error is None
    assert panel.status.value == "2 texts classified"
    assert panel.traceback_button.layout.display == "none"
    assert "<caption>2 text(s), 2 labels<span class=\"nbllm-mode\">" in last_html(panel)
    assert_idle(panel)


def test_unknown_model(panel, tmp_path):
    missing = str(tmp_path / "no-such-model")
    panel.model.value = missing
    panel.classify_button.click()
    line = error_line(panel)
    assert line.startswith(f"ModelError: Could not load model {missing!r}")
    assert "\n" not in panel.status.value
    assert panel.traceback_button.layout.display == ""
    assert_idle(panel)


def test_bad_template(panel):
    panel.prompt.value = "Text: {text} {labels} {"
    assert "not a valid template" in panel.validation.value
    assert "#b00020" in panel.validation.value
    panel.classify_button.click()
    assert error_line(panel).startswith("PromptError: prompt: The prompt is not a valid template")
    assert_idle(panel)
    panel.prompt.value = "Text: {text} {labels} {{"
    panel.classify_button.click()
    assert panel.status.value == "2 texts classified"


@pytest.mark.parametrize("prompt, warning", [
    ("Text: {text}", "The prompt may not be correct, it expects 2 placeholders: 'labels', "
                     "'text', missing keys: 'labels'"),
    ("Text: {text} {labels} {foo}", "The prompt may not be correct, it expects 2 "
                                    "placeholders: 'labels', 'text', extra keys: 'foo'"),
])
def test_template_with_wrong_placeholders_warns_and_runs(panel, prompt, warning):
    """The panel follows the estimators: placeholders warn, they are not refused."""
    panel.prompt.value = prompt
    assert "#b26a00" in panel.validation.value  # the warning colour, not the error's
    panel.classify_button.click()
    assert panel.status.value == "2 texts classified"
    assert panel.warnings == [warning]
    assert panel.warning_line.value == (
        '<span class="nbllm-warning" style="color:var(--jp-warn-color1,#b26a00)">'
        f"\u26a0 {html.escape(warning)}</span>")
    assert panel.last_result.estimator.prompt == prompt
    # The next action starts without the old warning.
    panel.prompt.value = DEFAULT_PROMPT_ZERO_SHOT
    panel.classify_button.click()
    assert panel.warnings == [] and panel.warning_line.value == ""
    assert_idle(panel)


def test_warnings_in_the_panel_are_not_printed(panel, recwarn):
    panel.labels.value = ["positive"]
    panel.classify_button.click()
    assert panel.status.value == "2 texts classified"
    assert panel.warnings == [
        "Only one label ('positive'): normalised over the labels, its probability is "
        "always 1; use 'raw probabilities' for the model's own probability, or add labels"]
    assert not [w for w in recwarn if "label" in str(w.message)]


def test_no_texts(panel):
    panel.texts.value = "  \n\n "
    panel.classify_button.click()
    assert error_line(panel) == (
        "TextsError: no texts: write one text per line in the texts box")
    assert_idle(panel)


def test_error_message_is_escaped(panel):
    panel.mode.value = FEW
    panel.examples_var.value = "<b>bold</b>"
    panel.classify_button.click()
    assert "<b>" not in panel.status.value
    assert "&lt;b&gt;bold&lt;/b&gt;" in panel.status.value
    assert error_line(panel) == "ExamplesError: examples: no variable named '<b>bold</b>'"
    assert_idle(panel)


def test_text_is_escaped_in_the_output(panel):
    panel.texts.value = f"{SCRIPT}\nI love it."
    panel.classify_button.click()
    page = last_html(panel)
    assert ESCAPED_SCRIPT in page
    assert SCRIPT not in page
    panel.preview_index.value = 0
    panel.preview_button.click()
    page = last_html(panel)
    assert ESCAPED_SCRIPT in page and SCRIPT not in page


def test_failing_progress_callback_never_leaves_the_panel_stuck(panel):
    def boom(change):
        if change["new"] > 0:
            raise RuntimeError("observer failed")

    panel.progress.observe(boom, "value")
    panel.classify_button.click()
    assert error_line(panel) == "RuntimeError: observer failed"
    assert_idle(panel)
    panel.progress.unobserve(boom, "value")
    panel.classify_button.click()
    assert panel.status.value == "2 texts classified"
    assert_idle(panel)


# ------------------------------------------------------------------ output
def test_preview_keeps_the_result_table(panel):
    """Preview shows under the table, in its own Output; each Output holds one
    display at a time, and the next Classify clears the old preview."""
    panel.classify_button.click()
    table = last_html(panel)
    for index in (1, 0):
        panel.preview_index.value = index
        panel.preview_button.click()
        assert panel.last_error is None, panel.last_error
        assert panel.output.outputs[0]["data"]["text/html"] == table
        assert len(panel.output.outputs) == 1
        assert len(panel.preview_output.outputs) == 1
        preview = panel.preview_output.outputs[0]["data"]["text/html"]
        assert "Free generation" in preview and html.escape(TEXTS[index]) in preview
    assert panel.children.index(panel.preview_output) == \
        panel.children.index(panel.output) + 1
    panel.classify_button.click()
    assert panel.preview_output.outputs == () and len(panel.output.outputs) == 1


def test_traceback_replaces_the_result(panel):
    panel.classify_button.click()
    panel.labels.value = []
    panel.classify_button.click()
    panel.traceback_button.click()
    assert len(panel.output.outputs) == 1, [o["output_type"] for o in panel.output.outputs]
    assert panel.output.outputs[0]["output_type"] == "stream"


# ------------------------------------------------------------------ validation
def test_validation_updates_live():
    panel = Panel(threaded=False)
    assert panel.prompt.value == DEFAULT_PROMPT_ZERO_SHOT
    assert "placeholders OK: {labels}, {text}" in panel.validation.value
    assert "#2e7d32" in panel.validation.value
    panel.prompt.value = "Text: {text}"
    assert "missing {labels} (it runs, but check the prompt)" in panel.validation.value
    assert "#b26a00" in panel.validation.value
    panel.prompt.value = "Text: {text} {labels} {"
    assert "#b00020" in panel.validation.value
    panel.prompt.value = "Text: {text} {labels} {foo}"
    assert "unexpected {foo}" in panel.validation.value
    panel.prompt.value = "{foo}"
    assert "missing {labels}, {text}; unexpected {foo}" in panel.validation.value
    panel.prompt.value = "Text: {text} {labels} <b>"
    assert "placeholders OK" in panel.validation.value
    panel.mode.value = FEW  # a custom prompt is kept, and now lacks {examples}
    assert "missing {examples}" in panel.validation.value
    panel.prompt.value = DEFAULT_PROMPT_FEW_SHOT
    assert "placeholders OK: {examples}, {labels}, {text}" in panel.validation.value


def test_validate_prompt_function():
    assert validate_prompt(DEFAULT_PROMPT_ZERO_SHOT, ZERO) == (
        "ok", "placeholders OK: {labels}, {text}")
    assert validate_prompt(DEFAULT_PROMPT_ZERO_SHOT, FEW) == (
        "warning", "missing {examples} (it runs, but check the prompt)")
    assert validate_prompt("{text}{labels}{examples}", ZERO) == (
        "warning", "unexpected {examples} (it runs, but check the prompt)")
    level, message = validate_prompt("{", ZERO)
    assert level == "error" and "not a valid template" in message


def test_validation_message_is_escaped():
    panel = Panel(threaded=False)
    panel.prompt.value = "{text} {labels} {<b>}"
    assert "unexpected {&lt;b&gt;}" in panel.validation.value
    assert "<b>" not in panel.validation.value


# ------------------------------------------------------------------ mode
def test_mode_toggle_swaps_default_prompts_and_examples_box():
    panel = Panel(threaded=False)
    assert panel.mode.value == ZERO
    assert panel.examples_box.layout.display == "none"
    panel.mode.value = FEW
    assert panel.prompt.value == DEFAULT_PROMPT_FEW_SHOT
    assert panel.examples_box.layout.display == ""
    assert "placeholders OK: {examples}, {labels}, {text}" in panel.validation.value
    panel.mode.value = ZERO
    assert panel.prompt.value == DEFAULT_PROMPT_ZERO_SHOT
    assert panel.examples_box.layout.display == "none"
    assert "placeholders OK: {labels}, {text}" in panel.validation.value


def test_mode_toggle_keeps_a_custom_prompt_and_reset_restores_the_default():
    panel = Panel(threaded=False)
    custom = "Review: {text}\nOptions: {labels}"
    panel.prompt.value = custom
    panel.mode.value = FEW
    assert panel.prompt.value == custom
    assert panel.examples_box.layout.display == ""
    panel.reset_prompt.click()
    assert panel.prompt.value == DEFAULT_PROMPT_FEW_SHOT
    panel.prompt.value = custom + "\n{examples}"
    panel.mode.value = ZERO
    assert panel.prompt.value == custom + "\n{examples}"
    assert panel.examples_box.layout.display == "none"
    assert "unexpected {examples}" in panel.validation.value
    panel.reset_prompt.click()
    assert panel.prompt.value == DEFAULT_PROMPT_ZERO_SHOT
    assert panel.last_error is None
    assert_idle(panel)


def test_few_shot_classify_with_inline_examples(panel, tiny_folder):
    panel.mode.value = FEW
    panel.examples.value = "positive: What a wonderful surprise\nnegative: The package arrived damaged"
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    clf = fresh_estimator(tiny_folder, examples=[
        ("What a wonderful surprise", "positive"), ("The package arrived damaged", "negative")])
    np.testing.assert_allclose(panel.last_result.probas, clf.predict_proba(TEXTS),
                               rtol=0, atol=1e-9)
    assert panel.status.value == "2 texts classified"


def test_few_shot_without_examples(panel):
    panel.mode.value = FEW
    panel.classify_button.click()
    assert error_line(panel) == (
        "ExamplesError: few-shot needs examples: 'label: text' lines or a variable")
    panel.examples.value = "positive: fine\nbroken line"
    panel.classify_button.click()
    assert error_line(panel) == (
        "ExamplesError: example line 2 must look like 'label: text'; got 'broken line'")
    panel.examples.value = "positive: fine\nspam: nope"
    panel.classify_button.click()
    assert error_line(panel) == "ExamplesError: examples use label(s) not in labels: 'spam'"
    assert_idle(panel)


# ------------------------------------------------------------------ preview
def test_preview(panel, tiny_folder):
    panel.texts.value = "I love it.\nTom & <Jerry> were late."
    panel.preview_index.value = 1
    panel.preview_button.click()
    assert panel.last_error is None, panel.last_error
    assert panel.output.outputs == ()  # nothing classified: no table
    page = panel.preview_output.outputs[-1]["data"]["text/html"]
    assert "Free generation" in page
    assert "Preview: Tom &amp; &lt;Jerry&gt; were late.</h4>" in page
    assert "<Jerry>" not in page
    assert panel.status.value == "preview of text #1"
    assert panel.last_result is None  # Preview does not classify
    assert_idle(panel)


def test_preview_index_out_of_range(panel):
    panel.preview_index.value = 5
    panel.preview_button.click()
    assert error_line(panel) == "InputError: text # must be below 2; got 5"
    assert panel.traceback_button.layout.display == ""
    assert_idle(panel)


# ------------------------------------------------------------------ copy as code
def test_copy_as_code_default_zero_shot(ip, panel, tiny_folder):
    panel.classify_button.click()
    panel.code_button.click()
    assert panel.last_error is None, panel.last_error
    magic, python = panel.code
    assert magic == f"%%zeroshot --labels positive,negative --model {tiny_folder}\n" + \
        "\n".join(TEXTS)
    assert panel.magic_code.code == magic and panel.python_code.code == python
    for box in (panel.magic_code, panel.python_code):
        assert isinstance(box, CodeBox)  # its front end draws one Copy button
        assert box._esm.count('button.className = "nbllm-copy jupyter-button"') == 1
        assert "navigator.clipboard.writeText(area.value)" in box._esm
    assert panel.code_area.layout.display == ""
    assert panel.status.value == "code below: copy either snippet into a new cell"
    assert "_set_classes" not in python  # public API only
    result = run_magic(ip, magic)
    assert result.classes == panel.last_result.classes
    np.testing.assert_allclose(result.probas, panel.last_result.probas, rtol=0, atol=1e-9)
    ns = run_python(python)
    assert list(ns["clf"].classes_) == panel.last_result.classes
    np.testing.assert_allclose(ns["probas"], panel.last_result.probas, rtol=0, atol=1e-9)
    assert_idle(panel)


def test_copy_as_code_custom_prompt_comma_label_raw_threshold(ip, panel):
    panel.labels.value = ["very, good", "bad"]
    panel.prompt.value = "Review:\n{text}\nChoices: {labels}\nAnswer:"
    panel.raw.value = True
    panel.threshold.value = 0.05
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    panel.code_button.click()
    magic, python = panel.code
    assert "--raw" in magic and "--threshold 0.05" in magic
    # One cell: the prompt is inline, its newlines written as \n.
    assert "--prompt 'Review:\\n{text}\\nChoices: {labels}\\nAnswer:'" in magic
    result = run_magic(ip, magic)
    assert result.raw is True
    assert result.classes == panel.last_result.classes == ["bad", "very, good"]
    assert result.estimator.prompt == panel.prompt.value
    np.testing.assert_allclose(result.probas, panel.last_result.probas, rtol=0, atol=1e-9)
    assert result.low.tolist() == panel.last_result.low.tolist()

    # Normalised: the Python code gives the same numbers too.
    panel.raw.value = False
    panel.classify_button.click()
    panel.code_button.click()
    magic, python = panel.code
    assert "--raw" not in magic and "probas_sum_to_1" not in python
    result = run_magic(ip, magic)
    np.testing.assert_allclose(result.probas, panel.last_result.probas, rtol=0, atol=1e-9)
    ns = run_python(python)
    assert ns["clf"].prompt == panel.prompt.value
    assert ns["clf"].threshold_low_prob == 0.05
    np.testing.assert_allclose(ns["probas"], panel.last_result.probas, rtol=0, atol=1e-9)


def test_copy_as_code_few_shot_inline_examples_with_colon_label(ip, panel):
    panel.mode.value = FEW
    panel.labels.value = ["pos:x", "neg"]
    panel.examples.value = (
        '"pos:x": What a wonderful surprise\n'
        "neg: The package arrived damaged\n"
        '"pos:x": Customer support solved my problem'
    )
    panel.max_samples.value = 2
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    assert panel.last_result.classes == ["neg", "pos:x"]
    panel.code_button.click()
    magic, python = panel.code
    assert magic.startswith("%%fewshot ") and "--max-samples 2" in magic
    assert '"pos:x": What a wonderful surprise' in magic
    result = run_magic(ip, magic)
    assert result.classes == panel.last_result.classes
    np.testing.assert_allclose(result.probas, panel.last_result.probas, rtol=0, atol=1e-9)
    ns = run_python(python)
    assert ns["clf"].examples_ == panel.last_result.estimator.examples_
    np.testing.assert_allclose(ns["probas"], panel.last_result.probas, rtol=0, atol=1e-9)


def test_copy_as_code_few_shot_custom_prompt(ip, panel):
    panel.mode.value = FEW
    panel.prompt.value = "Labels: {labels}\n{examples}\n\nReview: {text}\nLabel:"
    panel.examples.value = "positive: What a wonderful surprise\nnegative: The package arrived damaged"
    panel.raw.value = True
    panel.threshold.value = 0.5
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    panel.code_button.click()
    magic, python = panel.code
    assert magic.startswith("%%fewshot ") and "--prompt 'Labels: {labels}\\n" in magic
    result = run_magic(ip, magic)
    assert result.raw is True
    np.testing.assert_allclose(result.probas, panel.last_result.probas, rtol=0, atol=1e-9)
    assert result.low.tolist() == panel.last_result.low.tolist()


def test_copy_as_code_few_shot_examples_from_a_variable(ip, panel):
    ip.user_ns["ex"] = pd.DataFrame({
        "text": ["What a wonderful surprise", "The package arrived damaged"],
        "label": ["positive", "negative"],
    })
    panel.mode.value = FEW
    panel.examples_var.value = "ex"
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    panel.code_button.click()
    magic, python = panel.code
    assert "--examples ex" in magic and "---" not in magic
    result = run_magic(ip, magic)
    np.testing.assert_allclose(result.probas, panel.last_result.probas, rtol=0, atol=1e-9)
    ns = run_python(python, ex=ip.user_ns["ex"])
    np.testing.assert_allclose(ns["probas"], panel.last_result.probas, rtol=0, atol=1e-9)


def test_copy_as_code_few_shot_label_without_examples(ip, panel):
    """Labels with no example are still classes: in the panel, the magic and the Python."""
    panel.mode.value = FEW
    panel.labels.value = ["positive", "negative", "neutral"]
    panel.examples.value = "positive: What a wonderful surprise\nnegative: The package arrived damaged"
    panel.classify_button.click()
    assert panel.last_result.classes == ["negative", "neutral", "positive"]
    panel.code_button.click()
    magic, python = panel.code
    result = run_magic(ip, magic)
    assert result.classes == panel.last_result.classes
    np.testing.assert_allclose(result.probas, panel.last_result.probas, rtol=0, atol=1e-9)
    ns = run_python(python)
    assert list(ns["clf"].classes_) == panel.last_result.classes
    np.testing.assert_allclose(ns["probas"], panel.last_result.probas, rtol=0, atol=1e-9)


def test_copy_as_code_label_with_an_apostrophe(ip, panel):
    panel.labels.value = ["don't know", "bad"]
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    panel.code_button.click()
    result = run_magic(ip, panel.code[0])
    assert result.classes == panel.last_result.classes == ["bad", "don't know"]
    np.testing.assert_allclose(result.probas, panel.last_result.probas, rtol=0, atol=1e-9)


def test_copy_as_code_model_path_with_a_space(ip, tmp_path):
    folder = save_tiny(tmp_path / "tiny model")
    panel = Panel(threaded=False)
    panel.model.value = folder
    panel.labels.value = list(LABELS)
    panel.texts.value = "\n".join(TEXTS)
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    panel.code_button.click()
    result = run_magic(ip, panel.code[0])
    np.testing.assert_allclose(result.probas, panel.last_result.probas, rtol=0, atol=1e-9)


def test_copy_as_code_error_is_one_line(panel):
    panel.labels.value = []
    panel.code_button.click()
    assert error_line(panel) == "LabelsError: labels must contain at least one label; got none"
    assert panel.code is None
    assert panel.code_area.layout.display == "none"
    assert_idle(panel)


# ------------------------------------------------------------------ data
@pytest.fixture
def df():
    return pd.DataFrame(
        {"text": ["What a wonderful surprise", SCRIPT, "The train was late",
                  "I love it.", "The package arrived damaged"],
         "other": range(5)},
        index=["e", "d", "c", "b", "a"],
    )


def test_panel_with_data_uses_the_row_range(df, tiny_folder):
    panel = Panel(data=df, column="text", labels=LABELS, threaded=False)
    assert panel.labels.value == LABELS
    assert panel.rows.value == (0, 5) and panel.rows.max == 5
    panel.model.value = tiny_folder
    panel.rows.value = (1, 4)
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    result = panel.last_result
    assert len(result) == 3
    assert result.texts == df["text"].iloc[1:4].tolist()
    assert panel.status.value == "3 texts classified"
    page = last_html(panel)
    assert "<caption>3 text(s), 2 labels<span class=\"nbllm-mode\">" in page
    assert ESCAPED_SCRIPT in page and SCRIPT not in page
    np.testing.assert_allclose(
        result.probas, fresh_estimator(tiny_folder).predict_proba(result.texts),
        rtol=0, atol=1e-9)
    panel.code_button.click()
    magic, python = panel.code
    ns = run_python(python, data=df)
    np.testing.assert_allclose(ns["probas"], result.probas, rtol=0, atol=1e-9)


def test_dataframe_accessor_returns_a_panel(df):
    panel = df.llm.panel("text", labels=LABELS)
    assert isinstance(panel, Panel)
    assert panel.data is df and panel.column == "text"
    assert panel.labels.value == LABELS
    assert panel.rows.value == (0, 5)
    with pytest.raises(KeyError, match="column 'nope' not found"):
        df.llm.panel("nope")


def test_nbllm_panel_magic_returns_a_panel(ip, tiny_folder):
    res = ip.run_cell("%nbllm panel")
    assert res.success, res.error_in_exec
    assert isinstance(res.result, Panel)
    assert res.result.model.value == models.DEFAULT_MODEL
    ip.run_line_magic("nbllm", f"model {tiny_folder}")
    panel = ip.run_line_magic("nbllm", "panel")
    assert isinstance(panel, Panel)
    assert panel.model.value == tiny_folder


def test_few_shot_example_template_reaches_the_estimator_and_the_code(panel, tiny_folder,
                                                                     ip):
    from nbllm import FewShotClassifier

    panel.mode.value = FEW
    panel.examples.value = "positive: I love it\nnegative: I hate it"
    panel.example_template.value = "{label} <- {text}"
    panel.classify_button.click()
    expected = FewShotClassifier(tiny_folder, device="cpu", random_state=0,
                                 example_template="{label} <- {text}").fit(
        ["I love it", "I hate it"], ["positive", "negative"])
    np.testing.assert_allclose(panel.last_result.probas, expected.predict_proba(TEXTS),
                               atol=1e-9)
    magic, python = panel.as_code()
    assert "--example-template '{label} <- {text}'" in magic.split("\n")[0]
    assert "example_template='{label} <- {text}'" in python
    # The generated cell runs and gives the panel's probabilities.
    result = run_magic(ip, magic)
    np.testing.assert_allclose(result.probas, panel.last_result.probas, atol=1e-9)


def test_default_example_template_adds_no_code(panel):
    panel.mode.value = FEW
    panel.examples.value = "positive: I love it\nnegative: I hate it"
    magic, python = panel.as_code()
    assert "example" not in magic.split("\n")[0].replace("--examples", "")
    assert "example_template" not in python
