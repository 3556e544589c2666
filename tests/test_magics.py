"""The magics %%zeroshot, %%fewshot and %nbllm, driven through a real InteractiveShell.

Every classification uses the tiny random model by its saved folder; the
numbers are compared with a fresh, uncached estimator on the same texts.
"""

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from nbllm.engine.loading import models
from nbllm.notebook import classify as api
from nbllm.notebook.session import session
from nbllm.engine.scoring.result_cache import result_cache
from nbllm.notebook.display import ClassificationResult, GenerationPreview
from nbllm.estimators import FewShotClassifier, ZeroShotClassifier

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")

LABELS = "positive,negative"
CLASSES = ["negative", "positive"]
TEXTS = ["I love it.", "The train was late again this morning."]
CELL = "\n".join(TEXTS)
# IPython refuses a %% magic with an empty body, so --input cells carry a line.
IGNORED = "# texts come from --input; this line is ignored"
SCRIPT = "<script>alert(1)</script>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"
EXAMPLES = [
    ("What a wonderful surprise", "positive"),
    ("The package arrived damaged", "negative"),
    ("Customer support solved my problem", "positive"),
    ("The battery dies after two hours", "negative"),
]


def zero(folder, labels=CLASSES, **kwargs):
    return ZeroShotClassifier(folder, use_caching=False, progress=False,
                              **kwargs).fit(None, labels)


def few(folder, pairs, max_samples=5, **kwargs):
    clf = FewShotClassifier(folder, use_caching=False, progress=False,
                            max_samples=max_samples, random_state=0, **kwargs)
    return clf.fit([t for t, _ in pairs], [y for _, y in pairs])


def assert_matches(result, clf, texts):
    assert isinstance(result, ClassificationResult)
    assert result.texts == list(texts)
    assert result.classes == list(clf.classes_)
    np.testing.assert_allclose(result.probas, clf.predict_proba(texts), rtol=0, atol=1e-9)
    assert result.labels == list(clf.predict(texts))


# -------------------------------------------------------------- extension
def test_load_ext_registers_the_magics(shell):
    magics = shell.magics_manager.magics
    assert {"zeroshot", "fewshot"} <= set(magics["cell"])
    assert "nbllm" in magics["line"]


def test_load_ext_imports_no_torch():
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "InteractiveShell.instance().run_line_magic('load_ext', 'nbllm')\n"
        "assert 'torch' not in sys.modules, 'torch'\n"
        "assert 'transformers' not in sys.modules, 'transformers'\n"
        "assert 'sklearn' not in sys.modules, 'sklearn'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


# --------------------------------------------------------------- %%zeroshot
def test_zeroshot_run_cell_magic_matches_the_estimator(ip, tiny_folder):
    cell = "  I love it.  \n\n   \nThe train was late again this morning.\n"
    result = ip.run_cell_magic("zeroshot", f"--labels {LABELS} --model {tiny_folder}",
                               cell)
    clf = zero(tiny_folder)
    assert_matches(result, clf, TEXTS)
    np.testing.assert_allclose(result.probas.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(result.label_mass,
                               np.exp(clf.label_logprobs(TEXTS)).sum(axis=1),
                               rtol=1e-12, atol=0)
    assert result.raw is False
    assert result.previews == []
    assert result.low.tolist() == [False, False]
    assert result.estimator.model_name == tiny_folder
    assert list(result.frame.columns) == ["text", "label", "proba_negative",
                                          "proba_positive"]
    assert result.frame.index.equals(pd.RangeIndex(2))


def test_zeroshot_short_options(ip, tiny_folder):
    result = ip.run_cell_magic("zeroshot", f"-l {LABELS} -m {tiny_folder}", CELL)
    assert_matches(result, zero(tiny_folder), TEXTS)


def test_zeroshot_run_cell_sets_underscore(ip, tiny_folder):
    res = ip.run_cell(f"%%zeroshot --labels {LABELS} --model {tiny_folder}\n{CELL}")
    assert res.success
    assert res.error_in_exec is None
    assert isinstance(res.result, ClassificationResult)
    assert ip.user_ns["_"] is res.result
    assert_matches(res.result, zero(tiny_folder), TEXTS)


def test_zeroshot_out_stores_the_result(ip, tiny_folder):
    res = ip.run_cell(f"%%zeroshot --labels {LABELS} --model {tiny_folder} -o preds\n{CELL}")
    assert res.success
    assert ip.user_ns["preds"] is res.result
    result = ip.run_cell_magic("zeroshot",
                               f"--labels {LABELS} --model {tiny_folder} --out other", CELL)
    assert ip.user_ns["other"] is result


def test_zeroshot_html_columns_follow_classes(ip, tiny_folder):
    result = ip.run_cell_magic("zeroshot", f"--labels spam,ham,positive --model {tiny_folder}",
                               CELL)
    assert result.classes == list(result.estimator.classes_) == ["ham", "positive", "spam"]
    thead = re.search(r"<thead>(.*?)</thead>", result._repr_html_()).group(1)
    assert re.findall(r"<th>(.*?)</th>", thead) == ["#", "text", "predicted", "ham",
                                                    "positive", "spam"]


def test_zeroshot_quoted_label_with_a_comma(ip, tiny_folder):
    result = ip.run_cell_magic(
        "zeroshot", f"""--labels '"positive, negative",neutral' --model {tiny_folder}""",
        CELL)
    assert result.classes == ["neutral", "positive, negative"]
    assert_matches(result, zero(tiny_folder, ["positive, negative", "neutral"]), TEXTS)


def test_zeroshot_quoted_label_with_a_comma_via_run_cell(ip, tiny_folder):
    res = ip.run_cell(
        f"""%%zeroshot --labels '"positive, negative",neutral' --model {tiny_folder}\n"""
        f"{CELL}"
    )
    assert res.success, res.error_in_exec
    assert res.result.classes == ["neutral", "positive, negative"]


def test_zeroshot_prompt_from_a_variable(ip, tiny_folder):
    template = "Review: {text}\nOptions: {labels}\nAnswer:"
    ip.user_ns["my_prompt"] = template
    result = ip.run_cell_magic(
        "zeroshot", f"--labels {LABELS} --model {tiny_folder} -p my_prompt", CELL)
    assert result.estimator.prompt == template
    assert_matches(result, zero(tiny_folder, prompt=template), TEXTS)
    assert not np.allclose(result.probas, zero(tiny_folder).predict_proba(TEXTS))


def test_zeroshot_prompt_as_a_quoted_template(ip, tiny_folder):
    template = "Review: {text}\nOptions: {labels}\nAnswer:"
    line = f'--labels {LABELS} --model {tiny_folder} --prompt "Review: {{text}}\\nOptions: ' \
           '{labels}\\nAnswer:"'
    result = ip.run_cell_magic("zeroshot", line, CELL)
    assert result.estimator.prompt == template
    assert_matches(result, zero(tiny_folder, prompt=template), TEXTS)


def test_zeroshot_prompt_single_quoted_template(ip, tiny_folder):
    template = "Text: {text} Labels: {labels} Answer:"
    result = ip.run_cell_magic(
        "zeroshot", f"--labels {LABELS} --model {tiny_folder} -p '{template}'", CELL)
    assert result.estimator.prompt == template


def test_zeroshot_input_dataframe_with_column(ip, tiny_folder):
    df = pd.DataFrame(
        {"review": ["I hate it.", TEXTS[0], TEXTS[1]], "stars": [1, 5, 2]},
        index=pd.Index(["r3", "r1", "r2"], name="id"),
    )
    ip.user_ns["reviews"] = df
    result = ip.run_cell_magic(
        "zeroshot", f"--labels {LABELS} --model {tiny_folder} -i reviews -c review",
        IGNORED)
    assert result.frame.index.equals(df.index)
    assert result.frame["text"].tolist() == df["review"].tolist()
    assert_matches(result, zero(tiny_folder), df["review"].tolist())
    long = ip.run_cell_magic(
        "zeroshot", f"--labels {LABELS} --model {tiny_folder} --input reviews "
                    "--column review", IGNORED)
    np.testing.assert_array_equal(long.probas, result.probas)


def test_zeroshot_input_via_run_cell_with_a_comment_body(ip, tiny_folder):
    # IPython refuses a %%magic with an empty body; with --input the documented
    # way is a comment line, which must not be classified.
    ip.user_ns["reviews"] = pd.DataFrame({"review": TEXTS}, index=["x", "y"])
    res = ip.run_cell(f"%%zeroshot --labels {LABELS} --model {tiny_folder} "
                      "--input reviews --column review\n# texts come from reviews\n")
    assert res.success, res.error_in_exec
    assert ip.user_ns["_"] is res.result
    assert list(res.result.frame.index) == ["x", "y"]
    assert_matches(res.result, zero(tiny_folder), TEXTS)


def test_zeroshot_input_series_keeps_its_index(ip, tiny_folder):
    series = pd.Series(TEXTS, index=[10, 3])
    ip.user_ns["texts_s"] = series
    result = ip.run_cell_magic("zeroshot", f"--labels {LABELS} --model {tiny_folder} "
                                           "--input texts_s", IGNORED)
    assert list(result.frame.index) == [10, 3]
    assert_matches(result, zero(tiny_folder), TEXTS)


def test_zeroshot_input_list_and_tuple(ip, tiny_folder):
    ip.user_ns["texts_l"] = list(TEXTS)
    ip.user_ns["texts_t"] = tuple(TEXTS)
    for name in ("texts_l", "texts_t"):
        result = ip.run_cell_magic(
            "zeroshot", f"--labels {LABELS} --model {tiny_folder} --input {name}", IGNORED)
        assert result.frame.index.equals(pd.RangeIndex(2))
        assert_matches(result, zero(tiny_folder), TEXTS)


def test_zeroshot_input_with_missing_texts_warns(ip, tiny_folder):
    ip.user_ns["texts_m"] = [TEXTS[0], None, TEXTS[1]]
    with pytest.warns(UserWarning, match=re.escape(
            "1 missing text(s) (None or NaN) were skipped; their results are NaN")):
        result = ip.run_cell_magic(
            "zeroshot", f"--labels {LABELS} --model {tiny_folder} --input texts_m", IGNORED)
    assert result.labels[1] is None
    assert np.isnan(result.probas[1]).all()
    np.testing.assert_allclose(result.probas[[0, 2]], zero(tiny_folder).predict_proba(TEXTS),
                               rtol=0, atol=1e-9)


def test_zeroshot_device_cpu(ip, tiny_folder):
    result = ip.run_cell_magic(
        "zeroshot", f"--labels {LABELS} --model {tiny_folder} --device cpu", CELL)
    assert result.estimator.device == "cpu"
    assert result.estimator.device_.type == "cpu"
    assert_matches(result, zero(tiny_folder, device="cpu"), TEXTS)


def test_zeroshot_raw(ip, tiny_folder):
    result = ip.run_cell_magic("zeroshot", f"--labels {LABELS} --model {tiny_folder} --raw",
                               CELL)
    clf = zero(tiny_folder)
    expected = np.exp(clf.label_logprobs(TEXTS))
    assert result.raw is True
    np.testing.assert_allclose(result.probas, expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(
        result.probas, zero(tiny_folder, probas_sum_to_1=False).predict_proba(TEXTS),
        rtol=1e-12, atol=0)
    assert (result.probas.sum(axis=1) < 0.99).all()
    np.testing.assert_allclose(result.label_mass, expected.sum(axis=1), rtol=1e-12)
    assert list(result.frame.columns) == ["text", "label", "proba_negative",
                                          "proba_positive", "label_mass"]
    assert result.labels == list(clf.predict(TEXTS))


def test_zeroshot_threshold_flags_every_row(ip, tiny_folder):
    result = ip.run_cell_magic(
        "zeroshot", f"--labels {LABELS} --model {tiny_folder} --raw --threshold 1.0", CELL)
    assert result.threshold == 1.0
    assert result.low.tolist() == [True, True]
    html = result._repr_html_()
    assert html.count('<tr class="nbllm-low">') == 2
    assert html.count("\u26a0 low</span>") == 2  # one flag per row; the legend says it once more
    assert "2 under the threshold 1<span class=\"nbllm-mode\">" in html
    assert repr(result).splitlines()[1].endswith("  LOW")


def test_zeroshot_threshold_without_raw_also_flags(ip, tiny_folder):
    result = ip.run_cell_magic(
        "zeroshot", f"--labels {LABELS} --model {tiny_folder} --threshold 1.0", CELL)
    assert result.low.tolist() == [True, True]
    np.testing.assert_allclose(result.probas.sum(axis=1), 1.0, atol=1e-12)


def test_zeroshot_preview(ip, tiny_folder):
    result = ip.run_cell_magic(
        "zeroshot", f"--labels {LABELS} --model {tiny_folder} --preview 1", CELL)
    assert len(result.previews) == 1
    p = result.previews[0]
    assert isinstance(p, GenerationPreview)
    clf = zero(tiny_folder)
    assert p.text == TEXTS[0]
    assert p.prompt == clf.get_prompt(TEXTS[0])
    assert p.continuation == clf.generate(TEXTS[0], max_new_tokens=24)
    assert p.classes == CLASSES
    np.testing.assert_allclose(p.probas, result.probas[0], rtol=0, atol=1e-12)
    html = result._repr_html_()
    assert "Free generation" in html
    assert html.count('<div class="nbllm-preview tex2jax_ignore mathjax_ignore">') == 1


def test_zeroshot_html_escapes_text_label_and_prompt(ip, tiny_folder):
    ip.user_ns["evil_prompt"] = f"{SCRIPT} Text: {{text}} Labels: {{labels}}"
    result = ip.run_cell_magic(
        "zeroshot",
        f"--labels positive,{SCRIPT} --model {tiny_folder} -p evil_prompt --preview 1",
        f"{SCRIPT} and more\nplain text")
    assert result.classes == [SCRIPT, "positive"]
    assert SCRIPT in result.previews[0].prompt
    html = result._repr_html_()
    assert "<script>" not in html
    assert f'<td class="nbllm-text" title="{ESCAPED_SCRIPT} and more">' in html
    assert f"<th>{ESCAPED_SCRIPT}</th>" in html
    assert f'<pre class="nbllm-pre">{ESCAPED_SCRIPT} Text: ' in html


def test_zeroshot_dollar_and_brace_expansion(ip, tiny_folder):
    ip.user_ns["my_labels"] = "positive,negative"
    ip.user_ns["model_path"] = tiny_folder
    res = ip.run_cell(f"%%zeroshot --labels $my_labels --model {{model_path}}\n{CELL}")
    assert res.success, res.error_in_exec
    assert res.result.classes == CLASSES
    assert res.result.estimator.model_name == tiny_folder
    assert_matches(res.result, zero(tiny_folder), TEXTS)


# ---------------------------------------------------------------- %%fewshot
def test_fewshot_examples_dataframe(ip, tiny_folder):
    ip.user_ns["ex_df"] = pd.DataFrame(EXAMPLES, columns=["text", "label"])
    result = ip.run_cell_magic("fewshot", f"--examples ex_df --model {tiny_folder}", CELL)
    clf = few(tiny_folder, EXAMPLES)
    assert result.estimator.examples_for(TEXTS) == clf.examples_for(TEXTS)
    assert all(len(shown) == 4 for shown in clf.examples_for(TEXTS))
    assert_matches(result, clf, TEXTS)
    assert result.estimator.get_prompt(TEXTS[0]) == clf.get_prompt(TEXTS[0])


def test_fewshot_examples_list_of_pairs(ip, tiny_folder):
    ip.user_ns["ex_list"] = list(EXAMPLES)
    result = ip.run_cell_magic("fewshot", f"-e ex_list -m {tiny_folder}", CELL)
    assert_matches(result, few(tiny_folder, EXAMPLES), TEXTS)


def test_fewshot_text_and_label_columns(ip, tiny_folder):
    ip.user_ns["ex_cols"] = pd.DataFrame(
        {"sentiment": [y for _, y in EXAMPLES], "review": [t for t, _ in EXAMPLES]})
    result = ip.run_cell_magic(
        "fewshot", f"--examples ex_cols --text-col review --label-col sentiment "
                   f"--model {tiny_folder}", CELL)
    assert_matches(result, few(tiny_folder, EXAMPLES), TEXTS)


def test_fewshot_max_samples(ip, tiny_folder):
    ip.user_ns["ex_list"] = list(EXAMPLES)
    for flag in ("-k 2", "--max-samples 2"):
        result = ip.run_cell_magic("fewshot", f"--examples ex_list {flag} "
                                              f"--model {tiny_folder}", CELL)
        clf = few(tiny_folder, EXAMPLES, max_samples=2)
        assert result.estimator.max_samples == 2
        shown = result.estimator.examples_for(TEXTS)
        assert all(len(pairs) == 2 for pairs in shown)
        assert shown == clf.examples_for(TEXTS)
        assert_matches(result, clf, TEXTS)


def test_fewshot_inline_examples(ip, tiny_folder):
    cell = (
        "positive: What a wonderful surprise\n"
        "\n"
        "  negative:   The package arrived damaged  \n"
        '"a:b": a label with a colon: kept\n'
        "---\n"
        f"{TEXTS[0]}\n"
        f"{TEXTS[1]}\n"
    )
    pairs = [("What a wonderful surprise", "positive"),
             ("The package arrived damaged", "negative"),
             ("a label with a colon: kept", "a:b")]
    result = ip.run_cell_magic("fewshot", f"--model {tiny_folder}", cell)
    clf = few(tiny_folder, pairs)
    assert result.classes == ["a:b", "negative", "positive"]
    assert sorted(result.estimator.examples_for(TEXTS)[0]) == sorted(pairs)
    assert result.estimator.examples_for(TEXTS) == clf.examples_for(TEXTS)
    assert_matches(result, clf, TEXTS)


def test_fewshot_labels_without_examples_are_classes(ip, tiny_folder):
    ip.user_ns["ex_list"] = list(EXAMPLES)
    result = ip.run_cell_magic(
        "fewshot", f"--examples ex_list --labels positive,negative,neutral "
                   f"--model {tiny_folder}", CELL)
    assert result.classes == ["negative", "neutral", "positive"]
    assert result.probas.shape == (2, 3)
    np.testing.assert_allclose(result.probas.sum(axis=1), 1.0, atol=1e-12)
    assert "neutral" in result.estimator.get_prompt(TEXTS[0])
    clf = few(tiny_folder, EXAMPLES)
    clf.fit([t for t, _ in EXAMPLES], [y for _, y in EXAMPLES],
            classes=["positive", "negative", "neutral"])
    assert_matches(result, clf, TEXTS)


# ---------------------------------------------------------------- %nbllm
def test_nbllm_status(ip):
    status = ip.run_line_magic("nbllm", "")
    text = repr(status)
    for key in ("model", "device", "result cache"):
        assert key in text
    lines = text.splitlines()
    assert lines[0] == "model: smollm2-135m (embedded default)"
    assert lines[1] == "device: auto"
    assert lines[2] == "dtype: auto"
    assert lines[3] == (f"result cache: {len(result_cache)} entries, {result_cache.hits} "
                        f"hits, {result_cache.misses} misses")
    assert [line.split(":")[0] for line in lines] == [
        "model", "device", "dtype", "result cache", "cache folder", "disk result cache",
        "loaded models", "embedded models", "prompts", "prefix cache", "result cache bound"]
    assert lines[9] == ("prefix cache: up to 256 MiB of prompt prefixes' keys and values "
                        "per model")
    assert lines[10] == (f"result cache bound: up to 512 MiB in memory "
                         f"({result_cache.nbytes / 2**20:.1f} MiB used), the least recently "
                         "used dropped first")
    assert lines[7] == (
        "embedded models: smollm2-135m: SmolLM2-135M-Instruct (Llama family), Q4_1, 98 MB; "
        "the default; installed | gemma3-270m: Gemma 3 270M (Gemma 3 family, 262k-token "
        "vocabulary), Q4_K_M, 253 MB; installed")
    assert lines[8] == ("prompts: sent raw, the label after a space (use_chat_template="
                        "'auto'; each result's caption says how its prompt was sent)")
    assert lines[5] == "disk result cache: off"
    html = status._repr_html_()
    cell = "text-align:left;vertical-align:top;padding:2px 8px;overflow-wrap:anywhere"
    assert html.startswith('<table class="nbllm-status tex2jax_ignore mathjax_ignore"><tr>'
                           f'<th style="{cell};white-space:nowrap">model</th>'
                           f'<td style="{cell}">')


def test_nbllm_model_sets_the_session_default(ip, tiny_folder):
    status = ip.run_line_magic("nbllm", f"model {tiny_folder}")
    assert session.model == tiny_folder
    assert repr(status).splitlines()[0] == f"model: {tiny_folder}"
    result = ip.run_cell_magic("zeroshot", f"--labels {LABELS}", CELL)
    assert result.estimator.model_name == tiny_folder
    assert result.estimator.loaded_.spec == tiny_folder
    assert_matches(result, zero(tiny_folder), TEXTS)
    res = ip.run_cell(f"%%zeroshot --labels {LABELS}\n{CELL}")
    assert res.success, res.error_in_exec
    ip.run_line_magic("nbllm", "model default")
    assert session.model is None


def test_nbllm_device_cpu(ip, tiny_folder):
    status = ip.run_line_magic("nbllm", "device cpu")
    assert session.device == "cpu"
    assert repr(status).splitlines()[1] == "device: cpu"
    result = ip.run_cell_magic("zeroshot", f"--labels {LABELS} --model {tiny_folder}", CELL)
    assert result.estimator.device == "cpu"


def test_nbllm_device_bogus(ip):
    with pytest.raises(UsageError, match=re.escape(
            "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got 'gpu0'")):
        ip.run_line_magic("nbllm", "device gpu0")
    assert session.device == "auto"


def test_nbllm_cache_clear(ip, tiny_folder):
    ip.run_cell_magic("zeroshot", f"--labels {LABELS} --model {tiny_folder}",
                      "a text only this test uses")
    assert len(result_cache) > 0
    status = ip.run_line_magic("nbllm", "cache clear")
    assert len(result_cache) == 0
    assert result_cache.hits == result_cache.misses == 0
    assert repr(status).splitlines()[3] == "result cache: 0 entries, 0 hits, 0 misses"


UNKNOWN = ("%nbllm: unknown command {!r}; use '%nbllm', '%nbllm model NAME', "
           "'%nbllm device cpu|cuda|auto', '%nbllm cache clear|DIR', "
           "'%nbllm cache [delete NAME|stale|all]', '%nbllm prefix-cache MB', "
           "'%nbllm result-cache MB' or '%nbllm panel'")


# '%nbllm cache' alone lists the converted copies (tests/test_converted_copies.py).
@pytest.mark.parametrize("line", ["bogus", "model", "model a b", "cache a b", "panel x",
                                  "prefix-cache", "prefix-cache 1 2",
                                  "result-cache"])
def test_nbllm_unknown_subcommand(ip, line):
    with pytest.raises(UsageError, match=re.escape(UNKNOWN.format(line))):
        ip.run_line_magic("nbllm", line)


def test_nbllm_unknown_subcommand_via_run_cell(ip, capsys):
    res = ip.run_cell("%nbllm bogus")
    assert not res.success
    assert isinstance(res.error_in_exec, UsageError)
    assert str(res.error_in_exec) == UNKNOWN.format("bogus")
    assert capsys.readouterr().err == f"UsageError: {UNKNOWN.format('bogus')}\n"


# ---------------------------------------------------------------- bad options
BAD_OPTIONS = [
    ("zeroshot", "", CELL, "%%zeroshot needs --labels, e.g. --labels negative,positive"),
    ("zeroshot", "--labels a,,b", CELL, "--labels: labels must be non-empty strings; got ''"),
    ("zeroshot", "--labels a,a", CELL, "--labels: labels must be unique; repeated: 'a'"),
    ("zeroshot", "--labels a,b,a,b", CELL,
     "--labels: labels must be unique; repeated: 'a', 'b'"),
    ("zeroshot", "--labels a,b --input nope", IGNORED, "--input: no variable named 'nope'"),
    ("zeroshot", "--labels a,b --input num", IGNORED,
     "--input: num must be a DataFrame, Series, list or tuple; got int"),
    ("zeroshot", "--labels a,b --input frame", IGNORED,
     "--input frame is a DataFrame; name the text column with --column "
     "(one of review, stars)"),
    ("zeroshot", "--labels a,b --input frame --column nope", IGNORED,
     "--column: frame has no column 'nope'; columns are review, stars"),
    ("zeroshot", "--labels a,b --prompt num", CELL,
     "--prompt: variable 'num' must hold a str; got int"),
    ("zeroshot", "--labels a,b --prompt nope", CELL, "--prompt: no variable named 'nope'"),
    ("zeroshot", "--labels a,b", "\n  \n", "no texts: write one text per line in the cell, "
                                            "or use --input"),
    ("zeroshot", "--labels a,b --bogus", CELL, "zeroshot: unrecognized arguments: --bogus"),
    ("zeroshot", "--labels a,b --preview x", CELL,
     "zeroshot: argument --preview: invalid int value: 'x'"),
    ("fewshot", "", CELL, "%%fewshot needs examples: --examples VAR, or 'label: text' lines "
                          "above a '---' line"),
    ("fewshot", "", "positive: good\nno colon here\n---\nsome text",
     "example line 2 must look like 'label: text'; got 'no colon here'"),
    ("fewshot", "", '"a:b some text\n---\nx',
     "example line 1: unclosed quoted label in '\"a:b some text'"),
    ("fewshot", "", ": no label\n---\nx", "example line 1 has an empty label: ': no label'"),
    ("fewshot", "", "\n---\nx", "no examples above the '---' line"),
    ("fewshot", "-k 0", "a: b\n---\nx", "--max-samples must be a positive integer; got 0"),
    ("fewshot", "--examples nope", CELL, "--examples: no variable named 'nope'"),
    ("fewshot", "--bogus 1", CELL, "fewshot: unrecognized arguments: --bogus 1"),
]


@pytest.fixture
def bad_ns(ip):
    ip.user_ns["num"] = 3
    ip.user_ns["frame"] = pd.DataFrame({"review": ["x"], "stars": [1]})
    return ip


@pytest.mark.parametrize("magic,line,cell,message", BAD_OPTIONS)
def test_bad_options_raise_a_usage_error(bad_ns, magic, line, cell, message):
    with pytest.raises(UsageError, match=f"^{re.escape(message)}$"):
        bad_ns.run_cell_magic(magic, line, cell)


@pytest.mark.parametrize("magic,line,cell,message", BAD_OPTIONS)
def test_bad_options_via_run_cell_show_one_line(bad_ns, capsys, magic, line, cell,
                                                message):
    res = bad_ns.run_cell(f"%%{magic} {line}\n{cell}")
    assert not res.success
    assert isinstance(res.error_in_exec, UsageError)
    assert str(res.error_in_exec) == message
    assert capsys.readouterr().err == f"UsageError: {message}\n"


LINE_FORM = [(magic, line, message) for magic, line, cell, message in BAD_OPTIONS
             if "--input" in line]


@pytest.mark.parametrize("magic,line,message", LINE_FORM)
def test_with_input_the_line_magic_gives_nbllms_own_error(bad_ns, capsys, magic, line,
                                                          message):
    """``%zeroshot --input ...`` (one %, no body): nbllm's error, not IPython's."""
    assert len(LINE_FORM) == 4
    res = bad_ns.run_cell(f"%{magic} {line}")
    assert not res.success
    assert isinstance(res.error_in_exec, UsageError)
    assert str(res.error_in_exec) == message
    assert capsys.readouterr().err == f"UsageError: {message}\n"


def test_with_input_the_line_magic_classifies(ip, tiny_folder):
    ip.user_ns["frame"] = pd.DataFrame({"text": ["good", "bad", "fine"]}, index=[7, 8, 9])
    res = ip.run_cell(f"%zeroshot --labels a,b --model {tiny_folder} --input frame "
                      "--column text --out kept")
    assert res.success, res.error_in_exec
    assert list(res.result.frame.index) == [7, 8, 9] and ip.user_ns["kept"] is res.result
    ip.user_ns["examples"] = pd.DataFrame({"text": ["great", "awful"],
                                           "label": ["a", "b"]})
    res = ip.run_cell(f"%fewshot --model {tiny_folder} --examples examples --input frame "
                      "--column text")
    assert res.success, res.error_in_exec
    assert res.result.texts == ["good", "bad", "fine"]


def test_an_empty_cell_magic_is_refused_by_ipython_before_nbllm(ip, capsys):
    """Why the docs, the help and Copy as code write the line form with --input."""
    res = ip.run_cell("%%zeroshot --labels a,b --input nosuchvar\n")
    assert not res.success and isinstance(res.error_in_exec, UsageError)
    assert "Did you mean the line magic %zeroshot" in str(res.error_in_exec)
    assert "nosuchvar" not in str(res.error_in_exec)
    doc = ip.find_line_magic("zeroshot").__doc__
    assert "``%zeroshot --labels a,b --input df --column text``" in doc
    assert "then write the line magic (one %, no cell body)" in " ".join(doc.split())


def test_model_errors_become_usage_errors(ip, tmp_path):
    with pytest.raises(UsageError, match=re.escape(
            f"Could not load model {str(tmp_path / 'nothing')!r}: it is neither an "
            "embedded alias")):
        ip.run_cell_magic("zeroshot", f"--labels a,b --model {tmp_path / 'nothing'}", CELL)


def test_bad_threshold_is_a_usage_error(ip, tiny_folder):
    with pytest.raises(UsageError, match=re.escape(
            "--threshold must be between 0 and 1; got 2.0")):
        ip.run_cell_magic("zeroshot", f"--labels a,b --model {tiny_folder} --threshold 2",
                          CELL)


def test_fewshot_example_label_outside_labels(ip, tiny_folder):
    with pytest.raises(UsageError, match=re.escape(
            "examples use label(s) not in labels: 'neutral'")):
        ip.run_cell_magic("fewshot", f"--labels positive,negative --model {tiny_folder}",
                          "positive: good\nneutral: meh\n---\nx")


def test_fewshot_examples_dataframe_missing_columns(ip, tiny_folder):
    ip.user_ns["ex_bad"] = pd.DataFrame({"review": ["a"], "label": ["b"]})
    with pytest.raises(UsageError, match=re.escape(
            "examples DataFrame has no column(s) 'text'; columns are 'review', 'label'")):
        ip.run_cell_magic("fewshot", f"--examples ex_bad --model {tiny_folder}", CELL)


def test_fewshot_examples_of_the_wrong_type_is_a_usage_error(ip, tiny_folder):
    ip.user_ns["num"] = 3
    with pytest.raises(UsageError, match=re.escape(
            "examples must be a DataFrame with text and label columns or a non-empty "
            "list of (text, label) pairs")):
        ip.run_cell_magic("fewshot", f"--examples num --model {tiny_folder}", CELL)


def test_unclosed_quote_in_options_is_a_usage_error(ip, tiny_folder):
    with pytest.raises(UsageError, match="No closing quotation"):
        ip.run_cell_magic("zeroshot", f'--labels a,b --model {tiny_folder} -p "oops', CELL)


def test_nbllm_cache_dir_turns_on_the_disk_cache(ip, tiny_folder, tmp_path):
    ip.run_line_magic("nbllm", f"cache {tmp_path}")
    assert session.cache_dir == str(tmp_path)
    assert repr(ip.run_line_magic("nbllm", "")).splitlines()[5] == \
        f"disk result cache: {tmp_path}"
    result = ip.run_cell_magic("zeroshot", f"--labels {LABELS} --model {tiny_folder}", CELL)
    assert len(result.estimator.disk_cache_) == len(TEXTS)
    ip.run_line_magic("nbllm", "cache clear")
    assert len(result.estimator.disk_cache_) == 0
    ip.run_line_magic("nbllm", "cache off")
    assert session.cache_dir is None


@pytest.mark.usefixtures("float32_auto")
def test_nbllm_status_names_each_models_scoring_path(ip, tiny_folder):
    ip.run_cell_magic("zeroshot", f"--labels negative,positive --model {tiny_folder}",
                      CELL)
    shown = repr(ip.run_line_magic("nbllm", ""))
    assert f"LoadedModel(spec={tiny_folder!r}, device='cpu', dtype='float32', " \
           "scoring='tree-mask')" in shown


def test_magic_warnings_point_at_the_cell(ip, tiny_folder):
    """Not at nbllm's source, nor at IPython's machinery: at the user's cell."""
    import warnings

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ip.run_cell(f"%%zeroshot --labels only --model {tiny_folder}\nsome text")
    assert record, "the single-label warning was not raised"
    for w in record:
        assert "nbllm" not in w.filename and "IPython" not in w.filename, w.filename


def test_nbllm_prefix_cache_sets_the_engine_bound(ip):
    from nbllm.engine.scoring import prefix
    from nbllm.notebook.session import session

    try:
        ip.run_line_magic("nbllm", "prefix-cache 64")
        assert session.prefix_cache_mb == 64 and prefix.max_bytes == 64 * 2**20
        assert "up to 64 MiB" in repr(ip.run_line_magic("nbllm", ""))
        ip.run_line_magic("nbllm", "prefix-cache 0")
        assert prefix.max_bytes == 0
        session.reset()
        assert prefix.max_bytes == prefix.DEFAULT_MAX_BYTES == 256 * 2**20
    finally:
        session.reset()


def test_nbllm_result_cache_sets_the_process_wide_bound(ip):
    from nbllm.engine.scoring.result_cache import DEFAULT_MAX_BYTES
    from nbllm.notebook.session import session

    try:
        ip.run_line_magic("nbllm", "result-cache 64")
        assert session.result_cache_mb == 64 and result_cache.max_bytes == 64 * 2**20
        assert repr(ip.run_line_magic("nbllm", "")).splitlines()[10].startswith(
            "result cache bound: up to 64 MiB in memory (")
        ip.run_line_magic("nbllm", "result-cache 0")
        assert result_cache.max_bytes == 0
        session.reset()
        assert result_cache.max_bytes == DEFAULT_MAX_BYTES == 512 * 2**20
    finally:
        session.reset()


@pytest.mark.parametrize("value, message", [
    ("lots", "%nbllm result-cache takes a number of MiB; got 'lots'"),
    ("-1", "result_cache_mb must be a number of MiB >= 0; got -1.0"),
])
def test_nbllm_result_cache_refuses_what_is_not_a_size(ip, value, message):
    from nbllm.engine.scoring.result_cache import DEFAULT_MAX_BYTES

    with pytest.raises(UsageError, match="^" + re.escape(message) + "$"):
        ip.run_line_magic("nbllm", f"result-cache {value}")
    assert result_cache.max_bytes == DEFAULT_MAX_BYTES


@pytest.mark.parametrize("value, message", [
    ("lots", "%nbllm prefix-cache takes a number of MiB; got 'lots'"),
    ("-1", "prefix_cache_mb must be a number of MiB >= 0; got -1.0"),
    ("nan", "prefix_cache_mb must be a number of MiB >= 0; got nan"),
])
def test_nbllm_prefix_cache_refuses_what_is_not_a_size(ip, value, message):
    from nbllm.engine.scoring import prefix

    with pytest.raises(UsageError, match="^" + re.escape(message) + "$"):
        ip.run_line_magic("nbllm", f"prefix-cache {value}")
    assert prefix.max_bytes == prefix.DEFAULT_MAX_BYTES
