"""Every option is checked once, by its one definition in nbllm.options.

``fit`` checks each parameter the estimator takes with the option table's
rule (scikit-learn's ``_parameter_constraints`` idea), and every way in runs
the same rule at its entry: a bad value raises the same ``OptionError``
subclass, naming the option, whichever estimator or way in it came through.
Missing labels and labels that differ only in spaces are refused with their
positions.  The ``y=None`` message satisfies skorch's own test and
scikit-learn's check at once.
"""

import re

import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError

import nbllm
from nbllm import FewShotClassifier, MultiLabelZeroShotClassifier, ZeroShotClassifier, options
from nbllm.exceptions import LabelsError, OptionError, PromptError
from tiny import get_tiny_model, get_tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")

CLASSIFIERS = [ZeroShotClassifier, FewShotClassifier, MultiLabelZeroShotClassifier]
# One bad value of each kind per option: a wrong type, and a value of the
# right type that the option does not take.
BAD_VALUES = {
    "model_name": [5, ["m"]],
    "model": ["some/model"],
    "tokenizer": ["some/model"],
    "prompt": [5, ["Text: {text}"]],
    "probas_sum_to_1": ["yes", None],
    "device": [3, "gpu"],
    "dtype": [32, "fp32"],
    "error_low_prob": [None, "bad"],
    "threshold_low_prob": [True, "0.5", 1.5, -0.1],
    "use_caching": ["no", None],
    "use_chat_template": ["yes", None],
    "batch_size": ["x", 0, 2.0],
    "progress": ["bad", None],
    "cache_dir": [5],
    "calibration": [True, "yes"],
    "label_map": [["pos"], {"pos": ""}],
    "truncation": [None, "top"],
    "trust_remote_code": ["yes", None],
    "max_samples": ["2", 0, True],
    "example_selection": [None, "nearest"],
    "example_placement": [None, "end"],
    "random_state": ["seed", -1, 1.5],
    "example_template": [None, 5],
    "threshold": [None, "0.5", 1.5, True],
}
FIT = {
    ZeroShotClassifier: (None, ["pos", "neg"]),
    FewShotClassifier: (["good", "bad"], ["pos", "neg"]),
    MultiLabelZeroShotClassifier: (None, [["pos"], ["neg"]]),
}


def _cases():
    for cls in CLASSIFIERS:
        for option in options.taken_by(cls.__name__):
            for value in BAD_VALUES[option.name]:
                yield pytest.param(cls, option, value,
                                   id=f"{cls.__name__}-{option.name}-{value!r}")


def test_every_option_of_every_classifier_has_bad_values():
    taken = {o.name for cls in CLASSIFIERS for o in options.taken_by(cls.__name__)}
    assert taken == set(BAD_VALUES)


@pytest.mark.parametrize("cls, option, value", list(_cases()))
def test_fit_refuses_every_bad_value_of_every_option(cls, option, value, monkeypatch):
    from nbllm.engine.loading import models

    def never(*args, **kwargs):
        raise AssertionError("a model was loaded for a bad option")

    monkeypatch.setattr(models, "_load", never)
    if option.name == "model_name":
        params = {"model_name": value}
    else:
        params = {"model": get_tiny_model(), "tokenizer": get_tiny_tokenizer(),
                  option.name: value}
    with pytest.raises(OptionError) as info:
        cls(**params).fit(*FIT[cls])
    exc = info.value
    assert type(exc) is option.error  # the same class for every estimator
    assert exc.option == option.name and exc.named == {option.name: value}
    assert str(exc).startswith(f"{option.name} must be "), str(exc)


@pytest.mark.parametrize("kwargs, message", [
    (dict(use_caching="no"), "use_caching must be True or False; got 'no'"),
    (dict(probas_sum_to_1="yes"), "probas_sum_to_1 must be True or False; got 'yes'"),
    (dict(threshold_low_prob=True),
     "threshold_low_prob must be between 0 and 1, got True instead"),
    (dict(device="gpu"), "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got 'gpu'"),
    (dict(dtype="fp32"), "dtype must be one of auto, float32, float16, bfloat16; got 'fp32'"),
    (dict(cache_dir=5), "cache_dir must be a folder path or None; got 5"),
    (dict(label_map={"pos": ""}),
     "label_map must be a dict from class to the non-empty word the model scores, e.g. "
     "{'pos': 'positive'}; got {'pos': ''}"),
    (dict(prompt=5), "prompt must be a string or None; got int"),
    (dict(model="some/model"),
     "model must be a loaded model object or None; give a name as model_name; got str"),
])
def test_the_options_that_slipped_through_are_refused_with_exact_messages(kwargs, message):
    params = dict(model=get_tiny_model(), tokenizer=get_tiny_tokenizer())
    params.update(kwargs)
    with pytest.raises(OptionError, match=f"^{re.escape(message)}$"):
        ZeroShotClassifier(**params).fit(None, ["pos", "neg"])


def test_the_prompt_error_is_a_prompt_error():
    assert options.PROMPT.error is PromptError


def test_multi_label_threshold_is_the_tables_rule():
    clf = MultiLabelZeroShotClassifier(model=get_tiny_model(),
                                       tokenizer=get_tiny_tokenizer(), threshold=True)
    with pytest.raises(OptionError, match=re.escape(
            "threshold must be between 0 and 1; got True")):
        clf.fit(None, [["pos"]])


def test_a_good_value_passes_every_check():
    for option in options.TABLE:
        if option.name not in ("model", "tokenizer"):
            assert option.check(option.default) == option.default, option


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_names(device):
    assert options.DEVICE.check(device) == device


def test_the_panel_offers_the_engines_device_names():
    from nbllm.engine.loading.devices import DEVICE_NAMES
    from nbllm.notebook.panel import Panel

    assert Panel(threaded=False).device.options == DEVICE_NAMES


# --------------------------------------------------- each way in, its own words
FRAME = pd.DataFrame({"text": ["good", "bad"]})


@pytest.mark.parametrize("call, message", [
    (lambda: FRAME.llm.classify("text", ["a", "b"], threshold=True),
     "threshold must be between 0 and 1; got True"),
    (lambda: nbllm.classify(["x"], ["a", "b"], raw="yes"),
     "raw must be True or False; got 'yes'"),
    (lambda: nbllm.classify(["x"], ["a", "b"], multi_label=True, raw=True),
     "multi_label=True gives each label its own yes/no probability; raw and calibration "
     "do not apply"),
    (lambda: nbllm.classify(["x"], ["a", "b"], device=3),
     "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got 3"),
])
def test_the_notebook_functions_say_options_in_their_keywords(call, message):
    with pytest.raises(OptionError, match=f"^{re.escape(message)}$"):
        call()


def test_the_magic_checks_max_samples_by_the_table_only(ip):
    message = "--max-samples must be a positive integer; got 0"
    with pytest.raises(UsageError, match=f"^{re.escape(message)}$"):
        ip.run_cell_magic("fewshot", "-k 0", "a: b\n---\nx")


def test_ddf_llm_fails_at_the_entry_before_building_a_graph(monkeypatch):
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(FRAME, npartitions=1)

    def never(*args, **kwargs):
        raise AssertionError("a graph was built for a bad option")

    monkeypatch.setattr(type(ddf), "map_partitions", never)
    with pytest.raises(OptionError, match=re.escape(
            "truncation must be 'right', 'left', 'middle' or 'error'; got 'top'")):
        ddf.llm.classify("text", ["a", "b"], truncation="top")
    with pytest.raises(LabelsError, match=re.escape(
            "labels differ only in spaces around them")):
        ddf.llm.classify("text", ["yes", "yes "])


# ------------------------------------------------------------ missing labels
MISSING_Y = ("1 missing label(s) (None or NaN) in y at position(s) 1; drop those rows "
             "or fill in their labels")


@pytest.mark.parametrize("missing", [None, float("nan"), np.nan])
def test_missing_labels_in_y_are_refused_by_position(missing):
    tiny = dict(model=get_tiny_model(), tokenizer=get_tiny_tokenizer())
    with pytest.raises(LabelsError, match=f"^{re.escape(MISSING_Y)}$"):
        ZeroShotClassifier(**tiny).fit(None, ["pos", missing, "neg"])
    with pytest.raises(LabelsError, match=f"^{re.escape(MISSING_Y)}$"):
        FewShotClassifier(**tiny).fit(["a", "b", "c"], ["pos", missing, "neg"])
    with pytest.raises(LabelsError, match=f"^{re.escape(MISSING_Y)}$"):
        MultiLabelZeroShotClassifier(**tiny).fit(None, [["pos"], ["neg", missing], []])
    with pytest.raises(LabelsError, match=f"^{re.escape(MISSING_Y)}$"):
        ZeroShotClassifier(**tiny).fit(None, pd.Series(["pos", missing, "neg"]))


def test_missing_labels_in_examples_are_refused_by_position():
    examples = pd.DataFrame({"text": ["a", "b", "c"], "label": ["pos", "neg", None]})
    message = ("1 missing label(s) (None or NaN) in the examples' labels at position(s) 2; "
               "drop those rows or fill in their labels")
    with pytest.raises(LabelsError, match=f"^{re.escape(message)}$"):
        FRAME.llm.classify("text", examples=examples)
    with pytest.raises(LabelsError, match=f"^{re.escape(message)}$"):
        nbllm.classify(["x"], ["pos", "neg"], examples=[("a", "pos"), ("b", "neg"),
                                                        ("c", float("nan"))])


SPACED = ("labels differ only in spaces around them: 'yes' and 'yes '; remove the spaces, "
          "or they are taken as different labels")


def test_labels_that_differ_only_in_spaces_are_refused(tiny_folder):
    tiny = dict(model=get_tiny_model(), tokenizer=get_tiny_tokenizer())
    with pytest.raises(LabelsError, match=f"^{re.escape(SPACED)}$"):
        ZeroShotClassifier(**tiny).fit(None, ["yes", "yes ", "no"])
    with pytest.raises(LabelsError, match=f"^{re.escape(SPACED)}$"):
        nbllm.classify(["x"], ["yes", "yes "])
    # Examples' labels, with no labels= to check them at the entry: fit says it.
    with pytest.raises(LabelsError, match=f"^{re.escape(SPACED)}$"):
        FRAME.llm.classify("text", examples=[("a", "yes"), ("b", "yes "), ("c", "no")],
                           model=tiny_folder)


# ------------------------------------------------------------ y=None (item 8)
def test_y_none_satisfies_skorchs_own_test():
    skorch_tests = pytest.importorskip("skorch.tests.llm.test_llm_classifier")
    tiny = dict(model=get_tiny_model(), tokenizer=get_tiny_tokenizer())
    skorch_tests.TestZeroShotClassifier().test_fit_y_none_raises(
        classifier_cls=ZeroShotClassifier, **tiny)
    skorch_tests.TestFewShotClassifier().test_fit_y_none_raises(
        classifier_cls=FewShotClassifier, X=["good", "bad"], **tiny)


@pytest.mark.parametrize("cls", CLASSIFIERS, ids=lambda c: c.__name__)
def test_y_none_satisfies_scikit_learns_check(cls):
    from sklearn.utils.estimator_checks import check_requires_y_none

    estimator = cls(model=get_tiny_model(), tokenizer=get_tiny_tokenizer(), progress=False)
    # It raises unless fit(X, None) says its phrase in a ValueError.
    check_requires_y_none(cls.__name__, estimator)
    with pytest.raises(LabelsError) as info:
        estimator.fit(["a text"], None)
    assert str(info.value) == (
        f"{cls.__name__} requires y to be passed, but the target y is None; y cannot be "
        "None, as it is used to infer the existing classes")
