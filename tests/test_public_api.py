"""The estimators' public methods the notebook layer builds on.

``label_logprobs`` (streaming), ``low_probability_rows``, ``label_mass``,
``predictions_from_logprobs``, ``prompt_token_ids`` and ``fit(..., classes=)``
replace the private calls the notebook layer used to make.
"""

import re

import numpy as np
import pytest

from nbllm import FewShotClassifier, MultiLabelZeroShotClassifier, ZeroShotClassifier
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


def test_multi_label_has_no_label_mass():
    """The log-odds are not log-probabilities: their exp() summed is no mass."""
    from nbllm.notebook.classify import classify, preview

    clf = MultiLabelZeroShotClassifier(model=get_tiny_model(), tokenizer=get_tiny_tokenizer(),
                                       progress=False).fit(None, [["sports"], ["tech"]])
    log_odds = clf.label_logprobs(TEXTS)
    assert np.isnan(clf.label_mass(log_odds)).all()
    assert not clf.low_probability_rows(log_odds).any()
    result = classify(TEXTS, estimator=clf)
    assert np.isnan(result.label_mass).all() and not result.low.any()
    shown = preview(clf, TEXTS[0])
    assert "label mass" not in shown._repr_html_() and "label mass" not in repr(shown)


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
