"""Bad labels through every entry point: none, blank, repeated, one, many.
"""

import copy
import math
import re

import numpy as np
import pandas as pd
import pytest

import nbllm  # noqa: F401  (registers the df.llm accessor)
from nbllm.notebook import classify as api
from tiny import get_tiny_tokenizer, oracle_logprob
from entry_points import (  # noqa: F401  (fixtures among them)
    LABELS,
    RAW_WORDS,
    SCRIPT,
    SINGLE_LABEL,
    TEXTS,
    assert_idle,
    error_line,
    few,
    make_panel,
    messages_of,
    multi,
    prompt_ids,
    run_cell,
    usage_error,
    zero,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")


def test_label_that_tokenizes_to_nothing():
    from tokenizers import normalizers

    # Like many real tokenizers, this one's normaliser drops a character
    # (here the zero-width space, which str.strip() keeps).
    tok = copy.deepcopy(get_tiny_tokenizer())
    tok.backend_tokenizer.normalizer = normalizers.Replace("\u200b", "")
    assert tok("\u200b", add_special_tokens=False)["input_ids"] == []
    msg = "label '\\u200b' tokenizes to no tokens"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        zero(tokenizer=tok).fit(None, ["yes", "\u200b"])
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        multi(tokenizer=tok).fit(None, [["yes"], ["\u200b"]])


def test_blank_label_in_multi_label_y():
    with pytest.raises(ValueError, match=re.escape(
            "labels must be non-empty strings; got ' ' in the classes")):
        multi().fit(None, [["sports", " "]])


@pytest.mark.parametrize("options", [
    dict(multi_label=True),
    dict(examples=[("good", "a"), ("bad", "b")]),
], ids=["multi_label", "examples"])
def test_accessor_repeated_labels_with_other_options(tiny_folder, options):
    frame = pd.DataFrame({"text": TEXTS})
    msg = "labels must be unique; repeated: 'a'"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        frame.llm.classify("text", ["a", "b", "a"], model=tiny_folder, **options)


@pytest.mark.parametrize("cell", [
    "%%zeroshot --multi-label --labels a,b,a --model {}\nx",
    "%%fewshot --labels a,b,a --model {}\na: good\n---\nx",
], ids=["multi-label", "fewshot"])
def test_magic_repeated_labels_with_other_options(ip, tiny_folder, capsys, cell):
    res = ip.run_cell(cell.format(tiny_folder))
    usage_error(res, capsys, "--labels: labels must be unique; repeated: 'a'")


@pytest.mark.parametrize("labels, message", [
    (["a", "a"], "labels must be unique; repeated: 'a'"),
    (["a", " "], "labels must be non-empty strings; got ' '"),
    ([SCRIPT, SCRIPT], f"labels must be unique; repeated: '{SCRIPT}'"),
], ids=["repeated", "blank", "script"])
def test_panel_bad_labels_show_an_escaped_line_and_the_panel_stays_usable(
        tiny_folder, labels, message):
    panel = make_panel(tiny_folder, labels=labels)
    panel.classify_button.click()
    assert error_line(panel) == f"LabelsError: {message}"
    assert "<script" not in panel.status.value
    assert panel.last_result is None
    assert_idle(panel)
    panel.labels.value = list(LABELS)
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    assert panel.status.value == "2 texts classified"
    assert_idle(panel)


@pytest.mark.parametrize("make", [
    lambda: zero().fit(None, ["spam", "spam"]),
    lambda: few().fit(["a", "b"], ["spam", "spam"]),
    lambda: zero(label_map={"s": "spam"}).fit(None, ["s"]),
], ids=["zero", "few", "label_map"])
def test_single_label_warns(make):
    clf, messages = messages_of(make)
    assert messages == [SINGLE_LABEL.format("spam", words=RAW_WORDS["estimator"])]
    np.testing.assert_array_equal(clf.predict_proba(TEXTS), np.ones((len(TEXTS), 1)))


def test_single_label_advice_is_in_the_words_of_each_way_in(ip, tiny_folder):
    out, messages = messages_of(pd.DataFrame({"text": TEXTS}).llm.classify, "text",
                                ["spam"], model=tiny_folder)
    assert messages == [SINGLE_LABEL.format("spam", words=RAW_WORDS["python"])]
    assert (out["proba_spam"] == 1).all()
    _, messages = messages_of(api.classify, TEXTS, ["spam"], model=tiny_folder)
    assert messages == [SINGLE_LABEL.format("spam", words=RAW_WORDS["python"])]
    res, messages = run_cell(ip, f"%%zeroshot --labels spam --model {tiny_folder}\nx")
    assert res.success, res.error_in_exec
    assert messages == [SINGLE_LABEL.format("spam", words=RAW_WORDS["magic"])]
    panel = make_panel(tiny_folder, labels=["spam"])
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    assert panel.warnings == [SINGLE_LABEL.format("spam", words=RAW_WORDS["panel"])]
    # The panel's word is its checkbox's description, the magic's its flag.
    assert f"'{panel.raw.description}'" == RAW_WORDS["panel"]
    assert ip.run_cell_magic("zeroshot", f"--labels spam --raw --model {tiny_folder}",
                             "x").raw


def test_single_label_does_not_warn_where_its_probability_means_something(ip, tiny_folder):
    cases = [
        lambda: multi().fit(None, [["spam"]]),
        lambda: zero(probas_sum_to_1=False).fit(None, ["spam"]),
        lambda: pd.DataFrame({"text": TEXTS}).llm.classify("text", ["spam"],
                                                           model=tiny_folder, raw=True),
        lambda: pd.DataFrame({"text": TEXTS}).llm.classify("text", ["spam"],
                                                           model=tiny_folder,
                                                           multi_label=True),
        lambda: ip.run_cell_magic("zeroshot", f"--multi-label --labels spam --model "
                                  f"{tiny_folder}", "x"),
    ]
    for case in cases:
        _, messages = messages_of(case)
        assert messages == []
    raw = zero(probas_sum_to_1=False).fit(None, ["spam"]).predict_proba(TEXTS)
    assert ((raw > 0) & (raw < 1)).all()


def product_categories():
    adjectives = ["red", "blue", "green", "fresh", "used", "small", "large", "new", "old",
                  "smart"]
    nouns = ["phone", "book", "shoe", "lamp", "chair", "table", "bag", "watch", "camera",
             "bike", "guitar", "kettle", "drill", "tent", "ball", "plate", "towel", "sofa",
             "scarf", "mug"]
    return [f"{a} {n}" for a in adjectives for n in nouns]


def test_two_hundred_labels(spy_score):
    labels = product_categories()
    assert len(set(labels)) == 200
    # The default prompt lists every label (~2.2k tokens): a model with a
    # bigger context, same weights.
    clf = zero(max_positions=4096, use_caching=False).fit(None, labels)
    texts = ["The kettle arrived broken.", "Nice red phone"]
    probas, messages = messages_of(clf.predict_proba, texts)
    assert messages == []
    assert probas.shape == (2, 200)
    assert clf.classes_.tolist() == sorted(labels)
    np.testing.assert_allclose(probas.sum(axis=1), 1.0, atol=1e-9)
    assert (probas > 0).all()
    assert len(spy_score) == 1  # one scoring pass for all 200 labels
    raw = np.exp(clf.label_logprobs(texts[:1]))
    for j in (0, 137):
        expected = math.exp(oracle_logprob(clf.model_, prompt_ids(clf, texts[0]),
                                           clf.label_ids_[j]))
        np.testing.assert_allclose(raw[0, j], expected, rtol=1e-4)
    out = pd.DataFrame({"text": texts}).llm.classify("text", estimator=clf)
    assert out.shape == (2, 201)
    np.testing.assert_allclose(out.drop(columns="label").to_numpy(), probas, rtol=1e-12)
