"""Calibration: content-free and batch, against numpy formulas and the oracle.
"""

import re
import warnings

import numpy as np
import pytest

from nbllm.estimators.calibration import (
    CONTENT_FREE_TEXTS,
    calibrate,
    content_free_reference,
    fit_scale_and_bias,
)
from tiny import SENTENCES

from quality_helpers import (
    BATCH_WARNING,
    CLASSES,
    FEW_X,
    FEW_Y,
    LABELS,
    TEXTS,
    few_shot,
    messages,
    np_log_softmax,
    np_softmax,
    oracle_row,
    zero_shot,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")


def random_logprobs(n, k=3, seed=0):
    # Unnormalised, like real label log-probabilities (rows sum to < 1).
    return np.random.default_rng(seed).normal(-6.0, 2.5, size=(n, k))


def test_calibrate_none_is_the_softmax():
    logprobs = random_logprobs(5)
    out = calibrate(logprobs, None)
    np.testing.assert_allclose(out, np.exp(logprobs) / np.exp(logprobs).sum(1)[:, None],
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_calibrate_is_stable_when_the_probabilities_are_tiny():
    """The normalisation happens in log space (scipy's log_softmax and
    softmax): labels a model gives e^-1000 still get their odds."""
    logprobs = np.array([[-1000.0, -1001.0], [-800.0, -800.0]])
    expected = np_softmax(np_log_softmax(logprobs))
    np.testing.assert_allclose(calibrate(logprobs, None), expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(calibrate(logprobs, None)[0], [1 / (1 + np.exp(-1)),
                                                              1 / (1 + np.e)], rtol=1e-12)


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
    msg = f"calibration must be None, 'content_free', 'batch' or 'fit'; got {mode!r}"
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
    msg = f"calibration must be None, 'content_free', 'batch' or 'fit'; got {mode!r}"
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


# ---------------------------------------------------------------- calibration='fit'
def test_fit_scale_and_bias_recovers_a_known_distortion():
    """Labels drawn from softmax(2 * logp + b) are explained by scale 2 and bias b."""
    from nbllm.estimators.calibration import fit_scale_and_bias

    rng = np.random.default_rng(0)
    logp = np_log_softmax(random_logprobs(4000, k=3, seed=1) / 3)
    true = np.array([0.0, 1.0, -0.5])
    p = np_softmax(2.0 * logp + true)
    y = np.array([rng.choice(3, p=row) for row in p])
    fitted = fit_scale_and_bias(logp, y, penalty=0.0)
    assert fitted[0] == pytest.approx(2.0, abs=0.15)
    np.testing.assert_allclose(fitted[1:] - fitted[1], true - true[0], atol=0.15)
    # calibrate() applies exactly that: scale times the normalised logp, plus bias.
    np.testing.assert_allclose(calibrate(logp, "fit", fitted),
                               np_softmax(fitted[0] * logp + fitted[1:]), atol=1e-12)


def test_fit_penalty_keeps_few_labels_near_the_start():
    from nbllm.estimators.calibration import fit_scale_and_bias

    logp = np_log_softmax(random_logprobs(3, k=2, seed=2))
    start = np.array([0.0, 0.7])
    strong = fit_scale_and_bias(logp, np.array([0, 0, 0]), start=start, penalty=1e6)
    np.testing.assert_allclose(strong, [1.0, 0.0, 0.7], atol=1e-4)
    free = fit_scale_and_bias(logp, np.array([0, 0, 0]), start=start, penalty=0.01)
    assert free[2] - free[1] < 0.7 - 0.1  # three 'class 0' answers pull class 1 down


def test_zero_shot_fit_calibration_learns_from_labelled_texts():
    texts = TEXTS * 3
    y = [LABELS[i % 2] for i in range(len(texts))]
    clf = zero_shot(calibration="fit").fit(texts, y, classes=LABELS + ["other"])
    assert list(clf.classes_) == sorted(LABELS + ["other"])
    assert clf.calibration_fit_.shape == (len(clf.classes_) + 1,)
    raw = clf.label_logprobs(TEXTS)
    np.testing.assert_allclose(clf.predict_proba(TEXTS),
                               calibrate(raw, "fit", clf.calibration_fit_), atol=1e-12)
    # The same estimator refits from other labels: the result changes with them.
    flipped = zero_shot(calibration="fit").fit(texts, [LABELS[(i + 1) % 2] for i in
                                                       range(len(texts))],
                                               classes=LABELS + ["other"])
    assert not np.allclose(flipped.calibration_fit_, clf.calibration_fit_)


@pytest.mark.parametrize("X, message", [
    (None, "calibration='fit' learns from labelled texts: pass them to fit(X, y) "
           "(X the texts, y their labels); got no texts"),
    (["one text"], "X and y don't have the same number of samples, found 1 and 2 "
                   "samples, respectively"),
])
def test_zero_shot_fit_calibration_needs_labelled_texts(X, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        zero_shot(calibration="fit").fit(X, LABELS[:2])


def test_few_shot_fit_calibration_learns_from_cross_fitted_examples_and_saves(
        tmp_path, tiny_folder):
    """Each example is scored with examples from the other folds only (never
    itself), and the scale and bias are fitted to those scores."""
    from nbllm import FewShotClassifier
    from nbllm.estimators.few_shot import cross_fitted_logprobs

    clf = few_shot(calibration="fit", max_samples=2).fit(FEW_X, FEW_Y)
    index = {c: i for i, c in enumerate(clf.classes_)}
    y = np.array([index[label] for label in FEW_Y])
    logprobs = cross_fitted_logprobs(clf, FEW_X, FEW_Y)
    start = -content_free_reference(clf.calibration_logprobs())
    np.testing.assert_allclose(clf.calibration_fit_,
                               fit_scale_and_bias(logprobs, y, start=start))
    np.testing.assert_allclose(clf.predict_proba(["x y"]),
                               calibrate(clf.label_logprobs(["x y"]), "fit",
                                         clf.calibration_fit_))
    named = FewShotClassifier(str(tiny_folder), calibration="fit", max_samples=2,
                              progress=False).fit(FEW_X, FEW_Y)
    path = tmp_path / "fs.json"
    named.save(path)
    again = FewShotClassifier.load(path)
    np.testing.assert_allclose(again.calibration_fit_, named.calibration_fit_)
    np.testing.assert_allclose(again.predict_proba(["x y"]), named.predict_proba(["x y"]))
    msg = ("calibration='fit' with few-shot learns from the examples, each scored with "
           "the others as its examples: pass at least 2")
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        few_shot(calibration="fit").fit(FEW_X[:1], FEW_Y[:1])


def test_fit_calibration_classes_must_cover_y():
    with pytest.raises(ValueError, match=re.escape("classes must hold every label of y; "
                                                   "missing 'b'")):
        zero_shot().fit(None, ["a", "b"], classes=["a"])
