"""label_map: classes keep their codes, the model scores the words.
"""

import re
import warnings

import numpy as np
import pytest

from nbllm import DEFAULT_PROMPT_FEW_SHOT, DEFAULT_PROMPT_ZERO_SHOT
from nbllm.engine.scoring.prompts import format_examples

from quality_helpers import (
    FEW_X,
    FEW_Y,
    TEXTS,
    few_shot,
    messages,
    oracle_row,
    spaced_ids,
    zero_shot,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")


WORDS = {"neg": "negative", "pos": "positive"}


def test_label_map_keeps_codes_and_scores_the_words():
    clf = zero_shot(label_map=WORDS).fit(None, ["pos", "neg", "pos"])
    direct = zero_shot().fit(None, ["positive", "negative"])
    assert clf.classes_.tolist() == ["neg", "pos"]
    assert clf.label_ids_ == [spaced_ids("negative"), spaced_ids("positive")]
    assert clf.label_ids_ == direct.label_ids_
    message = DEFAULT_PROMPT_ZERO_SHOT.format(labels="['negative', 'positive']",
                                              text="hi")
    # The default prompt is sent raw; its final space is scored with the labels.
    assert clf.get_prompt("hi") + " " == message
    assert clf.get_prompt("hi") == direct.get_prompt("hi")
    np.testing.assert_allclose(clf.predict_proba(TEXTS), direct.predict_proba(TEXTS),
                               rtol=1e-12, atol=0)
    assert clf.predict(TEXTS).tolist() == [
        {"negative": "neg", "positive": "pos"}[w] for w in direct.predict(TEXTS)]


def test_label_map_words_follow_the_class_order():
    # Codes sort one way, words the other: prompt, ids and columns follow classes_.
    clf = zero_shot(label_map={"a": "positive", "b": "negative"},
                    probas_sum_to_1=False, use_chat_template=False).fit(None, ["b", "a"])
    assert clf.classes_.tolist() == ["a", "b"]
    assert clf.label_ids_ == [spaced_ids("positive"), spaced_ids("negative")]
    assert clf.get_prompt("x") == "Labels: ['positive', 'negative']\n\nText: x\nLabel:"
    expected = np.exp([oracle_row(clf.get_prompt(t), clf.label_ids_, True) for t in TEXTS])
    np.testing.assert_allclose(clf.predict_proba(TEXTS), expected, rtol=1e-5, atol=0)


def test_label_map_partial_leaves_other_classes_as_they_are():
    clf = zero_shot(label_map={"pos": "positive"}).fit(None, ["pos", "neutral"])
    assert clf.classes_.tolist() == ["neutral", "pos"]
    assert clf.label_ids_ == [spaced_ids("neutral"), spaced_ids("positive")]
    assert "['neutral', 'positive']" in clf.get_prompt("x")


def test_label_map_with_integer_codes():
    label_map = {0: "negative", 1: "positive"}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        clf = zero_shot(label_map=label_map).fit(None, [0, 1, 1])
    assert messages(record) == []  # no "label-encoded targets" warning
    direct = zero_shot().fit(None, ["negative", "positive"])
    assert clf.classes_.tolist() == [0, 1]
    assert clf.label_ids_ == direct.label_ids_
    assert clf.get_prompt("hi") == direct.get_prompt("hi")
    np.testing.assert_allclose(clf.predict_proba(TEXTS), direct.predict_proba(TEXTS),
                               rtol=1e-12, atol=0)
    y_pred = clf.predict(TEXTS)
    assert y_pred.tolist() == [{"negative": 0, "positive": 1}[w]
                               for w in direct.predict(TEXTS)]
    assert all(isinstance(v, (int, np.integer)) for v in y_pred)


def test_label_map_two_codes_on_one_word_raise():
    msg = "label_map maps several classes to the same word: 'positive'"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        zero_shot(label_map={"a": "positive", "b": "positive"}).fit(None, ["a", "b"])
    # A code mapped onto another class's own name collides too.
    msg = "label_map maps several classes to the same word: 'b'"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        zero_shot(label_map={"a": "b"}).fit(None, ["a", "b"])


@pytest.mark.parametrize("label_map", [
    ["positive"], "positive", {"a": ""}, {"a": "  "}, {"a": 1}, {"a": None},
])
def test_bad_label_map_raises(label_map):
    msg = ("label_map must be a dict from class to the non-empty word the model "
           f"scores, e.g. {{'pos': 'positive'}}; got {label_map!r}")
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        zero_shot(label_map=label_map).fit(None, ["a", "b"])


def test_label_map_words_in_few_shot_examples():
    label_map = {"pos": "positive", "neg": "negative", "neu": "neutral"}
    clf = few_shot(label_map=label_map, max_samples=3,
                   use_chat_template=False).fit(FEW_X, FEW_Y)
    assert clf.classes_.tolist() == ["neg", "neu", "pos"]
    assert sorted(y for _, y in clf.examples_) == ["neg", "neu", "pos"]  # codes kept
    words = [(t, label_map[y]) for t, y in clf.examples_]
    assert clf.get_prompt("new") + " " == DEFAULT_PROMPT_FEW_SHOT.format(
        labels="['negative', 'neutral', 'positive']", examples=format_examples(words),
        text="new")
    for text, word in words:
        assert f"Text: {text}\nLabel: {word}\n" in clf.get_prompt("new") + "\n"
    assert "Label: pos\n" not in clf.get_prompt("new")
