"""User and model text in HTML: escaped in tables, previews, the panel and
error lines.
"""


import pandas as pd
import pytest

import nbllm  # noqa: F401  (registers the df.llm accessor)
from nbllm.notebook import classify as api
from nbllm.notebook.session import session
from nbllm.notebook.display import ClassificationResult, GenerationPreview
from nbllm.estimators.base import _LLMBase
from nbllm.notebook.panel.panel import Panel
from entry_points import (  # noqa: F401  (fixtures among them)
    LABELS,
    SCRIPT,
    assert_escaped,
    assert_idle,
    error_line,
    make_panel,
    panel_html,
    zero,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")


@pytest.fixture
def evil_generation(monkeypatch):
    """The model's free generation is a script payload."""
    generation = f'"{SCRIPT}" & more'
    monkeypatch.setattr(_LLMBase, "generate",
                        lambda self, text, max_new_tokens=20: generation)
    return generation


def test_generation_payload_is_escaped_in_previews(ip, tiny_folder, evil_generation):
    evil_prompt = f"{SCRIPT} {{text}} {{labels}}"
    clf = zero(prompt=evil_prompt).fit(None, [SCRIPT, "ok"])
    preview = api.preview(clf, f"text {SCRIPT}")
    assert isinstance(preview, GenerationPreview)
    assert preview.continuation == evil_generation
    page = preview._repr_html_()
    assert_escaped(page)
    assert "&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot; &amp; more" in page

    ip.user_ns["evil_prompt"] = evil_prompt
    res = ip.run_cell(f"%%zeroshot --labels ok,{SCRIPT} --model {tiny_folder} "
                      f"-p evil_prompt --preview 2\n{SCRIPT}\nplain")
    assert res.success, res.error_in_exec
    assert res.result.previews[0].continuation == evil_generation
    assert_escaped(res.result._repr_html_())

    frame = pd.DataFrame({"text": [SCRIPT]})
    assert_escaped(frame.llm.preview("text", 0, labels=[SCRIPT, "ok"], model=tiny_folder,
                                     prompt=evil_prompt)._repr_html_())


def test_panel_html_escapes_text_label_prompt_and_generation(tiny_folder, evil_generation):
    panel = make_panel(tiny_folder, labels=[SCRIPT, "ok"], texts=[SCRIPT, "plain"])
    panel.prompt.value = f"{SCRIPT} {{text}} {{labels}}"
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    assert panel.last_result.classes == [SCRIPT, "ok"]
    assert_escaped(panel_html(panel))
    panel.preview_button.click()
    assert panel.last_error is None, panel.last_error
    page = panel_html(panel)
    assert_escaped(page)
    assert "&amp; more" in page  # the generation is shown, escaped


def test_panel_error_lines_and_column_names_are_escaped(tiny_folder):
    panel = make_panel(tiny_folder)
    panel.model.value = f"/nonexistent/{SCRIPT}"
    panel.classify_button.click()
    assert f"'/nonexistent/{SCRIPT}'" in error_line(panel)  # the load error names it
    assert_escaped(panel_html(panel))
    assert_idle(panel)
    panel.model.value = tiny_folder
    panel.prompt.value = f"{{text}} {{labels}} {{{SCRIPT}}}"
    assert_escaped(panel.validation.value)
    panel.classify_button.click()  # an extra placeholder warns, as in the estimators
    assert panel.status.value == "2 texts classified"
    assert SCRIPT in panel.warnings[0]
    assert_escaped(panel_html(panel))
    assert_idle(panel)
    panel.prompt.value = f"{SCRIPT} {{text}} {{labels}}"
    panel.classify_button.click()
    assert panel.status.value == "2 texts classified"

    data = pd.DataFrame({SCRIPT: [SCRIPT, "plain"]})
    panel = Panel(data=data, column=SCRIPT, labels=LABELS, threaded=False)
    panel.model.value = tiny_folder
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    assert_escaped(panel_html(panel))


def test_result_tables_and_status_escape_payloads(ip, tiny_folder):
    out = pd.DataFrame({"text": [SCRIPT, "plain"]}).llm.classify(
        "text", [SCRIPT, "ok"], model=tiny_folder)
    assert "<script" not in out._repr_html_().lower()
    result = api.classify([SCRIPT], [SCRIPT, "ok"], model=tiny_folder, progress=False)
    assert isinstance(result, ClassificationResult)
    assert_escaped(result._repr_html_())
    status = ip.run_line_magic("nbllm", f"model '{SCRIPT}'")
    assert session.model == SCRIPT
    assert_escaped(status._repr_html_())
