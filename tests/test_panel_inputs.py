"""The panel's labels box, its status at every start and its layout, headless.

The labels box is driven as its front end drives it: a typed or pasted tag
arrives as one more item of ``labels.value``.
"""

import pytest

from nbllm.engine.scoring.prompts import DEFAULT_PROMPT_FEW_SHOT
from nbllm.notebook import classify as api
from nbllm.notebook.panel.panel import FEW, Panel
from nbllm.notebook.panel.labels import HINT, added_tag, split_added
from entry_points import assert_idle, error_line, make_panel

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")

TEXTS = ["I love it.", "The train was late again this morning."]


def type_tag(panel, tag):
    """What the front end does when a tag is committed (Enter, Tab, blur)."""
    panel.labels.value = [*panel.labels.value, tag]


@pytest.fixture
def panel(tiny_folder):
    return make_panel(tiny_folder, [], TEXTS)


# ------------------------------------------------------------------ labels box
@pytest.mark.parametrize("typed, labels", [
    ("negative, positive", ["negative", "positive"]),
    ("negative,positive", ["negative", "positive"]),
    ("negative, positive,", ["negative", "positive"]),  # a trailing comma
    (" negative ,  positive , neutral", ["negative", "positive", "neutral"]),
    ('"very, good", bad', ["very, good", "bad"]),      # quotes protect commas
    ("bad, bad, good", ["bad", "good"]),                # no repeats in the box
])
def test_typed_or_pasted_labels_are_split_as_the_magic_splits_them(panel, typed, labels):
    type_tag(panel, typed)
    assert list(panel.labels.value) == labels


def test_split_labels_go_where_the_tag_was_typed_and_skip_those_present(panel):
    panel.labels.value = ["neutral", "other"]
    panel.labels.value = ["neutral", "positive, neutral, negative", "other"]
    assert list(panel.labels.value) == ["neutral", "positive", "negative", "other"]


def test_a_tag_without_comma_and_labels_set_from_python_stay_as_they_are(panel):
    type_tag(panel, "negative")
    type_tag(panel, "positive")
    assert list(panel.labels.value) == ["negative", "positive"]
    panel.labels.value = ["very, good", "bad"]  # from Python: taken as given
    assert list(panel.labels.value) == ["very, good", "bad"]


def test_one_quoted_label_with_a_comma_is_kept_whole(panel):
    type_tag(panel, "bad")
    type_tag(panel, '"very, good"')
    assert list(panel.labels.value) == ["bad", "very, good"]
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    assert panel.last_result.classes == ["bad", "very, good"]


def test_typed_labels_classify_with_two_labels(panel):
    type_tag(panel, "negative, positive")
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    assert panel.last_result.classes == ["negative", "positive"]
    assert panel.warnings == []


def test_a_single_label_with_a_comma_is_refused_before_any_work(monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the classifier was built")

    monkeypatch.setattr(api, "build_estimator", no_work)
    panel = Panel(threaded=False, labels=["negative,positive"])  # given, not typed
    panel.texts.value = "\n".join(TEXTS)
    panel.classify_button.click()
    assert error_line(panel) == (
        "LabelsError: one label 'negative,positive' holds a comma; a classifier needs "
        "two or more: type them as negative, positive (quote a label that has a comma)")
    assert panel.last_result is None and panel.output.outputs == ()
    assert_idle(panel)


def test_added_tag_and_split_added():
    assert added_tag([], ["a"]) == (0, "a")
    assert added_tag(["a", "c"], ["a", "b", "c"]) == (1, "b")
    assert added_tag(["a"], ["b", "c"]) is None
    assert added_tag(["a", "b"], ["a"]) is None
    assert split_added(["a"], ["a", "b"]) is None
    assert split_added([], ["x, y"]) == ["x", "y"]
    assert split_added([], ["a, b", "c, d"]) is None


def test_the_hint_says_what_works(panel):
    assert panel.labels.placeholder == HINT
    assert "comma" in HINT and "Enter" in HINT and "Tab" in HINT


# ------------------------------------------------------------------ status
def test_every_job_says_what_it_does_before_it_works(panel, tmp_path, monkeypatch):
    """Classify, Preview and Save show a status line before the work starts
    (the first thing each may do is load the model)."""
    seen = []
    real = api.build_estimator

    def build(*args, **kwargs):
        seen.append(panel.status.value)
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "build_estimator", build)
    type_tag(panel, "negative, positive")
    panel.save_path.value = str(tmp_path / "clf.json")
    panel.classify_button.click()
    panel.preview_button.click()
    panel.save_button.click()
    assert seen == ["\u23f3 starting\u2026", "\u23f3 starting\u2026",
                    "\u23f3 saving: building the classifier\u2026"]
    assert panel.status.value.startswith("saved to ")
    assert_idle(panel)


def test_stop_says_at_once_that_the_run_ends_after_its_batch(panel):
    panel.stop_button.click()
    assert panel.status.value == "\u23f3 stopping after the current batch\u2026"


def test_save_runs_in_the_background(tiny_folder, tmp_path):
    panel = Panel(threaded=True, labels=["negative", "positive"])
    panel.model.value = tiny_folder
    panel.save_path.value = str(tmp_path / "clf.json")
    panel.save_button.click()
    panel.wait(120)
    assert panel.last_error is None, panel.last_error
    assert (tmp_path / "clf.json").exists()
    assert_idle(panel)


# ------------------------------------------------------------------ layout
def test_prompt_boxes_show_every_line():
    panel = Panel(threaded=False)
    panel.mode.value = FEW
    assert panel.prompt.value == DEFAULT_PROMPT_FEW_SHOT
    assert panel.prompt.rows > DEFAULT_PROMPT_FEW_SHOT.count("\n")
    assert panel.prompt.layout.height is None  # no fixed height to cut it
    panel.prompt.value = "\n".join(f"line {i}" for i in range(12))
    assert panel.prompt.rows > 11
    assert panel.example_template.rows > panel.example_template.value.count("\n")


def test_buttons_are_as_wide_as_their_words():
    panel = Panel(threaded=False)
    for button in (panel.classify_button, panel.stop_button, panel.preview_button,
                   panel.code_button, panel.save_button, panel.reset_prompt,
                   panel.traceback_button):
        assert button.layout.width == "auto", button.description


def test_the_enter_hook_is_in_the_labels_row_and_fixed():
    """The browser-side hook that commits a tag on Enter (JupyterLab keeps the
    key from the widget) is one fixed front end beside the labels box."""
    import json

    from nbllm.notebook.panel.front_end import _ENTER_ESM, EnterAddsTag

    panel = Panel(threaded=False, labels=["<b>x</b>"])
    row = panel.children[1]
    assert panel.labels in row.children
    hooks = [w for w in row.children if isinstance(w, EnterAddsTag)]
    assert len(hooks) == 1
    assert hooks[0]._esm == _ENTER_ESM  # a fixed script: no user text goes in it
    assert "<b>x</b>" not in json.dumps(hooks[0].get_state(), default=str)
    assert hooks[0].layout.width == "0"  # it shows nothing
