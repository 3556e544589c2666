"""explain in the notebook: %%zeroshot/%%fewshot --explain through a real
InteractiveShell, df.llm.explain, and nbllm.notebook.classify.explain (tiny model)."""

import re

import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError

from nbllm import options
from nbllm.estimators import ZeroShotClassifier
from nbllm.estimators.explanation import HTML_ROWS
from nbllm.notebook import classify as api

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")

TEXTS = ["I love it.", "The train was late again this morning."]


def test_explain_is_declared_once_for_both_magics():
    option = options.BY_NAME["explain"]
    assert option.flag == "--explain" and option.magics == ("zeroshot", "fewshot")
    assert option.estimators == () and option.default is False
    assert f"the first {HTML_ROWS} rows" in option.help_text
    assert api.EXPLAIN_ROWS == HTML_ROWS


def test_zeroshot_explain_shows_the_highlight_under_the_table(ip, tiny_folder):
    result = ip.run_cell_magic("zeroshot", f"--labels positive,negative --model "
                               f"{tiny_folder} --explain", "\n".join(TEXTS))
    ex = result.explanation
    assert len(ex) == 2 and ex.method == "occlusion"
    clf = ZeroShotClassifier(str(tiny_folder), use_caching=False, progress=False).fit(
        None, ["positive", "negative"])
    again = clf.explain(TEXTS)
    for row, expected in zip(ex.rows, again.rows):
        np.testing.assert_allclose(row.contributions, expected.contributions, atol=1e-5)
    page = result._repr_html_()
    assert page.index("</table>") < page.index("nbllm-explain")
    assert "contribution to the log-odds" in page
    assert "Contributions to" in repr(result)


def test_without_explain_there_is_no_highlight(ip, tiny_folder):
    result = ip.run_cell_magic("zeroshot", f"--labels positive,negative --model "
                               f"{tiny_folder}", "\n".join(TEXTS))
    assert result.explanation is None and "nbllm-explain" not in result._repr_html_()


def test_fewshot_explain(ip, tiny_folder):
    cell = "positive: great flight\nnegative: lost my bag\n---\n" + "\n".join(TEXTS)
    result = ip.run_cell_magic("fewshot", f"--model {tiny_folder} --explain", cell)
    assert [r.outcome for r in result.explanation.rows] == [None, None]
    assert result.explanation[0].predicted in ("negative", "positive")


def test_explain_with_several_prompts_is_one_line(ip, tiny_folder):
    with pytest.raises(UsageError, match=re.escape(
            "--explain explains one prompt's results; several --prompt compare prompts")):
        ip.run_cell_magic("zeroshot", f"--labels a,b --model {tiny_folder} --explain "
                          "--prompt 'A {text}' --prompt 'B {text}'", "x y")


def test_only_the_first_rows_are_explained(tiny_folder, monkeypatch):
    monkeypatch.setattr(api, "EXPLAIN_ROWS", 2)
    result = api.classify(["a b", "c d", "e f"], ["x", "y"], model=str(tiny_folder),
                          explain=True)
    assert len(result.explanation) == 2


def test_dataframe_explain_returns_a_frame_on_the_index(tiny_folder):
    df = pd.DataFrame({"text": ["I love it", None, ""]}, index=["a", "b", "c"])
    frame = df.llm.explain("text", ["positive", "negative"], model=str(tiny_folder))
    assert frame["row"].tolist() == ["a", "a", "a", "b", "c"]
    assert frame["word"].tolist()[:3] == ["I", "love", "it"]
    assert frame["outcome"].tolist()[3:] == [
        "not explained: the text is missing (None or NaN)",
        "not explained: the text is empty (no words)"]
    assert {"contribution", "logp:negative", "logp:positive"} <= set(frame.columns)


def test_dataframe_explain_errors_are_in_the_notebooks_words(tiny_folder):
    df = pd.DataFrame({"text": ["I love it"]})
    with pytest.raises(ValueError, match=re.escape(
            "method must be one of 'occlusion', 'shapley'; got 'lime'")):
        df.llm.explain("text", ["a", "b"], model=str(tiny_folder), method="lime")
    with pytest.raises(KeyError, match="column 'body' not found"):
        df.llm.explain("body", ["a", "b"], model=str(tiny_folder))


def test_explain_reports_on_the_status_line(tiny_folder):
    from nbllm.engine import status

    lines = []
    with status.listening(lines.append):
        api.classify(TEXTS, ["x", "y"], model=str(tiny_folder), explain=True)
    assert "explaining the first 2 row(s)\u2026" in lines
    assert any(line.startswith("explaining 2 text(s) by occlusion") for line in lines)


# -------------------------------------------------------------------- panel
def test_panel_explain_shows_the_highlight_and_copy_as_code_writes_the_call(tiny_folder):
    from nbllm.notebook.panel.panel import Panel

    panel = Panel(labels=["positive", "negative"], threaded=False)
    panel.model.value = str(tiny_folder)
    panel.texts.value = "\n".join(TEXTS)
    panel.explain_button.click()
    assert panel.last_error is None
    shown = panel.preview_output.outputs[0]["data"]
    assert "nbllm-explain" in shown["text/html"]
    assert "Contributions to" in shown["text/plain"]
    assert panel.status.value == "2 text(s) explained (the first 20 at most)"
    magic, python = panel.as_code()
    assert " --explain" in magic.splitlines()[0]
    assert python.splitlines()[-1] == ("explanation = clf.explain(texts[:20])  # why each "
                                       "label: the words highlighted")
    # Classify again: the code classifies only.
    panel.classify_button.click()
    magic, python = panel.as_code()
    assert "--explain" not in magic and "explain(" not in python
