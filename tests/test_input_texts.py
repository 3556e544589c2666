"""Bad texts through every entry point: missing, non-string, empty, odd
characters, braces; each gets its documented outcome.
"""

import re
import warnings

import numpy as np
import pandas as pd
import pytest

import nbllm  # noqa: F401  (registers the df.llm accessor)
from nbllm.notebook.panel.panel import Panel
from entry_points import (  # noqa: F401  (fixtures among them)
    FEW_Y,
    LABELS,
    MISSING,
    ML_Y,
    NOT_STRINGS,
    SKIPPED,
    TEXTS,
    assert_idle,
    few,
    fitted,
    from_folder,
    messages_of,
    multi,
    multi_oracle,
    oracle,
    prompt_ids,
    run_cell,
    zero,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")


@pytest.mark.parametrize("kind", ["few", "multi"])
def test_missing_texts_at_predict_name_their_positions(kind):
    clf = fitted(kind)
    with pytest.raises(ValueError, match=f"^{re.escape(MISSING.format(2, '1, 3'))}$"):
        clf.predict_proba(["a", None, "b", float("nan")])


def test_accessor_all_missing_texts_give_nan_rows_without_scoring(tiny_folder, spy_score):
    frame = pd.DataFrame({"text": [None, float("nan")]}, index=["x", "y"])
    with pytest.warns(UserWarning, match=f"^{re.escape(SKIPPED.format(2))}$"):
        out = frame.llm.classify("text", LABELS, model=tiny_folder)
    assert out.index.tolist() == ["x", "y"]
    assert list(out.columns) == ["label", "proba_negative", "proba_positive"]
    assert out.isna().all().all()
    assert spy_score == []


def test_accessor_missing_texts_in_a_string_dtype_column(tiny_folder):
    frame = pd.DataFrame({"text": pd.Series([TEXTS[0], None, TEXTS[1]], dtype="string")})
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = frame.llm.classify("text", LABELS, model=tiny_folder)
    assert [str(w.message) for w in record] == [SKIPPED.format(1)]
    assert out.iloc[1].isna().all()
    assert not out.iloc[[0, 2]].isna().any().any()


def test_panel_with_missing_texts_shows_empty_rows(tiny_folder):
    data = pd.DataFrame({"text": [TEXTS[0], None, TEXTS[1]]})
    panel = Panel(data=data, column="text", labels=LABELS, threaded=False)
    panel.model.value = tiny_folder
    panel.classify_button.click()  # the panel shows the warning; nothing is printed
    assert panel.warnings == [SKIPPED.format(1)]
    assert panel.last_error is None, panel.last_error
    result = panel.last_result
    assert result.labels[1] is None and np.isnan(result.probas[1]).all()
    np.testing.assert_allclose(result.probas[[0, 2]],
                               from_folder(tiny_folder).predict_proba(TEXTS[:2]),
                               rtol=0, atol=1e-9)
    assert panel.status.value == "3 texts classified"
    assert_idle(panel)


NON_STRINGS = [7, 3.5, np.int64(-2), b"caf\xc3\xa9", b"bad \xff\xfe utf-8"]
AS_STRINGS = ["7", "3.5", "-2", "caf\u00e9", "bad \ufffd\ufffd utf-8"]


@pytest.mark.parametrize("kind", ["zero", "few", "multi"])
def test_non_strings_are_converted_with_one_warning(kind):
    clf = fitted(kind)
    probas, messages = messages_of(clf.predict_proba, NON_STRINGS + ["plain"])
    assert messages == [NOT_STRINGS.format(len(NON_STRINGS))]
    np.testing.assert_array_equal(probas, clf.predict_proba(AS_STRINGS + ["plain"]))


def test_few_shot_examples_that_are_not_strings_are_converted():
    clf, messages = messages_of(few(max_samples=4).fit, [12, b"\xffbad", "good", 2.5],
                                ["pos", "neg", "pos", "neg"])
    assert messages == [NOT_STRINGS.format(3)]
    assert sorted(t for t, _ in clf.examples_) == sorted(["12", "\ufffdbad", "good", "2.5"])


def test_accessor_converts_non_strings_and_skips_missing(tiny_folder):
    frame = pd.DataFrame({"text": [7, None, b"caf\xc3\xa9", 3.5, "plain"]})
    out, messages = messages_of(frame.llm.classify, "text", LABELS, model=tiny_folder)
    assert messages == [SKIPPED.format(1), NOT_STRINGS.format(3)]
    assert out.iloc[1].isna().all()
    expected = from_folder(tiny_folder).predict_proba(["7", "caf\u00e9", "3.5", "plain"])
    np.testing.assert_allclose(out[["proba_negative", "proba_positive"]].to_numpy()[
        [0, 2, 3, 4]], expected, rtol=0, atol=1e-9)


def test_magic_input_converts_non_strings(ip, tiny_folder):
    ip.user_ns["odd_texts"] = [7, b"caf\xc3\xa9", "plain"]
    res, messages = run_cell(
        ip, f"%%zeroshot --labels positive,negative --model {tiny_folder} "
            "--input odd_texts\n"
            "# texts come from --input")
    assert res.success, res.error_in_exec
    assert messages == [NOT_STRINGS.format(2)]
    np.testing.assert_allclose(res.result.probas, from_folder(tiny_folder).predict_proba(
        ["7", "caf\u00e9", "plain"]), rtol=0, atol=1e-9)


BLANKS = ["", " ", "\n\t  \n"]


# True: the default prompt, which 'auto' sends raw, through the chat template too.
@pytest.mark.parametrize("chat", [True, False])
def test_empty_and_whitespace_texts_are_scored_like_any_text(chat):
    clf = zero(probas_sum_to_1=False, use_chat_template=chat).fit(None, LABELS)
    probas, messages = messages_of(clf.predict_proba, BLANKS)
    assert messages == []
    assert np.isfinite(probas).all() and (probas > 0).all()
    np.testing.assert_allclose(probas, oracle(clf, BLANKS), rtol=1e-5, atol=0)
    # Each blank is its own prompt, not one shared "empty" result.
    assert len({tuple(prompt_ids(clf, t)) for t in BLANKS}) == len(BLANKS)


def test_empty_and_whitespace_texts_through_the_accessor_and_magic(ip, tiny_folder):
    expected = from_folder(tiny_folder).predict_proba(BLANKS)
    assert np.isfinite(expected).all()
    out, messages = messages_of(pd.DataFrame({"text": BLANKS}).llm.classify, "text",
                                LABELS, model=tiny_folder)
    assert messages == []
    np.testing.assert_allclose(out[["proba_negative", "proba_positive"]].to_numpy(),
                               expected, rtol=0, atol=1e-9)
    ip.user_ns["blank_texts"] = list(BLANKS)
    res = ip.run_cell(f"%%zeroshot --labels positive,negative --model {tiny_folder} "
                      "--input blank_texts\n# from --input")
    assert res.success, res.error_in_exec
    np.testing.assert_allclose(res.result.probas, expected, rtol=0, atol=1e-9)


UNUSUAL = [
    "na\u00efve caf\u00e9 \u65e5\u672c\u8a9e \u0416\u0438\u0437\u043d\u044c",  # unicode
    "emoji \U0001F600\U0001F44D\U0001F3FD \U0001F469\u200d\U0001F4BB",  # emoji, ZWJ
    "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u202ertl override",  # RTL
    "bell\x07 esc\x1b[31m tab\t cr\r vt\x0b del\x7f",  # control characters
    "nul\x00 in\x00 the middle\x00",  # NUL bytes
    "\ufeffbom \u200b zero-width \ufffd replacement",
]


@pytest.mark.parametrize("chat", [True, False])
def test_unusual_characters_are_scored_verbatim(chat):
    clf = zero(probas_sum_to_1=False, use_chat_template=chat).fit(None, LABELS)
    head, tail = clf.get_prompt("TEXT").split("TEXT")
    for text in UNUSUAL:
        assert clf.get_prompt(text) == head + text + tail
    probas, messages = messages_of(clf.predict_proba, UNUSUAL)
    assert messages == []
    assert np.isfinite(probas).all()
    np.testing.assert_allclose(probas, oracle(clf, UNUSUAL), rtol=1e-5, atol=0)


def test_unusual_characters_through_the_accessor_and_multi_label(tiny_folder):
    out = pd.DataFrame({"text": UNUSUAL}).llm.classify("text", LABELS, model=tiny_folder)
    np.testing.assert_allclose(out[["proba_negative", "proba_positive"]].to_numpy(),
                               from_folder(tiny_folder).predict_proba(UNUSUAL),
                               rtol=0, atol=1e-9)
    clf = multi(use_chat_template=False).fit(None, ML_Y)
    for text in UNUSUAL:
        assert clf.get_prompt(text, "sports").endswith(f"Text: {text}")
    np.testing.assert_allclose(clf.predict_proba(UNUSUAL[:2]),
                               multi_oracle(clf, UNUSUAL[:2]), rtol=1e-5, atol=1e-9)


BRACES = ["{labels}", "{text}", "{", "}", "{examples} {label}", "{0} {} {{x}}"]


def test_braces_in_few_shot_texts_and_examples_are_verbatim():
    clf = few(max_samples=4, probas_sum_to_1=False).fit(
        ["{text} good", "{labels} bad", "{ great", "awful }"], FEW_Y)
    head, tail = clf.get_prompt("TEXT").split("TEXT")
    for text in ["{text} good", "{labels} bad", "{ great", "awful }"]:
        assert f"Text: {text}\nLabel: " in head
    for text in BRACES:
        assert clf.get_prompt(text) == head + text + tail
    np.testing.assert_allclose(clf.predict_proba(BRACES), oracle(clf, BRACES),
                               rtol=1e-5, atol=0)


def test_braces_in_multi_label_texts_are_verbatim():
    clf = multi().fit(None, ML_Y)
    head, tail = clf.get_prompt("TEXT", "science").split("TEXT")
    for text in BRACES:
        assert clf.get_prompt(text, "science") == head + text + tail


def test_braces_in_magic_cells_are_verbatim(ip, tiny_folder):
    res = ip.run_cell(f"%%zeroshot --labels positive,negative --model {tiny_folder}\n"
                      + "\n".join(BRACES))
    assert res.success, res.error_in_exec
    assert res.result.texts == BRACES
    clf = from_folder(tiny_folder)
    np.testing.assert_allclose(res.result.probas, clf.predict_proba(BRACES),
                               rtol=0, atol=1e-9)
    assert res.result.estimator.get_prompt("{labels}") == clf.get_prompt("{labels}")


def test_example_text_holding_the_text_sentinel_is_verbatim():
    odd = "x\x00nbllm-text\x00y"
    clf = few(max_samples=2).fit([odd, "bad film"], ["pos", "neg"])
    assert f"Text: {odd}\nLabel: pos" in clf.get_prompt("SAMPLE")
