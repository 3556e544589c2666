"""The estimators speak scikit-learn's protocol without inheriting from it.

They are duck-typed (nbllm.estimators.sklearn_api), so that fitting and
predicting never import scikit-learn; these tests hold them to what
scikit-learn itself does with estimators: tags, clone, parameters and their
errors, the repr and the diagram, the not-fitted error, and the tools built
on them (Pipeline, cross_val_score, StratifiedKFold picked for classifiers).
"""

import pickle
import re

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import StratifiedKFold, check_cv, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import get_tags

from nbllm import FewShotClassifier, MultiLabelZeroShotClassifier, ZeroShotClassifier

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
    assert len(long) <= 703 and "..." in long


def test_repr_names_a_model_object_by_its_class(tiny_model, tiny_tok):
    text = repr(ZeroShotClassifier(model=tiny_model, tokenizer=tiny_tok))
    assert text == (f"ZeroShotClassifier(model='LlamaForCausalLM', "
                    f"tokenizer={type(tiny_tok).__name__!r})")


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
