"""Calibration, label maps, few-shot example selection, trailing-space labels,
multi-label classification, and their paths through the accessor, the magics
and the display, all on the tiny model.

Probabilities are compared with numpy formulas written out here and with the
plain-forward-pass oracle of tests/tiny.py on the exact rendered prompts.
"""

import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import f1_score

from nbllm import DEFAULT_PROMPT_FEW_SHOT, DEFAULT_PROMPT_ZERO_SHOT
from nbllm.estimators.calibration import (
    CONTENT_FREE_TEXTS,
    calibrate,
    content_free_reference,
    normalise_logprobs,
)
from nbllm.notebook.display import ClassificationResult
from nbllm.estimators import FewShotClassifier, ZeroShotClassifier
from nbllm.estimators.multi_label import DEFAULT_PROMPT_MULTI_LABEL, MultiLabelZeroShotClassifier
from nbllm.engine.prompts import PromptRenderer, format_examples, label_token_ids, trailing_space
from tiny import SENTENCES, get_tiny_model, get_tiny_tokenizer, oracle_logprob

LABELS = ["positive", "negative", "neutral"]
CLASSES = ["negative", "neutral", "positive"]
TEXTS = ["I love it.", "The train was late again this morning.", "ok", "awful"]
FEW_X = ["good movie", "bad film", "okay show", "great", "awful", "fine"]
FEW_Y = ["pos", "neg", "neu", "pos", "neg", "neu"]

BATCH_WARNING = (
    "calibration='batch' corrects by the mean over the samples of one call; this "
    "call has only {n}, so the correction is noisy (with one sample every class "
    "gets the same probability)"
)

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")


def zero_shot(**kwargs):
    kwargs.setdefault("model", get_tiny_model())
    kwargs.setdefault("tokenizer", get_tiny_tokenizer())
    kwargs.setdefault("progress", False)
    return ZeroShotClassifier(**kwargs)


def few_shot(**kwargs):
    kwargs.setdefault("model", get_tiny_model())
    kwargs.setdefault("tokenizer", get_tiny_tokenizer())
    kwargs.setdefault("progress", False)
    kwargs.setdefault("random_state", 0)
    # These tests are about the mechanics of one fixed set of examples.
    kwargs.setdefault("example_selection", "stratified")
    return FewShotClassifier(**kwargs)


def multi_label(**kwargs):
    kwargs.setdefault("model", get_tiny_model())
    kwargs.setdefault("tokenizer", get_tiny_tokenizer())
    kwargs.setdefault("progress", False)
    return MultiLabelZeroShotClassifier(**kwargs)


def chat(message):
    """The tiny tokenizer's chat template around one user message."""
    return f"<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n"


def ids_of(text, special=False):
    return get_tiny_tokenizer()(text, add_special_tokens=special)["input_ids"]


def spaced_ids(label):
    """Token ids of " " + label after other text: how the default prompts,
    which end with "Label: ", score a label."""
    return ids_of("x " + label)[len(ids_of("x")):]


def np_softmax(a):
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_log_softmax(a):
    m = a.max(axis=1, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(axis=1, keepdims=True))


def oracle_row(prompt, label_ids, special):
    """Exact log P(label | prompt) for each label, by plain forward passes."""
    p_ids = ids_of(prompt, special)
    return [oracle_logprob(get_tiny_model(), p_ids, ids) for ids in label_ids]


def messages(record):
    return [str(w.message) for w in record]


# ================================================================ calibration

def random_logprobs(n, k=3, seed=0):
    # Unnormalised, like real label log-probabilities (rows sum to < 1).
    return np.random.default_rng(seed).normal(-6.0, 2.5, size=(n, k))


def test_calibrate_none_is_the_softmax():
    logprobs = random_logprobs(5)
    out = calibrate(logprobs, None)
    np.testing.assert_allclose(out, np.exp(logprobs) / np.exp(logprobs).sum(1)[:, None],
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_normalise_logprobs_is_the_log_softmax():
    logprobs = random_logprobs(4)
    np.testing.assert_allclose(normalise_logprobs(logprobs), np_log_softmax(logprobs),
                               rtol=1e-12, atol=1e-12)


def test_calibrate_batch_subtracts_the_column_mean():
    logprobs = random_logprobs(25, k=4, seed=1)
    log_p = np.log(np.exp(logprobs) / np.exp(logprobs).sum(axis=1, keepdims=True))
    expected = np_softmax(log_p - log_p.mean(axis=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 25 rows: no small-batch warning
        out = calibrate(logprobs, "batch")
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-14)
    # The calibrated column means of the log-probabilities are equalised.
    centred = np.log(out)
    np.testing.assert_allclose(centred.mean(0) - centred.mean(0)[0], 0.0, atol=1e-10)


def test_calibrate_batch_warns_below_20_rows():
    logprobs = random_logprobs(3)
    with pytest.warns(UserWarning) as record:
        out = calibrate(logprobs, "batch")
    assert messages(record) == [BATCH_WARNING.format(n=3)]
    log_p = np_log_softmax(logprobs)
    np.testing.assert_allclose(out, np_softmax(log_p - log_p.mean(0)), rtol=1e-10)
    with pytest.warns(UserWarning, match=f"^{re.escape(BATCH_WARNING.format(n=19))}$"):
        calibrate(random_logprobs(19), "batch")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        calibrate(random_logprobs(20), "batch")


def test_calibrate_batch_of_one_gives_every_class_the_same_probability():
    with pytest.warns(UserWarning, match=re.escape(BATCH_WARNING.format(n=1))):
        out = calibrate(random_logprobs(1, k=4), "batch")
    np.testing.assert_allclose(out, [[0.25] * 4], rtol=0, atol=1e-15)


def test_calibrate_content_free_divides_by_the_mean_content_free_distribution():
    logprobs = random_logprobs(6, seed=2)
    content_free = random_logprobs(3, seed=3)
    reference = content_free_reference(content_free)
    cf_probs = np.exp(content_free) / np.exp(content_free).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(reference, np.log(cf_probs.mean(axis=0)), rtol=1e-12)
    expected = np_softmax(np_log_softmax(logprobs) - np.log(cf_probs.mean(axis=0)))
    np.testing.assert_allclose(calibrate(logprobs, "content_free", reference), expected,
                               rtol=1e-10, atol=1e-14)
    # Equivalently: p(label) / mean_cf(label), renormalised.
    p = np.exp(logprobs) / np.exp(logprobs).sum(axis=1, keepdims=True)
    ratio = p / cf_probs.mean(axis=0)
    np.testing.assert_allclose(calibrate(logprobs, "content_free", reference),
                               ratio / ratio.sum(axis=1, keepdims=True), rtol=1e-10)


@pytest.mark.parametrize("mode", ["foo", "Batch", 0])
def test_calibrate_bad_mode(mode):
    msg = f"calibration must be None, 'content_free' or 'batch'; got {mode!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        calibrate(random_logprobs(2), mode)


def test_estimator_content_free_calibration_follows_the_formula():
    plain = zero_shot().fit(None, LABELS)
    clf = zero_shot(calibration="content_free").fit(None, LABELS)
    assert CONTENT_FREE_TEXTS == ("N/A", "", "[MASK]")
    content_free = clf.calibration_logprobs()
    assert content_free.shape == (3, 3)
    np.testing.assert_allclose(content_free, plain.label_logprobs(list(CONTENT_FREE_TEXTS)),
                               rtol=1e-12, atol=0)
    # "N/A" against the oracle on its exact prompt (the default is sent raw).
    assert clf.use_chat_template_ is False
    np.testing.assert_allclose(
        content_free[0], oracle_row(clf.get_prompt("N/A"), clf.label_ids_, True),
        rtol=1e-5, atol=0)
    # All the sentences: with the default prompt, calibration changes the
    # argmax of one of them ("The package arrived damaged and incomplete.").
    texts = SENTENCES + TEXTS
    logprobs = clf.label_logprobs(texts)  # unnormalised
    cf_mean = np.mean(np_softmax(content_free), axis=0)
    np.testing.assert_allclose(clf.calibration_reference_, np.log(cf_mean), rtol=1e-12)
    expected = np_softmax(np_log_softmax(logprobs) - np.log(cf_mean))
    probas = clf.predict_proba(texts)
    np.testing.assert_allclose(probas, expected, rtol=1e-9, atol=1e-12)
    # predict is the calibrated argmax, which here differs from the plain one.
    y_pred = clf.predict(texts)
    assert y_pred.tolist() == [CLASSES[j] for j in expected.argmax(axis=1)]
    assert y_pred.tolist() != plain.predict(texts).tolist()
    assert len(set(y_pred.tolist())) > 1


def test_estimator_without_calibration_has_no_reference():
    clf = zero_shot().fit(None, LABELS)
    assert clf.calibration_reference_ is None
    logprobs = clf.label_logprobs(TEXTS)
    np.testing.assert_allclose(clf.probas_from_logprobs(logprobs), np_softmax(logprobs),
                               rtol=1e-12)


def test_estimator_batch_calibration_follows_the_formula():
    clf = zero_shot(calibration="batch").fit(None, LABELS)
    assert clf.calibration_reference_ is None
    texts = SENTENCES[:20] + TEXTS  # 24 rows: no warning
    logprobs = clf.label_logprobs(texts)
    log_p = np_log_softmax(logprobs)
    expected = np_softmax(log_p - log_p.mean(axis=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probas = clf.predict_proba(texts)
        y_pred = clf.predict(texts)
    np.testing.assert_allclose(probas, expected, rtol=1e-9, atol=1e-12)
    assert y_pred.tolist() == [CLASSES[j] for j in expected.argmax(axis=1)]
    with pytest.warns(UserWarning) as record:
        clf.predict_proba(TEXTS)
    assert messages(record) == [BATCH_WARNING.format(n=4)]


def test_probas_from_logprobs_raw_is_exp():
    clf = zero_shot(probas_sum_to_1=False).fit(None, LABELS)
    logprobs = random_logprobs(3)
    np.testing.assert_array_equal(clf.probas_from_logprobs(logprobs), np.exp(logprobs))


@pytest.mark.parametrize("mode", ["content_free", "batch"])
def test_calibration_with_raw_probabilities_raises(mode):
    msg = (f"calibration={mode!r} gives normalised probabilities; it cannot be "
           "combined with probas_sum_to_1=False")
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        zero_shot(calibration=mode, probas_sum_to_1=False).fit(None, LABELS)


@pytest.mark.parametrize("mode", ["foo", "contentfree", True])
def test_calibration_param_check(mode):
    msg = f"calibration must be None, 'content_free' or 'batch'; got {mode!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        zero_shot(calibration=mode).fit(None, LABELS)


@pytest.mark.parametrize("selection", ["stratified", "similar"])
def test_few_shot_content_free_calibration(selection):
    clf = few_shot(calibration="content_free", example_selection=selection,
                   max_samples=3).fit(FEW_X, FEW_Y)
    content_free = clf.calibration_logprobs()
    logprobs = clf.label_logprobs(TEXTS)
    expected = np_softmax(np_log_softmax(logprobs)
                          - np.log(np_softmax(content_free).mean(axis=0)))
    np.testing.assert_allclose(clf.predict_proba(TEXTS), expected, rtol=1e-9)


# ================================================================= label_map

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


# ========================================================== example_selection

POOL_X = ["the cat sleeps on the sofa", "stocks fell on monday",
          "a dog barks at the mailman", "the bank raised interest rates",
          "birds sing in the morning", "the market rallied on friday"]
POOL_Y = ["animal", "finance", "animal", "finance", "animal", "finance"]
QUERIES = ["a dog barks at the bank", "the market rallied on friday again"]


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


# ============================================================== trailing space

RAW_PROMPT = "Labels: {labels}\nText: {text}\nCategory: "


def test_trailing_space_helpers():
    assert trailing_space("Category: ") == " "
    assert trailing_space("Category:  ") == "  "
    assert trailing_space("Category:") == ""
    assert trailing_space("Category:\n") == ""
    tok = get_tiny_tokenizer()
    assert label_token_ids(tok, "positive") == ids_of("positive")
    assert label_token_ids(tok, "positive", " ") == ids_of("x positive")[len(ids_of("x")):]
    assert label_token_ids(tok, "positive", " ") != ids_of("positive")
    renderer = PromptRenderer("Q: {text} A: ", {}, strip_end=1)
    assert renderer.render("hi") == "Q: hi A:"
    assert renderer.head() == "Q: "


def test_raw_prompt_with_trailing_space_scores_the_joint_string():
    clf = zero_shot(prompt=RAW_PROMPT, use_chat_template=False,
                    probas_sum_to_1=False).fit(None, LABELS)
    assert clf._label_prefix() == " "
    assert clf.get_prompt("I love it.") == (
        "Labels: ['negative', 'neutral', 'positive']\nText: I love it.\nCategory:")
    expected = []
    for text in TEXTS:
        prompt = clf.get_prompt(text)
        assert prompt + " " == RAW_PROMPT.format(
            labels="['negative', 'neutral', 'positive']", text=text)
        p_ids = ids_of(prompt, special=True)
        row = []
        for label, label_ids in zip(CLASSES, clf.label_ids_):
            joint = ids_of(prompt + " " + label, special=True)
            assert joint[:len(p_ids)] == p_ids
            assert label_ids == joint[len(p_ids):]
            assert label_ids != ids_of(label)
            row.append(math.exp(oracle_logprob(get_tiny_model(), p_ids, label_ids)))
        expected.append(row)
    np.testing.assert_allclose(clf.predict_proba(TEXTS), expected, rtol=1e-5, atol=0)


def test_chat_prompt_with_trailing_space_is_unaffected():
    # 'auto' sends a prompt ending with a space raw; True still wraps it.
    clf = zero_shot(prompt=RAW_PROMPT, probas_sum_to_1=False,
                    use_chat_template=True).fit(None, LABELS)
    assert clf.use_chat_template_ is True
    assert clf._label_prefix() == ""
    assert clf.label_ids_ == [ids_of(label) for label in CLASSES]
    message = RAW_PROMPT.format(labels="['negative', 'neutral', 'positive']", text="hi")
    assert clf.get_prompt("hi") == chat(message)
    expected = np.exp([oracle_row(clf.get_prompt(t), clf.label_ids_, False)
                       for t in TEXTS])
    np.testing.assert_allclose(clf.predict_proba(TEXTS), expected, rtol=1e-5, atol=0)


def test_prompt_without_trailing_space_keeps_plain_label_ids():
    clf = zero_shot(prompt=RAW_PROMPT.rstrip(), use_chat_template=False).fit(None, LABELS)
    assert clf._label_prefix() == ""
    assert clf.label_ids_ == [ids_of(label) for label in CLASSES]


# ================================================================ multi-label

ML_Y = [["sports", "politics"], [], ["science"]]
ML_CLASSES = ["politics", "science", "sports"]
ML_TEXTS = ["Our team won the match in the final seconds.",
            "The election results were announced on Tuesday.",
            "Scientists discovered a new species of frog.",
            "ok"]


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
    log_odds = clf.label_logprobs(ML_TEXTS)
    np.testing.assert_allclose(clf.probas_from_logprobs(log_odds), probas, rtol=1e-12)


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
    msg = f"threshold must be between 0 and 1, got {threshold!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        multi_label(threshold=threshold).fit(None, ML_Y)


@pytest.mark.parametrize("y, msg", [
    (None, "y cannot be None, as it is used to infer the existing classes"),
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


# =================================================================== accessor

ACC_TEXTS = ["The train was late again this morning.", "I love it.",
             "What a wonderful surprise, thank you so much!"]


@pytest.fixture
def df():
    return pd.DataFrame({"text": ACC_TEXTS, "stars": [1, 5, 4]},
                        index=pd.Index(["c", "a", "b"], name="id"))


def test_accessor_multi_label(df, tiny_folder):
    out = df.llm.classify("text", ["sports", "politics"], multi_label=True,
                          model=tiny_folder)
    clf = MultiLabelZeroShotClassifier(tiny_folder, use_caching=False,
                                       progress=False).fit(None, [["sports"], ["politics"]])
    assert list(out.columns) == ["label", "proba_politics", "proba_sports"]
    assert out.index.equals(df.index)
    np.testing.assert_allclose(out[["proba_politics", "proba_sports"]].to_numpy(),
                               clf.predict_proba(ACC_TEXTS), rtol=0, atol=1e-9)
    assert out["label"].tolist() == clf.predict_labels(ACC_TEXTS)
    assert all(isinstance(v, list) for v in out["label"])


def test_accessor_batch_calibration(df, tiny_folder):
    with pytest.warns(UserWarning) as record:
        out = df.llm.classify("text", ["positive", "negative"], model=tiny_folder,
                              calibration="batch")
    assert messages(record) == [BATCH_WARNING.format(n=3)]
    logprobs = ZeroShotClassifier(tiny_folder, use_caching=False, progress=False).fit(
        None, ["positive", "negative"]).label_logprobs(ACC_TEXTS)
    log_p = np_log_softmax(logprobs)
    expected = np_softmax(log_p - log_p.mean(axis=0))
    np.testing.assert_allclose(out[["proba_negative", "proba_positive"]].to_numpy(),
                               expected, rtol=1e-9, atol=1e-12)
    assert out["label"].tolist() == [["negative", "positive"][j]
                                     for j in expected.argmax(axis=1)]


def test_accessor_label_map(df, tiny_folder):
    out = df.llm.classify("text", ["p", "n"], model=tiny_folder,
                          label_map={"p": "positive", "n": "negative"})
    direct = ZeroShotClassifier(tiny_folder, use_caching=False, progress=False).fit(
        None, ["positive", "negative"])
    assert list(out.columns) == ["label", "proba_n", "proba_p"]
    np.testing.assert_allclose(out[["proba_n", "proba_p"]].to_numpy(),
                               direct.predict_proba(ACC_TEXTS), rtol=0, atol=1e-9)
    assert out["label"].tolist() == [{"negative": "n", "positive": "p"}[w]
                                     for w in direct.predict(ACC_TEXTS)]


def test_accessor_multi_label_with_examples_raises(df, tiny_folder):
    with pytest.raises(ValueError, match=re.escape(
            "multi_label=True is zero-shot; it takes no examples")):
        df.llm.classify("text", ["a", "b"], multi_label=True, model=tiny_folder,
                        examples=[("x", "a"), ("y", "b")])


def test_accessor_multi_label_with_calibration_or_raw_raises(df, tiny_folder):
    msg = ("multi_label=True gives each label its own yes/no probability; raw and "
           "calibration do not apply")
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        df.llm.classify("text", ["a", "b"], multi_label=True, model=tiny_folder,
                        calibration="batch")
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        df.llm.classify("text", ["a", "b"], multi_label=True, model=tiny_folder, raw=True)


# ===================================================================== magics

CELL = "\n".join(ML_TEXTS[:3])


def test_magic_zeroshot_multi_label(ip, tiny_folder):
    result = ip.run_cell_magic(
        "zeroshot", f"--labels sports,politics,science --model {tiny_folder} --multi-label",
        CELL)
    clf = MultiLabelZeroShotClassifier(tiny_folder, use_caching=False,
                                       progress=False).fit(None, [[c] for c in ML_CLASSES])
    assert isinstance(result, ClassificationResult)
    assert isinstance(result.estimator, MultiLabelZeroShotClassifier)
    assert result.multi_label_threshold == 0.5
    assert result.classes == ML_CLASSES
    np.testing.assert_allclose(result.probas, clf.predict_proba(ML_TEXTS[:3]),
                               rtol=0, atol=1e-9)
    assert result.labels == clf.predict_labels(ML_TEXTS[:3])
    assert "multi-label (each label scored alone; threshold 0.5)" in result._repr_html_()
    lower = ip.run_cell_magic(
        "zeroshot", f"--labels sports,politics,science --model {tiny_folder} "
                    "--multi-label --threshold 0.3", CELL)
    assert lower.multi_label_threshold == 0.3
    assert lower.estimator.threshold == 0.3
    assert lower.labels == [[c for c, p in zip(ML_CLASSES, row) if p >= 0.3]
                            for row in result.probas]


def test_magic_multi_label_with_raw_is_a_usage_error(ip, tiny_folder):
    msg = ("multi_label=True gives each label its own yes/no probability; raw and "
           "calibration do not apply")
    with pytest.raises(UsageError, match=f"^{re.escape(msg)}$"):
        ip.run_cell_magic("zeroshot", f"--labels a,b --model {tiny_folder} --multi-label "
                                      "--raw", CELL)


def test_magic_calibration_content_free(ip, tiny_folder):
    result = ip.run_cell_magic(
        "zeroshot", f"--labels positive,negative --model {tiny_folder} "
                    "--calibration content_free", CELL)
    clf = ZeroShotClassifier(tiny_folder, use_caching=False, progress=False,
                             calibration="content_free").fit(None, ["positive", "negative"])
    assert result.estimator.calibration == "content_free"
    np.testing.assert_allclose(result.probas, clf.predict_proba(ML_TEXTS[:3]),
                               rtol=0, atol=1e-9)
    assert result.labels == list(clf.predict(ML_TEXTS[:3]))
    plain = ZeroShotClassifier(tiny_folder, use_caching=False, progress=False).fit(
        None, ["positive", "negative"])
    assert not np.allclose(result.probas, plain.predict_proba(ML_TEXTS[:3]))


def test_magic_label_map(ip, tiny_folder):
    ip.user_ns["lmap"] = {"p": "positive", "n": "negative"}
    result = ip.run_cell_magic(
        "zeroshot", f"--labels p,n --model {tiny_folder} --label-map lmap", CELL)
    direct = ZeroShotClassifier(tiny_folder, use_caching=False, progress=False).fit(
        None, ["positive", "negative"])
    assert result.classes == ["n", "p"]
    assert result.estimator.label_map == {"p": "positive", "n": "negative"}
    np.testing.assert_allclose(result.probas, direct.predict_proba(ML_TEXTS[:3]),
                               rtol=0, atol=1e-9)
    assert result.labels == [{"negative": "n", "positive": "p"}[w]
                             for w in direct.predict(ML_TEXTS[:3])]


MISSING_MAP = "--label-map: no variable named 'nope'"


def test_magic_label_map_errors(ip, tiny_folder):
    with pytest.raises(UsageError, match=f"^{re.escape(MISSING_MAP)}$"):
        ip.run_cell_magic("zeroshot", f"--labels p,n --model {tiny_folder} "
                                      "--label-map nope", CELL)
    ip.user_ns["not_a_map"] = ["positive"]
    msg = ("label_map must be a dict from class to the non-empty word the model scores, "
           "e.g. {'pos': 'positive'}; got ['positive']")
    with pytest.raises(UsageError, match=f"^{re.escape(msg)}$"):
        ip.run_cell_magic("zeroshot", f"--labels p,n --model {tiny_folder} "
                                      "--label-map not_a_map", CELL)


def test_magic_fewshot_selection_similar(ip, tiny_folder):
    ip.user_ns["pool"] = list(zip(POOL_X, POOL_Y))
    result = ip.run_cell_magic(
        "fewshot", f"--examples pool --model {tiny_folder} --selection similar -k 2",
        "\n".join(QUERIES))
    clf = FewShotClassifier(tiny_folder, use_caching=False, progress=False, max_samples=2,
                            random_state=0, example_selection="similar").fit(POOL_X, POOL_Y)
    assert result.estimator.example_selection == "similar"
    assert result.estimator.examples_ is None
    assert result.estimator.examples_for(QUERIES) == clf.examples_for(QUERIES)
    np.testing.assert_allclose(result.probas, clf.predict_proba(QUERIES), rtol=0, atol=1e-9)
    assert result.labels == list(clf.predict(QUERIES))
    default = ip.run_cell_magic("fewshot", f"--examples pool --model {tiny_folder} -k 2",
                                "\n".join(QUERIES))
    assert default.estimator.example_selection == "similar"


def test_magic_fewshot_calibration_content_free(ip, tiny_folder):
    result = ip.run_cell_magic("fewshot", f"--model {tiny_folder} --calibration content_free",
                               "positive: good\nnegative: bad\n---\nI love it.")
    assert result.estimator.calibration_reference_ is not None


BAD_CALIBRATION = ("zeroshot: argument --calibration: invalid choice: 'foo' "
                   "(choose from 'content_free', 'batch')")


def test_magic_bad_calibration_is_a_one_line_usage_error(ip, tiny_folder, capsys):
    with pytest.raises(UsageError, match=f"^{re.escape(BAD_CALIBRATION)}$"):
        ip.run_cell_magic("zeroshot", f"--labels a,b --model {tiny_folder} "
                                      "--calibration foo", CELL)
    res = ip.run_cell(f"%%zeroshot --labels a,b --model {tiny_folder} --calibration foo\n"
                      f"{CELL}")
    assert not res.success
    assert isinstance(res.error_in_exec, UsageError)
    assert str(res.error_in_exec) == BAD_CALIBRATION
    assert capsys.readouterr().err == f"UsageError: {BAD_CALIBRATION}\n"


def test_magic_bad_selection_is_a_usage_error(ip):
    msg = ("fewshot: argument --selection: invalid choice: 'foo' (choose from "
           "'stratified', 'random', 'similar')")
    with pytest.raises(UsageError, match=f"^{re.escape(msg)}$"):
        ip.run_cell_magic("fewshot", "--selection foo", "a: b\n---\nx")


# ==================================================================== display

def multi_result(**kwargs):
    args = dict(
        texts=["<b>bold</b> & more", "plain text"],
        classes=["<i>", "b&c", "plain"],
        probas=np.array([[0.9, 0.6, 0.1], [0.2, 0.1, 0.4]]),
        label_mass=np.array([1.0, 1.0]),
        multi_label_threshold=0.5,
    )
    args.update(kwargs)
    return ClassificationResult(**args)


def body_rows(html):
    tbody = re.search(r"<tbody>(.*?)</tbody>", html).group(1)
    return re.findall(r"<tr[^>]*>(.*?)</tr>", tbody)


def test_multi_label_result_labels_and_frame():
    result = multi_result()
    assert result.labels == [["<i>", "b&c"], []]
    assert result.low.tolist() == [False, False]
    frame = result.frame
    assert list(frame.columns) == ["text", "label", "proba_<i>", "proba_b&c",
                                   "proba_plain"]
    assert frame["label"].tolist() == [["<i>", "b&c"], []]
    with_nan = multi_result(probas=np.array([[0.9, 0.6, 0.1], [np.nan] * 3]))
    assert with_nan.labels == [["<i>", "b&c"], None]


def test_multi_label_html_escapes_and_bolds_every_chosen_label():
    html = multi_result()._repr_html_()
    assert "<b>" not in html and "<i>" not in html
    rows = body_rows(html)
    assert rows[0] == (
        '<td>0</td><td title="&lt;b&gt;bold&lt;/b&gt; &amp; more">'
        "&lt;b&gt;bold&lt;/b&gt; &amp; more</td>"
        '<td class="nbllm-pred">&lt;i&gt;, b&amp;c</td>'
        '<td class="nbllm-pred">0.900<span class="nbllm-bar" style="width:54.0px"></span></td>'
        '<td class="nbllm-pred">0.600<span class="nbllm-bar" style="width:36.0px"></span></td>'
        '<td>0.100<span class="nbllm-bar" style="width:6.0px"></span></td>'
    )
    assert rows[1] == (
        '<td>1</td><td title="plain text">plain text</td><td class="nbllm-pred"></td>'
        '<td>0.200<span class="nbllm-bar" style="width:12.0px"></span></td>'
        '<td>0.100<span class="nbllm-bar" style="width:6.0px"></span></td>'
        '<td>0.400<span class="nbllm-bar" style="width:24.0px"></span></td>'
    )
    header = re.search(r"<thead>(.*?)</thead>", html).group(1)
    assert re.findall(r"<th>(.*?)</th>", header) == [
        "#", "text", "predicted", "&lt;i&gt;", "b&amp;c", "plain"]
    assert ("<caption>2 text(s), 3 labels, multi-label (each label scored alone; "
            "threshold 0.5)</caption>") in html


def test_single_label_caption_does_not_mention_multi_label():
    result = multi_result(multi_label_threshold=None)
    assert result.labels == ["<i>", "plain"]
    assert "multi-label" not in result._repr_html_()


def test_multi_label_text_repr_joins_labels():
    assert repr(multi_result()) == (
        "ClassificationResult: 2 text(s), labels ['<i>', 'b&c', 'plain']\n"
        "   0  <i>, b&c  [0.900 0.600 0.100]  <b>bold</b> & more\n"
        "   1  -         [0.200 0.100 0.400]  plain text"
    )
