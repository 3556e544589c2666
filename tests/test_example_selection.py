"""Few-shot example selection: similar, stratified, random; placement as turns.
"""

import re

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from nbllm import DEFAULT_PROMPT_FEW_SHOT
from nbllm.engine.prompts import format_examples

from quality_helpers import (
    FEW_X,
    FEW_Y,
    POOL_X,
    POOL_Y,
    QUERIES,
    few_shot,
    oracle_row,
    spaced_ids,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")




@pytest.mark.parametrize("seed", range(4))
def test_stratified_covers_each_label(seed):
    X = FEW_X + ["so so", "terrific", "horrible", "meh"]
    y = FEW_Y + ["neu", "pos", "neg", "neu"]
    clf = few_shot(example_selection="stratified", max_samples=4,
                   random_state=seed).fit(X, y)
    labels = [label for _, label in clf.examples_]
    assert len(clf.examples_) == 4
    assert set(labels) == {"neg", "neu", "pos"}
    assert set(clf.examples_) <= set(zip(X, y))
    assert len(set(clf.examples_)) == 4


def test_random_selection_is_deterministic_and_drawn_from_the_data():
    X = FEW_X + ["so so", "terrific"]
    y = FEW_Y + ["neu", "pos"]
    a = few_shot(example_selection="random", max_samples=3, random_state=5).fit(X, y)
    b = few_shot(example_selection="random", max_samples=3, random_state=5).fit(X, y)
    assert a.examples_ == b.examples_
    chosen = np.random.RandomState(5).choice(len(X), size=3, replace=False)
    assert a.examples_ == [(X[i], y[i]) for i in chosen]
    assert a.examples_for(["x", "y"]) == [a.examples_, a.examples_]
    everything = few_shot(example_selection="random", max_samples=50).fit(X, y)
    assert sorted(everything.examples_) == sorted(zip(X, y))


def test_similar_selection_picks_nearest_texts_per_query():
    clf = few_shot(example_selection="similar", max_samples=2).fit(POOL_X, POOL_Y)
    assert clf.examples_ is None
    assert clf.examples_for(QUERIES) == [
        # One per class; the near-copy of the query sits last.
        [("the bank raised interest rates", "finance"),
         ("a dog barks at the mailman", "animal")],
        [("the cat sleeps on the sofa", "animal"),
         ("the market rallied on friday", "finance")],
    ]


def test_similar_selection_takes_classes_in_turn_and_ends_with_the_nearest():
    clf = few_shot(example_selection="similar", max_samples=4).fit(POOL_X, POOL_Y)
    vectorizer = TfidfVectorizer(sublinear_tf=True).fit(POOL_X)
    pool = vectorizer.transform(POOL_X)
    for query, examples in zip(QUERIES, clf.examples_for(QUERIES)):
        sims = (vectorizer.transform([query]) @ pool.T).toarray()[0]
        index = [POOL_X.index(t) for t, _ in examples]
        assert [lab for _, lab in examples] == [POOL_Y[i] for i in index]
        assert sorted(lab for _, lab in examples) == ["animal"] * 2 + ["finance"] * 2
        for label in ("animal", "finance"):
            members = [i for i in range(6) if POOL_Y[i] == label]
            best_two = sorted(members, key=lambda i: -sims[i])[:2]
            assert sorted(i for i in index if POOL_Y[i] == label) == sorted(best_two)
        assert list(sims[index]) == sorted(sims[index])  # most similar last
        assert index[-1] == int(np.argmax(sims))
    assert clf.examples_for(QUERIES)[0] == [
        ("the market rallied on friday", "finance"),
        ("the cat sleeps on the sofa", "animal"),
        ("the bank raised interest rates", "finance"),
        ("a dog barks at the mailman", "animal"),
    ]


def test_similar_selection_prompts_and_probabilities_per_text():
    clf = few_shot(example_selection="similar", max_samples=2,
                   use_caching=False).fit(POOL_X, POOL_Y)
    raw = few_shot(example_selection="similar", max_samples=2, use_caching=False,
                   probas_sum_to_1=False).fit(POOL_X, POOL_Y)
    texts = QUERIES + ["birds and stocks"]
    per_text = clf.examples_for(texts)
    assert per_text[0] != per_text[1]
    # The default prompt is sent raw, its final space scored with the labels.
    assert clf.use_chat_template_ is False
    label_ids = [spaced_ids("animal"), spaced_ids("finance")]
    assert clf.label_ids_ == label_ids
    expected = []
    for text, examples in zip(texts, per_text):
        message = DEFAULT_PROMPT_FEW_SHOT.format(
            labels="['animal', 'finance']", examples=format_examples(examples), text=text)
        assert message.endswith("Label: ")
        assert clf.get_prompt(text) == message[:-1]
        expected.append(np.exp(oracle_row(message[:-1], label_ids, True)))
    expected = np.array(expected)
    np.testing.assert_allclose(raw.predict_proba(texts), expected, rtol=1e-5, atol=0)
    np.testing.assert_allclose(clf.predict_proba(texts),
                               expected / expected.sum(axis=1, keepdims=True),
                               rtol=1e-5, atol=0)
    one_by_one = np.vstack([clf.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(clf.predict_proba(texts), one_by_one, rtol=1e-5, atol=0)


def test_similar_selection_equals_fixed_examples_with_the_same_prompt():
    clf = few_shot(example_selection="similar", max_samples=2).fit(POOL_X, POOL_Y)
    for text, examples in zip(QUERIES, clf.examples_for(QUERIES)):
        fixed = few_shot(max_samples=2).fit(POOL_X, POOL_Y)
        fixed.examples_ = list(examples)  # the same examples, in the same order
        assert fixed.get_prompt(text) == clf.get_prompt(text)
        np.testing.assert_allclose(clf.predict_proba([text]), fixed.predict_proba([text]),
                                   rtol=1e-5, atol=0)


@pytest.mark.parametrize("selection", ["nearest", None, "Similar"])
def test_bad_example_selection(selection):
    msg = ("example_selection must be 'stratified', 'random' or 'similar'; "
           f"got {selection!r}")
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        few_shot(example_selection=selection).fit(FEW_X, FEW_Y)
