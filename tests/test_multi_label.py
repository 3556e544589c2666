"""Multi-label classification: one yes/no question per label.
"""

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import f1_score

from nbllm.estimators.multi_label import DEFAULT_PROMPT_MULTI_LABEL, MultiLabelZeroShotClassifier

from quality_helpers import (
    ML_CLASSES,
    ML_TEXTS,
    chat,
    ids_of,
    multi_label,
    oracle_row,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")


ML_Y = [["sports", "politics"], [], ["science"]]


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def multi_label_oracle(clf, texts, special=False):
    out = np.empty((len(texts), len(clf.classes_)))
    for i, text in enumerate(texts):
        for j, label in enumerate(clf.classes_):
            lp = oracle_row(clf.get_prompt(text, label), clf.label_ids_, special)
            out[i, j] = sigmoid(np.logaddexp(lp[0], lp[1]) - np.logaddexp(lp[2], lp[3]))
    return out


def test_multi_label_fit_on_label_lists_and_flat_lists():
    clf = multi_label().fit(None, ML_Y)
    assert clf.classes_.tolist() == ML_CLASSES
    assert clf.label_ids_ == [ids_of(a) for a in ("Yes", "yes", "No", "no")]
    flat = multi_label().fit(None, ["sports", "politics", "sports"])
    assert flat.classes_.tolist() == ["politics", "sports"]
    tuples = multi_label().fit(None, (("b", "a"), ("c",)))
    assert tuples.classes_.tolist() == ["a", "b", "c"]


def test_multi_label_prompts():
    clf = multi_label().fit(None, ML_Y)
    for label in ML_CLASSES:
        assert clf.get_prompt("hi", label) == chat(
            DEFAULT_PROMPT_MULTI_LABEL.format(label=label, text="hi"))
    assert clf.get_prompt("hi") == clf.get_prompt("hi", "politics")
    raw = multi_label(use_chat_template=False,
                      prompt="Labels: {labels}\nIs it {label}? {text}").fit(None, ML_Y)
    assert raw.get_prompt("hi", "science") == (
        "Labels: ['politics', 'science', 'sports']\nIs it science? hi")


def test_multi_label_predict_proba_equals_the_oracle():
    clf = multi_label().fit(None, ML_Y)
    probas = clf.predict_proba(ML_TEXTS)
    assert probas.shape == (4, 3)
    np.testing.assert_allclose(probas, multi_label_oracle(clf, ML_TEXTS), rtol=1e-5,
                               atol=1e-9)
    log_odds = clf.label_log_odds(ML_TEXTS)
    np.testing.assert_allclose(clf.probas_from_log_odds(log_odds), probas, rtol=1e-12)
    np.testing.assert_array_equal(clf.label_scores(ML_TEXTS), log_odds)
    np.testing.assert_array_equal(clf.probas_from_scores(log_odds), clf.probas_from_log_odds(log_odds))


@pytest.mark.parametrize("name, args, message", [
    ("label_logprobs", "texts", "label_logprobs is deprecated and will be removed: it "
     "returns log-odds, not log-probabilities; use label_log_odds"),
    ("probas_from_logprobs", "log_odds", "probas_from_logprobs is deprecated and will be "
     "removed: it takes log-odds, not log-probabilities; use probas_from_log_odds"),
])
def test_the_former_log_probability_names_are_deprecated_aliases(name, args, message):
    clf = multi_label().fit(None, ML_Y)
    log_odds = clf.label_log_odds(ML_TEXTS)
    new = {"label_logprobs": clf.label_log_odds,
           "probas_from_logprobs": clf.probas_from_log_odds}[name]
    arg = ML_TEXTS if args == "texts" else log_odds
    with pytest.warns(FutureWarning, match=re.escape(
            f"MultiLabelZeroShotClassifier.{message}")) as record:
        old = getattr(clf, name)(arg)
    assert [w.filename for w in record] == [__file__]  # the caller's line
    np.testing.assert_array_equal(old, new(arg))


def test_multi_label_raw_prompt_with_trailing_space():
    clf = multi_label(use_chat_template=False,
                      prompt="Is the text about {label}?\n{text}\nAnswer: ").fit(None, ML_Y)
    assert clf.get_prompt("hi", "science") == "Is the text about science?\nhi\nAnswer:"
    anchor = ids_of("x")
    assert clf.label_ids_ == [ids_of("x " + a)[len(anchor):]
                              for a in ("Yes", "yes", "No", "no")]
    np.testing.assert_allclose(clf.predict_proba(ML_TEXTS[:2]),
                               multi_label_oracle(clf, ML_TEXTS[:2], special=True),
                               rtol=1e-5, atol=1e-9)


def test_multi_label_predict_threshold_labels_and_score():
    probas = multi_label().fit(None, ML_Y).predict_proba(ML_TEXTS)
    threshold = float(np.median(probas))
    clf = multi_label(threshold=threshold).fit(None, ML_Y)
    indicator = clf.predict(ML_TEXTS)
    assert indicator.dtype.kind == "i"
    np.testing.assert_array_equal(indicator, (probas >= threshold).astype(int))
    assert 0 < indicator.sum() < indicator.size
    labels = clf.predict_labels(ML_TEXTS)
    assert labels == [[c for c, on in zip(ML_CLASSES, row) if on] for row in indicator]
    assert all(isinstance(c, str) for row in labels for c in row)
    assert clf.score(ML_TEXTS, labels) == 1.0
    assert clf.score(ML_TEXTS, indicator) == 1.0
    assert clf.score(ML_TEXTS, pd.Series(labels)) == 1.0
    flipped = indicator.copy()
    flipped[0] = 1 - flipped[0]
    assert clf.score(ML_TEXTS, flipped) == 0.75
    wrong = [list(row) for row in labels]
    wrong[1] = [] if wrong[1] else ["science"]
    assert clf.score(ML_TEXTS, wrong) == 0.75
    assert f1_score(indicator, clf.predict(ML_TEXTS), average="micro") == 1.0
    assert f1_score(flipped, clf.predict(ML_TEXTS), average="micro") < 1.0
    low = multi_label(threshold=0.0).fit(None, ML_Y)
    assert low.predict(ML_TEXTS).tolist() == [[1, 1, 1]] * 4
    high = multi_label(threshold=1.0).fit(None, ML_Y)
    assert high.predict_labels(ML_TEXTS) == [[], [], [], []]


def test_multi_label_score_on_a_nested_list_indicator_matrix():
    probas = multi_label().fit(None, ML_Y).predict_proba(ML_TEXTS)
    clf = multi_label(threshold=float(np.median(probas))).fit(None, ML_Y)
    indicator = clf.predict(ML_TEXTS)
    assert clf.score(ML_TEXTS, indicator.tolist()) == 1.0


@pytest.mark.parametrize("threshold", [1.5, -0.1, "0.5", None])
def test_multi_label_threshold_out_of_range(threshold):
    msg = f"threshold must be between 0 and 1; got {threshold!r}"  # the table's rule
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        multi_label(threshold=threshold).fit(None, ML_Y)


@pytest.mark.parametrize("y, msg", [
    (None, "MultiLabelZeroShotClassifier requires y to be passed, but the target y "
           "is None; y cannot be None, as it is used to infer the existing classes"),
    ([], "y must contain at least one label; got an empty list"),
    ([[], []], "y holds no labels; give at least one label"),
])
def test_multi_label_bad_y(y, msg):
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        multi_label().fit(None, y)


def test_multi_label_get_params_and_clone():
    clf = multi_label(threshold=0.3, label_map={"sports": "sport"})
    assert set(clf.get_params()) == {
        "model_name", "model", "tokenizer", "prompt", "threshold", "device", "dtype",
        "use_caching", "use_chat_template", "batch_size", "progress", "cache_dir",
        "label_map", "truncation", "trust_remote_code",
    }
    fitted = clf.fit(None, ML_Y)
    twin = clone(fitted)
    assert type(twin) is MultiLabelZeroShotClassifier
    assert twin.model is clf.model and twin.tokenizer is clf.tokenizer
    assert twin.get_params()["threshold"] == 0.3
    assert twin.get_params()["label_map"] == {"sports": "sport"}
    assert not hasattr(twin, "classes_")
    twin.fit(None, ML_Y)
    np.testing.assert_array_equal(twin.predict_proba(ML_TEXTS[:2]),
                                  fitted.predict_proba(ML_TEXTS[:2]))
    assert "MultiLabelZeroShotClassifier(" in repr(clf)


def test_multi_label_label_map_shows_the_words():
    clf = multi_label(label_map={"sci": "science"}).fit(None, [["sci"], ["sports"]])
    assert clf.classes_.tolist() == ["sci", "sports"]
    assert clf.get_prompt("hi", "sci") == chat(
        DEFAULT_PROMPT_MULTI_LABEL.format(label="science", text="hi"))
    plain = multi_label().fit(None, [["science"], ["sports"]])
    np.testing.assert_allclose(clf.predict_proba(ML_TEXTS), plain.predict_proba(ML_TEXTS),
                               rtol=1e-12)


def test_multi_label_label_map_with_integer_codes():
    clf = multi_label(label_map={0: "sports", 1: "science"}).fit(None, [[0], [1, 0]])
    assert clf.get_prompt("hi", clf.classes_[0]) == chat(
        DEFAULT_PROMPT_MULTI_LABEL.format(label="sports", text="hi"))
