"""The estimators are scikit-learn estimators through its own base classes.

They inherit ``BaseEstimator`` (and ``ClassifierMixin``); these tests hold
them to what scikit-learn does with estimators: tags, clone, parameters and
their errors, the repr and the diagram, the not-fitted error, pickling, and
the tools built on them (Pipeline, cross_val_score, StratifiedKFold picked
for classifiers).  scikit-learn's own checks run in test_sklearn_checks.py.
"""

import pickle
import re

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import StratifiedKFold, check_cv, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import get_tags

from nbllm import FewShotClassifier, MultiLabelZeroShotClassifier, ZeroShotClassifier
from nbllm.engine.loading import models
from nbllm.estimators.prompt_mode import PromptMode
from nbllm.estimators.single_label import _SingleLabelBase

CLASSES = [ZeroShotClassifier, FewShotClassifier, MultiLabelZeroShotClassifier]
X = ["good movie", "I love it", "bad movie", "I hate it"] * 2
Y = ["pos", "pos", "neg", "neg"] * 2


@pytest.mark.parametrize("cls", CLASSES)
def test_scikit_learn_sees_a_classifier(cls):
    clf = cls()
    assert is_classifier(clf)
    tags = get_tags(clf)
    assert tags.estimator_type == "classifier"
    assert tags.target_tags.required
    assert tags.classifier_tags is not None
    # cross-validation stratifies for classifiers
    assert isinstance(check_cv(2, Y, classifier=is_classifier(clf)), StratifiedKFold)


@pytest.mark.parametrize("cls", CLASSES)
def test_get_params_lists_every_init_argument(cls):
    import inspect

    names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert sorted(cls().get_params()) == sorted(names)
    assert cls(prompt="{text} {labels}").get_params()["prompt"] == "{text} {labels}"


def test_set_params_sets_and_rejects_unknown_names_as_scikit_learn_does():
    clf = ZeroShotClassifier()
    assert clf.set_params(prompt="a {text} {labels}", progress=False) is clf
    assert clf.prompt == "a {text} {labels}" and clf.progress is False
    assert clf.set_params() is clf
    valid = sorted(ZeroShotClassifier().get_params())
    with pytest.raises(ValueError, match=re.escape(
            f"Invalid parameter 'temperature' for estimator {clf}. "
            f"Valid parameters are: {valid!r}.")):
        clf.set_params(temperature=2)


def test_nested_parameters_reach_an_estimator_parameter():
    pipe = make_pipeline(FunctionTransformer(), ZeroShotClassifier(progress=False))
    pipe.set_params(zeroshotclassifier__prompt="b {text} {labels}")
    assert pipe[-1].prompt == "b {text} {labels}"
    assert pipe.get_params()["zeroshotclassifier__prompt"] == "b {text} {labels}"


def test_clone_copies_parameters_and_shares_a_model_object(tiny_model, tiny_tok):
    clf = ZeroShotClassifier(model=tiny_model, tokenizer=tiny_tok, prompt="c {text} {labels}")
    twin = clone(clf)
    assert twin is not clf and twin.prompt == clf.prompt
    assert twin.model is tiny_model  # weights are shared, not copied


def test_repr_shows_changed_parameters_only():
    assert repr(ZeroShotClassifier()) == "ZeroShotClassifier()"
    assert (repr(ZeroShotClassifier(prompt="d {text} {labels}", progress=False))
            == "ZeroShotClassifier(progress=False, prompt='d {text} {labels}')")
    long = repr(ZeroShotClassifier(prompt="x" * 2000 + " {text} {labels}"))
    assert len(long) < 720 and "..." in long  # scikit-learn shortens it


def test_repr_names_a_model_object_by_its_class(tiny_model, tiny_tok):
    text = repr(ZeroShotClassifier(model=tiny_model, tokenizer=tiny_tok))
    assert text == (f"ZeroShotClassifier(model='LlamaForCausalLM', "
                    f"tokenizer={type(tiny_tok).__name__!r})")


def test_repr_only_reads_the_estimator(tiny_model, tiny_tok):
    # Another thread reading clf.model during repr must see the model itself:
    # repr sets no attribute of the estimator, even for a moment.
    set_names = []

    class Watched(ZeroShotClassifier):
        def __setattr__(self, name, value):
            set_names.append((self, name))
            super().__setattr__(name, value)

    clf = Watched(model=tiny_model, tokenizer=tiny_tok)
    before = dict(vars(clf))
    set_names.clear()
    text = repr(clf)
    assert "model='LlamaForCausalLM'" in text
    assert [name for owner, name in set_names if owner is clf] == []
    assert vars(clf) == before and clf.model is tiny_model and clf.tokenizer is tiny_tok


def test_the_notebook_diagram_is_scikit_learns_and_escapes_the_prompt():
    html = ZeroShotClassifier(prompt="<script>alert(1)</script> {text} {labels}")._repr_html_()
    assert "sk-top-container" in html  # scikit-learn's diagram
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html


def test_predicting_before_fit_raises_scikit_learns_error():
    with pytest.raises(NotFittedError, match=re.escape(
            "This ZeroShotClassifier instance is not fitted yet. Call 'fit' with "
            "appropriate arguments before using this estimator.")):
        ZeroShotClassifier().predict(["x"])


def test_cross_val_score_and_pipeline_run(tiny_folder):
    clf = ZeroShotClassifier(tiny_folder, progress=False)
    scores = cross_val_score(clf, X, Y, cv=2)
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))
    pipe = make_pipeline(FunctionTransformer(lambda xs: [x.lower() for x in xs]), clf)
    assert pipe.fit(X, Y).score(X, Y) == pytest.approx(
        np.mean(clf.fit(X, Y).predict([x.lower() for x in X]) == np.array(Y)))


def test_an_unfitted_estimator_pickles(tiny_folder):
    clf = ZeroShotClassifier(tiny_folder, prompt="e {text} {labels}")
    again = pickle.loads(pickle.dumps(clf))
    assert again.get_params() == clf.get_params()


@pytest.mark.parametrize("cls", CLASSES)
def test_the_estimators_inherit_scikit_learns_base_classes(cls):
    assert issubclass(cls, BaseEstimator) and issubclass(cls, ClassifierMixin)
    # the mixin comes before BaseEstimator, as scikit-learn asks
    mro = cls.__mro__
    assert mro.index(ClassifierMixin) < mro.index(BaseEstimator)


def test_zero_and_few_shot_share_a_base_class():
    assert issubclass(ZeroShotClassifier, _SingleLabelBase)
    assert issubclass(FewShotClassifier, _SingleLabelBase)
    assert not issubclass(FewShotClassifier, ZeroShotClassifier)
    zero = set(ZeroShotClassifier().get_params())
    assert zero < set(FewShotClassifier().get_params())


def test_y_that_is_not_classes_is_rejected(tiny_folder):
    clf = ZeroShotClassifier(tiny_folder, progress=False)
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        clf.fit(None, [0.5, 1.25, 2.0])
    with pytest.raises(ValueError, match="Input y contains infinity"):
        clf.fit(None, [1.0, np.inf])
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        MultiLabelZeroShotClassifier(tiny_folder, progress=False).fit(None, [0.5, 1.5])


def test_predict_leaves_the_estimators_attributes_alone(tiny_folder):
    clf = ZeroShotClassifier(tiny_folder, progress=False, calibration="content_free")
    clf.fit(None, ["neg", "pos"])
    before = dict(clf.__dict__)
    clf.predict(["good movie"])
    clf.predict_proba(["bad movie"])
    assert clf.__dict__ == before
    assert clf.n_cache_misses_ > 0  # the counters still count


def test_a_fitted_estimator_pickles_and_predicts_alike(tiny_folder):
    clf = ZeroShotClassifier(tiny_folder, progress=False).fit(X, Y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.classes_, clf.classes_)
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X), atol=1e-6)


def test_checking_fitted_never_loads_the_model(tiny_folder, monkeypatch):
    """An unpickled estimator loads its model on first use, not to be checked."""
    from sklearn.utils.validation import check_is_fitted

    from nbllm.estimators.base import check_fitted

    clf = ZeroShotClassifier(tiny_folder, progress=False).fit(None, Y)
    again = pickle.loads(pickle.dumps(clf))

    def boom(*args, **kwargs):
        raise AssertionError("checking fitted state loaded a model")

    monkeypatch.setattr(models, "get_model", boom)
    check_fitted(again)
    check_is_fitted(again)
    again.prompt_mode()
    assert "loaded_" not in vars(again)
    with pytest.raises(NotFittedError):
        check_fitted(pickle.loads(pickle.dumps(ZeroShotClassifier(tiny_folder))))


def test_prompt_mode_is_resolved_once_into_a_frozen_object(tiny_folder):
    import dataclasses

    clf = ZeroShotClassifier(tiny_folder, prompt="Text: {text} ({labels})\nLabel:  ",
                             progress=False).fit(None, ["neg", "pos"])
    mode = clf.prompt_mode()
    assert isinstance(mode, PromptMode) and mode is clf.prompt_mode_
    assert mode == PromptMode("raw", " ", 2, "sent raw, the label after a space "
                              "(use_chat_template='auto')")
    with pytest.raises(dataclasses.FrozenInstanceError):
        mode.cut = 0
    # the methods read it: the template's two trailing spaces are cut
    assert clf.get_prompt("hi").endswith("Label:")
    assert clf.use_chat_template_ is False
    chat = ZeroShotClassifier(tiny_folder, use_chat_template=True,
                              progress=False).fit(None, ["neg", "pos"])
    assert chat.prompt_mode() == PromptMode(
        "chat", "", 0, "sent as a chat message (use_chat_template=True)")
    assert chat.prompt_mode().chat and chat.use_chat_template_ is True

