"""ZeroShotClassifier and FewShotClassifier on the tiny model."""

import math
import re
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

import nbllm
from nbllm import DEFAULT_PROMPT_FEW_SHOT, DEFAULT_PROMPT_ZERO_SHOT
from nbllm.engine.loading import models
from nbllm.engine.scoring import text_scorer
from nbllm.estimators import base as estimators
from nbllm.engine.scoring import scorer as scoring
from nbllm.engine.scoring.result_cache import result_cache
from nbllm.estimators import FewShotClassifier, ZeroShotClassifier
from nbllm.exceptions import LowProbabilityError
from nbllm.engine.scoring.prompts import format_examples
from tiny import (
    SENTENCES,
    get_tiny_model,
    get_tiny_tokenizer,
    save_tiny,
    oracle_logprob,
)

from quality_helpers import few_shot, zero_shot

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LABELS = ["positive", "negative", "neutral", "positive"]
CLASSES = ["negative", "neutral", "positive"]
LABELS_TEXT = "['negative', 'neutral', 'positive']"
TEXTS = [
    "I love it.",
    "The package arrived damaged and incomplete, and customer support never "
    "answered my emails about it.",
    "ok",
]
FEW_X = ["good movie", "bad film", "okay show", "great", "awful", "fine"]
FEW_Y = ["pos", "neg", "neu", "pos", "neg", "neu"]
# An instruction prompt (the former default).  use_chat_template='auto' sends
# every prompt raw with the label after a space; True sends it as a chat message.
CHAT_PROMPT = "Text: {text}\nCategories: {labels}\nWhat is the category of the text?"


@pytest.fixture(autouse=True)
def empty_result_cache():
    result_cache.clear()
    yield
    result_cache.clear()


def spaced_ids(tok, label):
    """Token ids of " " + label as they follow other text (after an anchor)."""
    anchor = tok("x", add_special_tokens=False)["input_ids"]
    joint = tok("x " + label, add_special_tokens=False)["input_ids"]
    assert joint[:len(anchor)] == anchor
    return joint[len(anchor):]


def prompt_ids(clf, text):
    """The prompt's token ids, tokenized exactly as the estimator does."""
    special = not clf.use_chat_template_
    return clf.tokenizer_(clf.get_prompt(text), add_special_tokens=special)["input_ids"]


def oracle_probas(clf, texts):
    """Unnormalised label probabilities from plain forward passes."""
    return np.array([
        [math.exp(oracle_logprob(clf.model_, prompt_ids(clf, t), ids))
         for ids in clf.label_ids_]
        for t in texts
    ])


# ------------------------------------------------------------ fitted state


def test_fit_sets_classes_and_label_ids(tiny_tok):
    clf = zero_shot().fit(None, LABELS)
    assert clf.classes_.tolist() == CLASSES
    # The default prompt ends with "Label: ": its space is scored with the labels.
    assert clf.label_ids_ == [spaced_ids(tiny_tok, c) for c in CLASSES]
    assert clf.prompt_ == DEFAULT_PROMPT_ZERO_SHOT
    assert clf.model_ is get_tiny_model()
    assert clf.tokenizer_ is tiny_tok
    assert str(clf.device_) == "cpu"
    assert (clf.n_cache_hits_, clf.n_cache_misses_) == (0, 0)


def test_fit_accepts_numpy_labels():
    clf = zero_shot().fit(None, np.array(LABELS))
    assert clf.classes_.tolist() == CLASSES


def test_predict_before_fit_raises_not_fitted():
    with pytest.raises(NotFittedError):
        zero_shot().predict_proba(["x"])


def test_integer_labels_warn_and_are_scored_as_text():
    with pytest.warns(UserWarning, match=re.escape(
        "y should contain the name of the labels as strings, e.g. 'positive' "
        "and 'negative', don't pass label-encoded targets"
    )):
        clf = zero_shot().fit(None, [0, 1, 1])
    assert clf.label_ids_ == [spaced_ids(get_tiny_tokenizer(), s) for s in "01"]
    assert clf.predict(["x"])[0] in (0, 1)


# ------------------------------------------------------- exact probabilities


# True: the default prompt, which 'auto' sends raw, through the chat template too.
@pytest.mark.parametrize("chat", [True, False])
@pytest.mark.parametrize("batch_size", [1, "auto"])
def test_raw_probas_equal_the_oracle(chat, batch_size):
    clf = zero_shot(
        probas_sum_to_1=False, use_chat_template=chat, batch_size=batch_size
    ).fit(None, LABELS)
    np.testing.assert_allclose(
        clf.predict_proba(TEXTS), oracle_probas(clf, TEXTS), rtol=1e-5, atol=0
    )


def test_predict_proba_rows_sum_to_one_and_follow_the_oracle():
    clf = zero_shot().fit(None, LABELS)
    probas = clf.predict_proba(TEXTS)
    assert probas.shape == (3, 3)
    np.testing.assert_allclose(probas.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    raw = oracle_probas(clf, TEXTS)
    np.testing.assert_allclose(
        probas, raw / raw.sum(axis=1, keepdims=True), rtol=1e-5, atol=0
    )


def test_predict_is_the_argmax_class():
    clf = zero_shot().fit(None, LABELS)
    probas = clf.predict_proba(TEXTS)
    assert clf.predict(TEXTS).tolist() == clf.classes_[probas.argmax(axis=1)].tolist()


def test_score_is_accuracy():
    clf = zero_shot().fit(None, LABELS)
    y_pred = clf.predict(TEXTS)
    assert clf.score(TEXTS, y_pred) == 1.0


def test_empty_input_gives_empty_output():
    clf = zero_shot().fit(None, LABELS)
    assert clf.predict_proba([]).shape == (0, 3)


def test_chat_template_true_wraps_the_prompt():
    clf = zero_shot(prompt=CHAT_PROMPT, use_chat_template=True).fit(None, LABELS)
    assert clf.use_chat_template_ is True
    message = CHAT_PROMPT.format(labels=LABELS_TEXT, text="hi")
    assert clf.get_prompt("hi") == (
        f"<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n"
    )


def test_chat_template_auto_sends_the_default_prompts_raw(tiny_tok):
    # The defaults are completion prompts ("...Label: "): raw even with a chat
    # tokenizer; a prompt that does not end with a space is wrapped.
    assert tiny_tok.chat_template
    assert DEFAULT_PROMPT_ZERO_SHOT.endswith("Label: ")
    assert DEFAULT_PROMPT_FEW_SHOT.endswith("Label: ")
    zero = zero_shot().fit(None, LABELS)
    assert zero.use_chat_template == "auto"
    assert zero.use_chat_template_ is False
    assert zero.get_prompt("hi") == f"Labels: {LABELS_TEXT}\n\nText: hi\nLabel:"
    few = few_shot(max_samples=3).fit(FEW_X, FEW_Y)
    assert few.use_chat_template_ is False
    assert few.get_prompt("hi") + " " == DEFAULT_PROMPT_FEW_SHOT.format(
        labels="['neg', 'neu', 'pos']", examples=format_examples(few.examples_),
        text="hi")
    # 'auto' never depends on invisible whitespace: with or without a trailing
    # space or newline, a prompt is sent raw and the label follows one space.
    spaced = zero_shot(probas_sum_to_1=False).fit(None, LABELS)
    for prompt in (CHAT_PROMPT, "Labels: {labels}\n\nText: {text}\nLabel:",
                   DEFAULT_PROMPT_ZERO_SHOT + "\n"):
        clf = zero_shot(prompt=prompt, probas_sum_to_1=False).fit(None, LABELS)
        assert clf.use_chat_template_ is False, prompt
        assert clf.get_prompt("hi") == prompt.format(labels=LABELS_TEXT, text="hi").rstrip()
        assert clf.label_ids_ == spaced.label_ids_
        assert (clf.prompt_mode().mode, clf.prompt_mode().reason) == (
            "raw", "sent raw, the label after a space (use_chat_template='auto')")
    np.testing.assert_allclose(
        zero_shot(prompt="Labels: {labels}\n\nText: {text}\nLabel:",
                  probas_sum_to_1=False).fit(None, LABELS).predict_proba(TEXTS),
        spaced.predict_proba(TEXTS), atol=1e-9)


def test_default_prompt_scores_the_labels_with_their_leading_space(tiny_tok):
    clf = zero_shot(probas_sum_to_1=False).fit(None, LABELS)
    anchor = tiny_tok("x", add_special_tokens=False)["input_ids"]
    assert clf.label_ids_ == [
        tiny_tok("x " + c, add_special_tokens=False)["input_ids"][len(anchor):]
        for c in CLASSES
    ]
    assert clf.label_ids_ != [tiny_tok(c, add_special_tokens=False)["input_ids"]
                              for c in CLASSES]
    for text in TEXTS:
        # The model sees the prompt without its final space, then " <label>":
        # the tokens of the prompt and label written out in full.
        prompt = clf.get_prompt(text)
        assert prompt + " " == DEFAULT_PROMPT_ZERO_SHOT.format(labels=LABELS_TEXT,
                                                               text=text)
        p_ids = tiny_tok(prompt)["input_ids"]
        for c, ids in zip(CLASSES, clf.label_ids_):
            assert tiny_tok(prompt + " " + c)["input_ids"] == p_ids + ids
    np.testing.assert_allclose(
        clf.predict_proba(TEXTS), oracle_probas(clf, TEXTS), rtol=1e-5, atol=0
    )


def test_chat_template_false_gives_the_raw_prompt():
    clf = zero_shot(prompt=CHAT_PROMPT, use_chat_template=False).fit(None, LABELS)
    assert clf.use_chat_template_ is False
    assert clf.get_prompt("hi") == (
        f"Text: hi\nCategories: {LABELS_TEXT}\nWhat is the category of the text?"
    )


def test_chat_template_auto_without_template_is_raw():
    tok = get_tiny_tokenizer(chat=False)
    clf = zero_shot(prompt=CHAT_PROMPT, tokenizer=tok).fit(None, LABELS)
    assert clf.use_chat_template_ is False
    assert clf.get_prompt("hi") == CHAT_PROMPT.format(labels=LABELS_TEXT, text="hi")
    default = zero_shot(tokenizer=tok).fit(None, LABELS)
    assert default.use_chat_template_ is False
    assert default.get_prompt("hi") + " " == DEFAULT_PROMPT_ZERO_SHOT.format(
        labels=LABELS_TEXT, text="hi"
    )


def test_raw_prompt_adds_special_tokens_and_chat_prompt_does_not(spy_score):
    tok = get_tiny_tokenizer()
    raw = zero_shot(use_chat_template=False).fit(None, LABELS)
    raw.predict_proba(["hi"])
    chat = zero_shot(prompt=CHAT_PROMPT, use_chat_template=True).fit(None, LABELS)
    assert chat.use_chat_template_ is True
    chat.predict_proba(["hi"])
    assert spy_score[0][0][0] == tok.bos_token_id  # added by the tokenizer
    assert spy_score[0] == [tok(raw.get_prompt("hi"))["input_ids"]]
    assert spy_score[1] == [
        tok(chat.get_prompt("hi"), add_special_tokens=False)["input_ids"]
    ]


@pytest.mark.parametrize("text", ["{labels}", "{text}", "{", "}{0}", "a {{b}} c"])
def test_texts_with_braces_are_inserted_verbatim(text):
    clf = zero_shot(use_chat_template=False, probas_sum_to_1=False).fit(None, LABELS)
    assert clf.get_prompt(text) == f"Labels: {LABELS_TEXT}\n\nText: {text}\nLabel:"
    np.testing.assert_allclose(
        clf.predict_proba([text]), oracle_probas(clf, [text]), rtol=1e-5, atol=0
    )


def test_custom_prompt_is_used():
    prompt = "Labels: {labels}\n{text}\nLabel:"
    clf = zero_shot(prompt=prompt, use_chat_template=False).fit(None, LABELS)
    assert clf.prompt_ == prompt
    assert clf.get_prompt("x") == f"Labels: {LABELS_TEXT}\nx\nLabel:"


# --------------------------------------------------------------- caching


def test_second_call_is_answered_from_the_cache(spy_score):
    clf = zero_shot().fit(None, LABELS)
    first = clf.predict_proba(TEXTS)
    assert (clf.n_cache_hits_, clf.n_cache_misses_) == (0, 3)
    assert len(result_cache) == 3
    second = clf.predict_proba(TEXTS)
    assert (clf.n_cache_hits_, clf.n_cache_misses_) == (3, 3)
    np.testing.assert_array_equal(first, second)
    assert len(spy_score) == 1  # the model ran once


def test_cache_is_shared_with_clones():
    clf = zero_shot().fit(None, LABELS)
    clf.predict_proba(TEXTS)
    twin = clone(clf).fit(None, LABELS)
    twin.predict_proba(TEXTS[:2])
    assert (twin.n_cache_hits_, twin.n_cache_misses_) == (2, 0)


def test_cache_key_depends_on_labels_and_prompt():
    zero_shot().fit(None, LABELS).predict_proba(TEXTS)
    other_labels = zero_shot().fit(None, ["yes", "no"])
    other_labels.predict_proba(TEXTS)
    other_prompt = zero_shot(prompt="{labels}: {text}").fit(None, LABELS)
    other_prompt.predict_proba(TEXTS)
    assert other_labels.n_cache_hits_ == 0
    assert other_prompt.n_cache_hits_ == 0
    assert len(result_cache) == 9


def test_duplicates_are_scored_once(spy_score):
    clf = zero_shot().fit(None, LABELS)
    probas = clf.predict_proba(["a", "b", "a", "a"])
    assert (clf.n_cache_hits_, clf.n_cache_misses_) == (0, 4)
    assert len(spy_score) == 1 and len(spy_score[0]) == 2
    assert len(result_cache) == 2
    np.testing.assert_array_equal(probas[0], probas[2])
    np.testing.assert_array_equal(probas[0], probas[3])


def test_clear_model_cache_empties_the_result_cache():
    clf = zero_shot().fit(None, LABELS)
    clf.predict_proba(TEXTS)
    clf.predict_proba(TEXTS)
    clf.clear_model_cache()
    assert len(result_cache) == 0
    assert (result_cache.hits, result_cache.misses) == (0, 0)
    assert nbllm.result_cache is result_cache


def test_use_caching_false_bypasses_the_cache(spy_score):
    clf = zero_shot(use_caching=False).fit(None, LABELS)
    first = clf.predict_proba(TEXTS)
    second = clf.predict_proba(TEXTS)
    assert len(result_cache) == 0
    assert (clf.n_cache_hits_, clf.n_cache_misses_) == (0, 0)
    assert len(spy_score) == 2
    np.testing.assert_allclose(first, second, rtol=1e-12, atol=0)


def test_cached_and_uncached_results_agree():
    cached = zero_shot().fit(None, LABELS).predict_proba(TEXTS)
    uncached = zero_shot(use_caching=False).fit(None, LABELS).predict_proba(TEXTS)
    np.testing.assert_allclose(cached, uncached, rtol=1e-12, atol=0)


def test_chunks_are_reassembled_in_order(monkeypatch):
    texts = TEXTS + ["a", "b", TEXTS[0]]
    expected = zero_shot(use_caching=False).fit(None, LABELS).predict_proba(texts)
    monkeypatch.setattr(text_scorer, "CHUNK", 2)
    for caching in (False, True):
        clf = zero_shot(use_caching=caching).fit(None, LABELS)
        np.testing.assert_allclose(
            clf.predict_proba(texts), expected, rtol=1e-5, atol=0
        )


def test_interrupted_run_resumes_from_finished_batches(monkeypatch):
    original = scoring.LabelScorer.score

    def interrupted(self, prompt_ids, label_ids, batch_size, prefix_hint,
                    on_batch=None, progress=None, **options):
        def stop_after_first(indices, values):
            on_batch(indices, values)
            raise KeyboardInterrupt

        return original(self, prompt_ids, label_ids, batch_size, prefix_hint,
                        on_batch=stop_after_first, progress=progress, **options)

    clf = zero_shot(batch_size=2).fit(None, LABELS)
    monkeypatch.setattr(scoring.LabelScorer, "score", interrupted)
    with pytest.raises(KeyboardInterrupt):
        clf.predict_proba(TEXTS)
    assert len(result_cache) == 2
    monkeypatch.setattr(scoring.LabelScorer, "score", original)
    resumed = zero_shot(batch_size=2).fit(None, LABELS)
    probas = resumed.predict_proba(TEXTS)
    assert (resumed.n_cache_hits_, resumed.n_cache_misses_) == (2, 1)
    np.testing.assert_allclose(
        probas, zero_shot(use_caching=False).fit(None, LABELS).predict_proba(TEXTS),
        rtol=1e-5, atol=0,
    )


# ------------------------------------------------------ bad parameters

PARAM_ERRORS = [
    (dict(model_name="some-model"),
     "ZeroShotClassifier needs to be initialized with either a model name, or a "
     "model & tokenizer, but not both."),
    (dict(tokenizer=None),
     "ZeroShotClassifier needs to be initialized with either a model name, or a "
     "model & tokenizer, but not both. It needs both model and tokenizer when one "
     "of them is "
     "passed; got only the model"),
    (dict(model=None),
     "ZeroShotClassifier needs to be initialized with either a model name, or a "
     "model & tokenizer, but not both. It needs both model and tokenizer when one "
     "of them is "
     "passed; got only the tokenizer"),
    (dict(error_low_prob="bad"),
     "error_low_prob must be one of ignore, raise, warn, return_none; got bad "
     "instead"),
    (dict(threshold_low_prob=1.5),
     "threshold_low_prob must be between 0 and 1, got 1.5 instead"),
    (dict(threshold_low_prob=-0.1),
     "threshold_low_prob must be between 0 and 1, got -0.1 instead"),
    (dict(threshold_low_prob="0.5"),
     "threshold_low_prob must be between 0 and 1, got '0.5' instead"),
    (dict(use_chat_template="yes"),
     "use_chat_template must be 'auto', True or False; got 'yes'"),
    (dict(use_chat_template=True, tokenizer=get_tiny_tokenizer(chat=False)),
     "use_chat_template=True, but the tokenizer has no chat template; use 'auto' "
     "or False"),
    (dict(batch_size=0), "batch_size must be 'auto' or a positive integer; got 0"),
    (dict(batch_size="x"),
     "batch_size must be 'auto' or a positive integer; got 'x'"),
    (dict(batch_size=True),
     "batch_size must be 'auto' or a positive integer; got True"),
    (dict(batch_size=2.0),
     "batch_size must be 'auto' or a positive integer; got 2.0"),
    (dict(progress="bad"), "progress must be 'auto', True or False; got 'bad'"),
    (dict(prompt=5), "prompt must be a string or None; got int"),
    (dict(prompt="Text: {text} {labels} {"),
     "The prompt is not a valid template (Single '{' encountered in format "
     "string); write literal braces as '{{' and '}}'"),
]


@pytest.mark.parametrize("kwargs, msg", PARAM_ERRORS)
def test_bad_parameters_raise_at_fit(kwargs, msg):
    clf = zero_shot(**kwargs)
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        clf.fit(None, LABELS)


def test_use_chat_template_true_with_template():
    clf = zero_shot(use_chat_template=True).fit(None, LABELS)
    assert clf.use_chat_template_ is True


def test_few_shot_names_itself_in_messages():
    msg = (
        "FewShotClassifier needs to be initialized with either a model name, or a "
        "model & tokenizer, but not both."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        few_shot(model_name="m").fit(FEW_X, FEW_Y)


@pytest.mark.parametrize("y, msg", [
    (None, "ZeroShotClassifier requires y to be passed, but the target y is None; "
           "y cannot be None, as it is used to infer the existing classes"),
    ([], "y must contain at least one label; got an empty list"),
    (["a", ""], "labels must be non-empty strings; got '' in the classes"),
    (["a", "  "], "labels must be non-empty strings; got '  ' in the classes"),
])
def test_bad_labels(y, msg):
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        zero_shot().fit(None, y)


@pytest.mark.parametrize("X, y, msg", [
    (None, FEW_Y, "For few-shot learning, pass at least one example"),
    ([], [], "For few-shot learning, pass at least one example"),
    (FEW_X[:2], FEW_Y[:3],
     "X and y don't have the same number of samples, found 2 and 3 samples, "
     "respectively"),
    (FEW_X[:2], None,
     "FewShotClassifier requires y to be passed, but the target y is None; y cannot "
     "be None, as it is used to infer the existing classes"),
])
def test_few_shot_bad_fit_data(X, y, msg):
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        few_shot().fit(X, y)


@pytest.mark.parametrize("max_samples", [0, -1, 1.5, True, "2"])
def test_few_shot_bad_max_samples(max_samples):
    msg = f"max_samples must be a positive integer; got {max_samples!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        few_shot(max_samples=max_samples).fit(FEW_X, FEW_Y)


SINGLE_STRING = (
    "X must be a list-like of texts, got a single string; wrap it in a list: [text]"
)



def test_single_string_to_predict_proba():
    clf = zero_shot().fit(None, LABELS)
    with pytest.raises(ValueError, match=f"^{re.escape(SINGLE_STRING)}$"):
        clf.predict_proba("I love it")


def test_single_string_to_few_shot_fit():
    # Whatever len(y) is, a bare string is reported as such (not as a length
    # mismatch between its characters and y).
    with pytest.raises(ValueError, match=f"^{re.escape(SINGLE_STRING)}$"):
        few_shot().fit("good movie", ["pos"])


def test_none_to_predict_proba():
    clf = zero_shot().fit(None, LABELS)
    with pytest.raises(ValueError, match="^X must be a list-like of texts, got None$"):
        clf.predict_proba(None)


def test_missing_values_in_X_are_reported_by_position():
    clf = zero_shot().fit(None, LABELS)
    msg = (
        "X contains 2 missing value(s) (None or NaN) at position(s) 1, 3; drop or "
        "fill them first"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        clf.predict_proba(["a", None, "b", float("nan")])


def test_many_missing_values_are_abbreviated():
    clf = zero_shot().fit(None, LABELS)
    msg = (
        "X contains 7 missing value(s) (None or NaN) at position(s) 0, 1, 2, 3, 4, "
        "...; drop or fill them first"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        clf.predict_proba(np.array([np.nan] * 7, dtype=object))


def test_missing_values_in_few_shot_fit_data():
    msg = (
        "X contains 1 missing value(s) (None or NaN) at position(s) 0; drop or "
        "fill them first"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        few_shot().fit([None, "x"], ["a", "b"])


def test_non_string_values_warn_and_are_converted():
    clf = zero_shot().fit(None, LABELS)
    with pytest.warns(UserWarning, match=re.escape(
        "2 value(s) in X are not strings and were converted with str()"
    )):
        converted = clf.predict_proba([12, "ok", b"bytes"])
    np.testing.assert_array_equal(converted, clf.predict_proba(["12", "ok", "bytes"]))


# ------------------------------------------------- placeholder warnings


def _fit_warnings(clf, X=None, y=LABELS):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        clf.fit(X, y)
    return [str(w.message) for w in record]


def test_zero_shot_prompt_missing_labels_warns():
    messages = _fit_warnings(zero_shot(prompt="Text: {text}"))
    assert messages == [
        "The prompt may not be correct, it expects 2 placeholders: 'labels', "
        "'text', missing keys: 'labels'"
    ]


def test_zero_shot_prompt_extra_keys_warns_and_renders_them_as_is():
    clf = zero_shot(prompt="{text} {labels} {examples} {foo}", use_chat_template=False)
    assert _fit_warnings(clf) == [
        "The prompt may not be correct, it expects 2 placeholders: 'labels', "
        "'text', extra keys: 'examples', 'foo'"
    ]
    assert clf.get_prompt("t") == f"t {LABELS_TEXT} {{examples}} {{foo}}"


def test_few_shot_prompt_missing_examples_warns():
    messages = _fit_warnings(few_shot(prompt="{text} {labels}"), FEW_X, FEW_Y)
    assert messages == [
        "The prompt may not be correct, it expects 3 placeholders: 'examples', "
        "'labels', 'text', missing keys: 'examples'"
    ]


def test_default_prompts_fit_without_warnings():
    assert _fit_warnings(zero_shot()) == []
    assert _fit_warnings(few_shot(), FEW_X, FEW_Y) == []


def test_prompt_with_positional_placeholder_does_not_crash():
    clf = zero_shot(prompt="{text} {labels} {}", use_chat_template=False)
    assert _fit_warnings(clf) == [
        "The prompt may not be correct, it expects 2 placeholders: 'labels', "
        "'text', extra keys: ''"
    ]
    assert clf.get_prompt("t") == f"t {LABELS_TEXT} {{}}"


# ------------------------------------------------ low-probability policies


def _totals(texts=TEXTS):
    return zero_shot(probas_sum_to_1=False).fit(None, LABELS).predict_proba(texts).sum(1)


def test_low_probability_error_is_exported_and_a_value_error():
    assert nbllm.LowProbabilityError is LowProbabilityError
    assert issubclass(LowProbabilityError, ValueError)


def test_low_prob_raise():
    total = _totals()[0]
    clf = zero_shot(
        probas_sum_to_1=False, threshold_low_prob=1.0, error_low_prob="raise"
    ).fit(None, LABELS)
    msg = (
        f"The sum of all probabilities is {total:.3f}, which is below the minimum "
        "threshold of 1.000"
    )
    with pytest.raises(LowProbabilityError, match=f"^{re.escape(msg)}$"):
        clf.predict_proba(TEXTS)
    with pytest.raises(LowProbabilityError, match="^The sum of all probabilities is"):
        clf.predict(TEXTS)


def test_low_prob_warn():
    clf = zero_shot(
        probas_sum_to_1=False, threshold_low_prob=1.0, error_low_prob="warn"
    ).fit(None, LABELS)
    with pytest.warns(UserWarning) as record:
        probas = clf.predict_proba(TEXTS)
    assert [str(w.message) for w in record] == [
        "Found 3 sample(s) to have a total probability below the threshold of 1.000."
    ]
    np.testing.assert_allclose(probas.sum(1), _totals(), rtol=1e-12, atol=0)


def test_low_prob_return_none_only_for_low_rows():
    totals = _totals()
    threshold = float(np.median(totals))  # one row below, one equal, one above
    clf = zero_shot(
        threshold_low_prob=threshold, error_low_prob="return_none"
    ).fit(None, LABELS)
    y_pred = clf.predict(TEXTS)
    expected = zero_shot().fit(None, LABELS).predict(TEXTS).astype(object)
    expected[totals < threshold] = None
    assert y_pred.dtype == object
    assert y_pred.tolist() == expected.tolist()
    assert sum(v is None for v in y_pred) == 1


def test_low_prob_return_none_all_rows():
    clf = zero_shot(threshold_low_prob=1.0, error_low_prob="return_none").fit(
        None, LABELS
    )
    y_pred = clf.predict(TEXTS)
    assert y_pred.dtype == object
    assert y_pred.tolist() == [None, None, None]


def test_low_prob_ignore():
    clf = zero_shot(
        probas_sum_to_1=False, threshold_low_prob=1.0, error_low_prob="ignore"
    ).fit(None, LABELS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict_proba(TEXTS)
        assert None not in clf.predict(TEXTS).tolist()


def test_zero_total_always_raises(monkeypatch):
    clf = zero_shot(error_low_prob="ignore").fit(None, LABELS)
    monkeypatch.setattr(
        clf, "label_logprobs", lambda X: np.full((len(X), 3), -np.inf)
    )
    with pytest.raises(LowProbabilityError, match=r"^The sum of all probabilities is zero\.$"):
        clf.predict_proba(["x"])


# ------------------------------------------------------------ few-shot


@pytest.mark.parametrize("max_samples, n", [(1, 1), (2, 2), (3, 3), (5, 5), (10, 6)])
def test_few_shot_example_count(max_samples, n):
    clf = few_shot(max_samples=max_samples).fit(FEW_X, FEW_Y)
    assert len(clf.examples_) == n
    assert set(clf.examples_) <= set(zip(FEW_X, FEW_Y))
    assert len(set(clf.examples_)) == n


@pytest.mark.parametrize("seed", range(5))
def test_few_shot_every_label_present_when_room(seed):
    clf = few_shot(max_samples=3, random_state=seed).fit(FEW_X, FEW_Y)
    assert sorted(label for _, label in clf.examples_) == ["neg", "neu", "pos"]


def test_few_shot_labels_distinct_when_fewer_slots_than_labels():
    clf = few_shot(max_samples=2).fit(FEW_X, FEW_Y)
    labels = [label for _, label in clf.examples_]
    assert len(set(labels)) == 2


def test_few_shot_is_deterministic_for_a_seed():
    a = few_shot(max_samples=4, random_state=7).fit(FEW_X, FEW_Y).examples_
    b = few_shot(max_samples=4, random_state=7).fit(FEW_X, FEW_Y).examples_
    assert a == b


def test_few_shot_examples_are_in_the_prompt():
    clf = few_shot(max_samples=3, use_chat_template=False).fit(FEW_X, FEW_Y)
    # The final space of "Label: " is scored with the labels (" pos").
    assert clf.get_prompt("new text") + " " == DEFAULT_PROMPT_FEW_SHOT.format(
        labels="['neg', 'neu', 'pos']",
        examples=format_examples(clf.examples_),
        text="new text",
    )
    for text, label in clf.examples_:
        assert f"Text: {text}\nLabel: {label}\n\n" in clf.get_prompt("x")


def test_few_shot_raw_probas_equal_the_oracle():
    clf = few_shot(max_samples=3, probas_sum_to_1=False).fit(FEW_X, FEW_Y)
    np.testing.assert_allclose(
        clf.predict_proba(TEXTS), oracle_probas(clf, TEXTS), rtol=1e-5, atol=0
    )


def test_few_shot_accepts_numpy_fit_data():
    clf = few_shot(max_samples=2).fit(np.array(FEW_X), np.array(FEW_Y))
    assert clf.classes_.tolist() == ["neg", "neu", "pos"]
    assert all(isinstance(t, str) for t, _ in clf.examples_)


# ----------------------------------------------------------- truncation

LONG_TEXT = " ".join(SENTENCES)
SHORT_PROMPT = "Text: {text}\nAnswer: {labels}"


def small_context(**kwargs):
    kwargs.setdefault("prompt", SHORT_PROMPT)
    kwargs.setdefault("use_chat_template", False)
    return zero_shot(model=get_tiny_model(max_positions=64), **kwargs)


@pytest.mark.parametrize("chat", [False, True])
def test_long_text_is_cut_to_fit_the_context(spy_score, chat):
    clf = small_context(probas_sum_to_1=False, use_chat_template=chat)
    clf.fit(None, LABELS)
    assert clf.loaded_.context_length == 64
    with pytest.warns(UserWarning) as record:
        probas = clf.predict_proba([LONG_TEXT, "ok"])
    assert [str(w.message) for w in record] == [
        "1 sample(s) did not fit the model's context of 64 tokens; their text was "
        "cut at the end so that the prompt template and the labels fit"
    ]
    (long_ids, short_ids), = spy_score
    longest_label = max(len(ids) for ids in clf.label_ids_)
    assert len(long_ids) + longest_label <= 64
    assert len(long_ids) >= 64 - longest_label - 8  # cut, not emptied
    decoded = clf.tokenizer_.decode(long_ids)
    head, tail = clf.get_prompt("\x00").split("\x00")
    bos = "" if chat else clf.tokenizer_.bos_token  # raw prompts get BOS added
    assert decoded.startswith(bos + head + SENTENCES[0][:20])
    assert decoded.endswith(tail)
    assert tail.startswith(f"\nAnswer: {LABELS_TEXT}")
    assert short_ids == prompt_ids(clf, "ok")
    expected = [math.exp(oracle_logprob(clf.model_, long_ids, ids)) for ids in clf.label_ids_]
    np.testing.assert_allclose(probas[0], expected, rtol=1e-5, atol=0)


def test_template_alone_exceeding_the_context_raises():
    clf = small_context(prompt="word " * 80 + "{text} {labels}").fit(None, LABELS)
    longest_label = max(len(ids) for ids in clf.label_ids_)
    pattern = (
        r"^The prompt template takes \d+ tokens and the longest label "
        f"{longest_label}, which leaves no room for the text in the model's "
        r"context of 64 tokens; shorten the prompt or use fewer examples$"
    )
    with pytest.raises(ValueError, match=pattern):
        clf.predict_proba(["hello"])


# ------------------------------------------------------------- generate


def test_generate_returns_the_greedy_continuation():
    import torch

    clf = zero_shot().fit(None, LABELS)
    out = clf.generate("I love it", max_new_tokens=5)
    assert isinstance(out, str)
    ids, new = prompt_ids(clf, "I love it"), []
    with torch.no_grad():
        for _ in range(5):
            token = int(clf.model_(torch.tensor([ids + new])).logits[0, -1].argmax())
            new.append(token)
            if token == clf.tokenizer_.eos_token_id:
                break
    assert out == clf.tokenizer_.decode(new, skip_special_tokens=True)


# ------------------------------------------------------------- progress


def test_progress_bar_policies():
    from nbllm.engine.scoring.text_scorer import PROGRESS_DELAY, ProgressBar as _ProgressBar

    off = _ProgressBar(False, 100)
    off.start()
    assert off.bar is None
    # 'auto': a bar with counts for every scoring call, shown after a second.
    auto = _ProgressBar("auto", 100)
    auto.update(10)
    auto.start()
    assert (auto.bar.total, auto.bar.n, auto.bar.delay) == (100, 10, PROGRESS_DELAY)
    assert PROGRESS_DELAY == 1.0
    bar = auto.bar
    auto.start()  # later chunks keep the same bar
    assert auto.bar is bar
    auto.close()
    always = _ProgressBar(True, 2)
    always.start()
    assert (always.bar.total, always.bar.delay) == (2, 0)
    always.close()


def test_quick_auto_progress_prints_nothing(capsys):
    clf = zero_shot(progress="auto", use_caching=False).fit(None, LABELS)
    clf.predict_proba(TEXTS)
    assert capsys.readouterr().err == ""


def test_on_rows_reports_every_row_once_cached_first():
    clf = zero_shot(batch_size=1).fit(None, LABELS)
    clf.predict_proba(TEXTS[:1])
    seen = []
    out = clf.label_logprobs(TEXTS + [TEXTS[1]], on_rows=lambda r, v: seen.append(
        (r.tolist(), v.copy())))
    assert seen[0][0] == [0]
    assert sorted(r for rows, _ in seen for r in rows) == list(range(len(TEXTS) + 1))
    for rows, values in seen:
        np.testing.assert_array_equal(out[rows], values)


def test_predict_proba_with_progress_bar_matches_without(capsys):
    with_bar = zero_shot(progress=True, batch_size=1, use_caching=False)
    with_bar.fit(None, LABELS)
    probas = with_bar.predict_proba(TEXTS)
    assert "3/3" in capsys.readouterr().err
    np.testing.assert_allclose(
        probas, zero_shot().fit(None, LABELS).predict_proba(TEXTS), rtol=1e-5
    )


# -------------------------------------------------------------- sklearn


def test_get_params_and_set_params():
    clf = zero_shot(prompt="{text} {labels}")
    params = clf.get_params()
    assert set(params) == {
        "model_name", "model", "tokenizer", "prompt", "probas_sum_to_1", "device",
        "dtype", "error_low_prob", "threshold_low_prob", "use_caching",
        "use_chat_template", "batch_size", "progress", "cache_dir", "calibration",
        "truncation", "trust_remote_code",
        "label_map",
    }
    assert params["prompt"] == "{text} {labels}"
    assert params["model"] is get_tiny_model()
    assert clf.set_params(prompt="x {text} {labels}", batch_size=4) is clf
    assert (clf.prompt, clf.batch_size) == ("x {text} {labels}", 4)
    assert set(few_shot().get_params()) == set(params) | {
        "max_samples", "random_state", "example_selection", "example_placement",
        "example_template"}


def test_clone_keeps_the_model_object():
    clf = few_shot(max_samples=2).fit(FEW_X, FEW_Y)
    twin = clone(clf)
    assert twin.model is clf.model and twin.tokenizer is clf.tokenizer
    assert twin.get_params()["max_samples"] == 2
    assert not hasattr(twin, "classes_")


def test_repr_is_short_and_names_the_model_class():
    clf = zero_shot(prompt="{text} {labels}")
    text = repr(clf)
    assert len(text) < 400
    assert "LlamaForCausalLM" in text
    assert type(get_tiny_tokenizer()).__name__ in text
    assert "LlamaDecoderLayer" not in text and "Embedding(" not in text
    assert clf.model is get_tiny_model()  # repr put the real object back
    assert repr(ZeroShotClassifier()) == "ZeroShotClassifier()"


def test_grid_search_loads_the_model_once(monkeypatch, tiny_folder):
    monkeypatch.setattr(models, "_registry", {})
    monkeypatch.setattr(models, "load_counts", {})
    X = ["good movie", "great film", "I love it", "wonderful",
         "bad movie", "awful film", "I hate it", "terrible"]
    y = ["pos"] * 4 + ["neg"] * 4
    prompts = [
        DEFAULT_PROMPT_FEW_SHOT,
        "{examples}\nLabels: {labels}\nText: {text}\nCategory:",
    ]
    search = GridSearchCV(
        FewShotClassifier(model_name=tiny_folder, progress=False, random_state=0),
        {"prompt": prompts, "max_samples": [1, 2]},
        cv=2,
    ).fit(X, y)
    assert models.load_counts == {tiny_folder: 1}
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_["prompt"] in prompts
    assert search.best_estimator_.loaded_ is models.get_model(tiny_folder)
    assert search.predict(["nice"])[0] in ("neg", "pos")


def test_grid_search_over_model_names_loads_each_model_once(monkeypatch, tiny_folder,
                                                            tmp_path):
    other = str(save_tiny(tmp_path / "other", chat=False))
    monkeypatch.setattr(models, "_registry", {})
    monkeypatch.setattr(models, "load_counts", {})
    X = ["good movie", "I love it", "bad movie", "I hate it"] * 2
    y = ["pos", "pos", "neg", "neg"] * 2
    search = GridSearchCV(
        ZeroShotClassifier(progress=False),
        {"model_name": [tiny_folder, other], "prompt": [None, "{text} -> {labels}:"]},
        cv=2,
    ).fit(X, y)
    assert models.load_counts == {tiny_folder: 1, other: 1}
    assert len(search.cv_results_["params"]) == 4
