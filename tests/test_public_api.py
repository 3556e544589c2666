"""The estimators' public methods the notebook layer builds on.

``label_scores`` (streaming; ``label_logprobs`` or multi-label's
``label_log_odds``), ``probas_from_scores``, ``result_policy()``,
``low_probability_rows`` and ``label_mass`` (single-label),
``predictions_from_logprobs``, ``prompt_token_ids`` and ``fit(..., classes=)``
replace the private calls and the type probes the notebook layer used to make.
"""

import re

import numpy as np
import pytest

from nbllm import FewShotClassifier, MultiLabelZeroShotClassifier, ZeroShotClassifier
from nbllm.estimators.predictions import ResultPolicy
from nbllm.exceptions import LowProbabilityError
from tiny import get_tiny_model, get_tiny_tokenizer, oracle_matrix

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = ["The movie was great and I loved every minute of it.",
         "The train was late again this morning.", "I am not sure how I feel."]


def zero(**kwargs):
    return ZeroShotClassifier(model=get_tiny_model(), tokenizer=get_tiny_tokenizer(),
                              use_chat_template=False, progress=False,
                              **kwargs).fit(None, ["negative", "positive"])


def test_label_logprobs_streams_every_row_and_equals_the_oracle():
    clf = zero(use_caching=False, batch_size=1)
    seen = []
    got = clf.label_logprobs(TEXTS, on_rows=lambda rows, values: seen.append(list(rows)))
    assert sorted(r for rows in seen for r in rows) == [0, 1, 2] and len(seen) == 3
    ids = clf.prompt_token_ids(TEXTS)
    np.testing.assert_allclose(got, oracle_matrix(get_tiny_model(), ids, clf.label_ids_),
                               atol=1e-4)


def test_low_probability_rows_follow_the_policy():
    logprobs = np.log(np.array([[0.3, 0.3], [0.01, 0.02]]))
    assert zero(threshold_low_prob=0.1).low_probability_rows(logprobs).tolist() == [False,
                                                                                    True]
    with pytest.warns(UserWarning, match=re.escape(
            "Found 1 sample(s) to have a total probability below the threshold of 0.100.")):
        zero(threshold_low_prob=0.1, error_low_prob="warn").low_probability_rows(logprobs)
    msg = ("The sum of all probabilities is 0.030, which is below the minimum threshold "
           "of 0.100")
    with pytest.raises(LowProbabilityError, match=f"^{re.escape(msg)}$"):
        zero(threshold_low_prob=0.1, error_low_prob="raise").low_probability_rows(logprobs)
    np.testing.assert_allclose(zero().label_mass(logprobs), [0.6, 0.03])


def test_predictions_from_logprobs_hide_low_rows_only_with_return_none():
    logprobs = np.log(np.array([[0.3, 0.1], [0.01, 0.02]]))
    low = np.array([False, True])
    assert zero().predictions_from_logprobs(logprobs, low).tolist() == ["negative",
                                                                         "positive"]
    hidden = zero(error_low_prob="return_none").predictions_from_logprobs(logprobs, low)
    assert hidden.tolist() == ["negative", None]


def test_fit_with_classes_keeps_labels_without_examples_predictable():
    clf = FewShotClassifier(model=get_tiny_model(), tokenizer=get_tiny_tokenizer(),
                            example_selection="stratified", random_state=0)
    clf.fit(["I love it", "I hate it"], ["positive", "negative"],
            classes=["neutral", "positive", "negative"])
    assert clf.classes_.tolist() == ["negative", "neutral", "positive"]
    assert clf.predict_proba(TEXTS).shape == (3, 3)
    assert "'neutral'" in clf.get_prompt("x")
    msg = "classes must hold every label of y; missing 'negative'"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        clf.fit(["I love it", "I hate it"], ["positive", "negative"], classes=["positive"])


def multi(**kwargs):
    return MultiLabelZeroShotClassifier(model=get_tiny_model(), tokenizer=get_tiny_tokenizer(),
                                        progress=False, **kwargs).fit(None, [["sports"],
                                                                             ["tech"]])


def test_each_classifier_states_its_result_policy():
    assert zero().result_policy() == ResultPolicy(raw=False, low_threshold=0.0,
                                                  hide_low=False, multi_label_threshold=None)
    policy = zero(probas_sum_to_1=False, threshold_low_prob=0.2,
                  error_low_prob="return_none").result_policy()
    assert (policy.raw, policy.low_threshold, policy.hide_low) == (True, 0.2, True)
    assert policy.has_label_mass and not policy.multi_label
    policy = multi(threshold=0.3).result_policy()
    assert policy == ResultPolicy(raw=False, low_threshold=None, hide_low=False,
                                  multi_label_threshold=0.3)
    assert policy.multi_label and not policy.has_label_mass


def test_the_policy_is_read_from_the_parameters_as_they_are_now():
    clf = zero()
    clf.set_params(error_low_prob="return_none", threshold_low_prob=0.5)
    assert clf.result_policy().hide_low and clf.result_policy().low_threshold == 0.5


def test_label_scores_are_each_kinds_own_scores():
    clf = zero()
    np.testing.assert_array_equal(clf.label_scores(TEXTS), clf.label_logprobs(TEXTS))
    logprobs = clf.label_logprobs(TEXTS)
    np.testing.assert_array_equal(clf.probas_from_scores(logprobs),
                                  clf.probas_from_logprobs(logprobs))
    ml = multi()
    log_odds = ml.label_log_odds(TEXTS)
    np.testing.assert_array_equal(ml.label_scores(TEXTS), log_odds)
    np.testing.assert_array_equal(ml.probas_from_scores(log_odds), 1 / (1 + np.exp(-log_odds)))


def test_one_prediction_rule_for_both_kinds():
    probas = np.array([[0.3, 0.7], [0.6, 0.4], [np.nan, np.nan], [0.5, 0.5]])
    low = np.array([False, True, False, False])
    classes = ["neg", "pos"]
    assert ResultPolicy().predictions(classes, probas, low).tolist() == [
        "pos", "neg", None, "neg"]  # a tie goes to the first class
    assert ResultPolicy(hide_low=True).predictions(classes, probas, low).tolist() == [
        "pos", None, None, "neg"]
    assert ResultPolicy(multi_label_threshold=0.5).predictions(classes, probas) == [
        ["pos"], ["neg"], None, ["neg", "pos"]]
    # The classes keep their type when no row gives None.
    picked = ResultPolicy().predictions(np.array([0, 1]), probas[:2])
    assert picked.dtype.kind == "i" and picked.tolist() == [1, 0]


def test_multi_label_has_no_label_mass():
    """The log-odds are not log-probabilities: their exp() summed is no mass, and
    the notebook layer asks no multi-label classifier for one."""
    from nbllm.notebook.classify import classify, preview

    clf = multi()
    result = classify(TEXTS, estimator=clf)
    assert np.isnan(result.label_mass).all() and not result.low.any()
    assert result.labels == clf.predict_labels(TEXTS)
    shown = preview(clf, TEXTS[0])
    assert "label mass" not in shown._repr_html_() and "label mass" not in repr(shown)
    np.testing.assert_allclose(shown.probas, clf.predict_proba(TEXTS[:1])[0], rtol=1e-12)


@pytest.mark.parametrize("name, message", [
    ("label_mass", "label_mass is deprecated and will be removed: each label is its own "
     "yes/no question, so a row has no label mass (result_policy().has_label_mass is "
     "False)"),
    ("low_probability_rows", "low_probability_rows is deprecated and will be removed: "
     "without a label mass no row is low (result_policy().has_label_mass is False)"),
])
def test_multi_label_single_label_questions_are_deprecated(name, message):
    clf = multi()
    log_odds = clf.label_log_odds(TEXTS)
    with pytest.warns(FutureWarning, match=re.escape(
            f"MultiLabelZeroShotClassifier.{message}")):
        answer = getattr(clf, name)(log_odds)
    if name == "label_mass":
        assert np.isnan(answer).all() and answer.shape == (3,)
    else:
        assert answer.tolist() == [False, False, False]


def test_the_notebook_layer_asks_the_classifier_and_probes_nothing():
    """classify reads result_policy(), label_scores, probas_from_scores and
    prompt_mode(), whatever the classifier's class or its other attributes."""
    import inspect

    from nbllm.notebook import classify as module

    source = inspect.getsource(module._classify) + inspect.getsource(module._preview)
    for probe in ("getattr(", "hasattr(", "isinstance(", "probas_sum_to_1",
                  "threshold_low_prob", "error_low_prob", "calibration", "MultiLabel"):
        assert probe not in source, probe


def test_classify_follows_the_policy_the_classifier_states():
    """The result reads the policy, not the parameters behind it."""
    from nbllm.notebook.classify import classify

    class Stated(ZeroShotClassifier):
        def result_policy(self):
            return ResultPolicy(raw=True, low_threshold=1.0, hide_low=True)

    clf = Stated(model=get_tiny_model(), tokenizer=get_tiny_tokenizer(),
                 use_chat_template=False, progress=False).fit(None, ["negative", "positive"])
    result = classify(TEXTS, estimator=clf)
    assert clf.probas_sum_to_1 and clf.error_low_prob == "ignore"
    assert result.raw and result.low.all() and result.labels == [None] * 3
    assert "label_mass" in result.frame.columns


def test_a_result_is_built_complete():
    from nbllm.notebook.classify import classify

    clf = zero(error_low_prob="return_none", threshold_low_prob=0.999999)
    result = classify(TEXTS, estimator=clf)
    assert result.estimator is clf and result.stopped is False
    assert result.pending.tolist() == [False] * 3
    assert result.prompt_mode == clf.prompt_mode().reason
    assert result.policy == clf.result_policy()
    assert result.labels == [None] * 3  # every row under the threshold, hidden


def test_options_name_the_expected_values():
    from nbllm import options

    msg = "truncation must be 'right', 'left', 'middle' or 'error'; got 'top'"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        options.TRUNCATION.check("top")
    msg = "batch_size must be 'auto' or a positive integer; got 0"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        options.BATCH_SIZE.check(0)
    assert options.BATCH_SIZE.check("auto") == "auto"
    msg = "use_chat_template must be 'auto', True or False; got ['x']"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        options.USE_CHAT_TEMPLATE.check(["x"])


def test_multi_label_takes_only_its_own_options():
    params = MultiLabelZeroShotClassifier().get_params()
    assert not {"probas_sum_to_1", "error_low_prob", "threshold_low_prob",
                "calibration"} & set(params)
    assert "probas_sum_to_1" not in MultiLabelZeroShotClassifier.__doc__
    assert "threshold : float" in MultiLabelZeroShotClassifier.__doc__


def test_warnings_point_at_the_callers_line():
    """A warning raised deep inside nbllm names the user's call, not nbllm's source."""
    import warnings

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ZeroShotClassifier(model=get_tiny_model(), tokenizer=get_tiny_tokenizer(),
                           prompt="{text} {nope}").fit(None, ["only"])
    assert len(record) == 2  # the unknown placeholder and the single label
    assert {w.filename for w in record} == {__file__}
