"""Saving fitted classifiers: light pickles (pickle, joblib, cloudpickle) and save/load.

Round trips load in a fresh Python process and must give the same probabilities
(within 1e-6); a model from a spec is not in the pickle and comes back through
the registry, shared by every unpickled copy.
"""

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import cloudpickle
import joblib
import numpy as np
import pytest

from nbllm import FewShotClassifier, MultiLabelZeroShotClassifier, ZeroShotClassifier
from nbllm.engine.loading import models
from tiny import get_tiny_model, get_tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LABELS = ["negative", "positive", "neutral"]
X = ["I love it", "I hate it", "fine", "great stuff", "awful service", "so so"]
Y = ["positive", "negative", "neutral", "positive", "negative", "neutral"]
TEXTS = ["what a day", "never again", "ok I guess"]
TESTS_DIR = Path(__file__).resolve().parent


def variants(folder):
    common = dict(device="cpu", dtype="float32", progress=False)
    return {
        "zero": ZeroShotClassifier(folder, **common).fit(None, LABELS),
        "zero-content-free": ZeroShotClassifier(folder, calibration="content_free",
                                                **common).fit(None, LABELS),
        "zero-fit": ZeroShotClassifier(folder, calibration="fit", **common).fit(
            X, Y, classes=LABELS + ["other"]),
        "zero-label-map": ZeroShotClassifier(folder, label_map={"pos": "positive",
                                                                "neg": "negative"},
                                             **common).fit(None, ["pos", "neg"]),
        "few-stratified": FewShotClassifier(folder, max_samples=3, random_state=0,
                                            example_selection="stratified",
                                            **common).fit(X, Y),
        "few-random-no-seed": FewShotClassifier(folder, max_samples=2, random_state=None,
                                                example_selection="random",
                                                **common).fit(X, Y),
        "few-similar": FewShotClassifier(folder, max_samples=2, example_selection="similar",
                                         **common).fit(X, Y, classes=LABELS + ["other"]),
        "multi": MultiLabelZeroShotClassifier(folder, **common).fit(None, [["a"], ["b"]]),
    }


def probas(clf):
    return np.asarray(clf.predict_proba(TEXTS))


FRESH = """
import json, pickle, sys
import numpy as np
sys.path.insert(0, {tests!r})
from nbllm.engine.loading import models
out = {{}}
for name, path in json.loads(sys.argv[1]).items():
    with open(path, "rb") as f:
        clf = {loader}(f)
    out[name] = np.asarray(clf.predict_proba({texts!r})).tolist()
out["_loads"] = dict(models.load_counts)
print(json.dumps(out))
"""


def in_fresh_process(paths, loader="pickle.load", setup=""):
    code = setup + FRESH.format(tests=str(TESTS_DIR), loader=loader, texts=TEXTS)
    done = subprocess.run([sys.executable, "-c", code, json.dumps(paths)],
                          capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1",
                               "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("dump, loader, setup", [
    (pickle.dump, "pickle.load", ""),
    (joblib.dump, "joblib.load", "import joblib\n"),
    (cloudpickle.dump, "pickle.load", ""),
])
def test_every_variant_round_trips_in_a_fresh_process(tiny_folder, tmp_path, dump, loader,
                                                      setup):
    fitted = variants(tiny_folder)
    paths = {}
    for name, clf in fitted.items():
        paths[name] = str(tmp_path / f"{name}.pkl")
        if dump is joblib.dump:
            joblib.dump(clf, paths[name])
        else:
            with open(paths[name], "wb") as f:
                dump(clf, f)
        assert Path(paths[name]).stat().st_size < 200_000  # no weights inside
    out = in_fresh_process(paths, loader, setup)
    for name, clf in fitted.items():
        np.testing.assert_allclose(out[name], probas(clf), atol=1e-6, err_msg=name)
    # One model load for all eight copies: they share the registry's entry.
    assert out["_loads"] == {tiny_folder: 1}


def test_unpickled_copies_share_one_model_loaded_on_first_use(tiny_folder):
    clf = variants(tiny_folder)["few-stratified"]
    blob = pickle.dumps(clf)
    a, b = pickle.loads(blob), pickle.loads(blob)
    assert "loaded_" not in a.__dict__  # not loaded yet
    assert a.examples_ == clf.examples_ and list(a.classes_) == list(clf.classes_)
    np.testing.assert_allclose(probas(a), probas(clf), atol=1e-9)
    assert a.loaded_ is b.loaded_ is models.get_model(tiny_folder, "cpu", "float32")


def test_unfitted_estimators_still_pickle_as_parameters():
    clf = ZeroShotClassifier("some-spec", prompt="{text} {labels}")
    again = pickle.loads(pickle.dumps(clf))
    assert again.get_params() == clf.get_params()


def test_a_model_object_is_pickled_with_the_estimator(tiny_folder):
    model, tok = get_tiny_model(), get_tiny_tokenizer()
    clf = ZeroShotClassifier(model=model, tokenizer=tok, progress=False).fit(None, LABELS)
    again = pickle.loads(pickle.dumps(clf))
    assert again.model is not model  # a copy travelled in the pickle
    np.testing.assert_allclose(probas(again), probas(clf), atol=1e-6)


def test_a_changed_model_under_the_same_spec_warns(tiny_folder):
    clf = variants(tiny_folder)["zero"]
    state = clf.__getstate__()
    state["_fitted_fingerprint"] = "another model"
    again = ZeroShotClassifier.__new__(ZeroShotClassifier)
    again.__setstate__(state)
    with pytest.warns(UserWarning, match=re.escape(
            f"the model under {tiny_folder!r} is not the one this classifier was "
            "fitted with")):
        again.predict_proba(TEXTS)


# ------------------------------------------------------------------ save / load
def test_save_and_load_give_the_same_probabilities(tiny_folder, tmp_path):
    for name, clf in variants(tiny_folder).items():
        path = tmp_path / f"{name}.json"
        clf.save(path)
        text = path.read_text()
        assert json.loads(text)["format"] == "nbllm-classifier"
        again = type(clf).load(path)
        np.testing.assert_allclose(probas(again), probas(clf), atol=1e-9, err_msg=name)
        if hasattr(clf, "examples_") and clf.examples_ is not None:
            assert again.examples_ == clf.examples_


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not an nbllm classifier file (Expecting property name"),
    ('{"format": "something-else"}',
     "is not an nbllm classifier file (no 'format': 'nbllm-classifier')"),
    ('{"format": "nbllm-classifier", "version": 99}',
     "has format version 99; this nbllm reads version 1"),
])
def test_a_damaged_or_foreign_file_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(f"{str(path)!r} {message}")):
        ZeroShotClassifier.load(path)


def test_load_refuses_another_class_and_unasked_remote_code(tiny_folder, tmp_path):
    path = tmp_path / "few.json"
    variants(tiny_folder)["few-stratified"].save(path)
    with pytest.raises(ValueError, match=re.escape(
            f"{str(path)!r} holds a 'FewShotClassifier', not a ZeroShotClassifier")):
        ZeroShotClassifier.load(path)
    payload = json.loads(path.read_text())
    payload["params"]["trust_remote_code"] = True
    path.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match=re.escape(
            "asks for trust_remote_code=True (the model runs code from its own files); "
            "pass trust_remote_code=True to load() to allow it")):
        FewShotClassifier.load(path)


def test_save_refuses_a_model_object(tmp_path):
    clf = ZeroShotClassifier(model=get_tiny_model(), tokenizer=get_tiny_tokenizer(),
                             progress=False).fit(None, LABELS)
    with pytest.raises(ValueError, match=re.escape(
            "save() writes parameters as JSON, and a model object is not one")):
        clf.save(tmp_path / "c.json")


@pytest.mark.slow
def test_the_embedded_model_classifier_pickles_small(real_model, tmp_path, monkeypatch):
    monkeypatch.setenv("NBLLM_CACHE_DIR", real_model.cache_dir)
    clf = ZeroShotClassifier(device="cpu", dtype="float32", progress=False).fit(
        None, ["negative", "positive"])
    path = tmp_path / "clf.joblib"
    joblib.dump(clf, path)
    assert path.stat().st_size < 1_000_000
    out = in_fresh_process({"clf": str(path)}, "joblib.load", "import joblib\n")
    np.testing.assert_allclose(out["clf"], probas(clf), atol=1e-6)


# ------------------------------------------------------------------ notebook buttons
def test_the_panel_and_the_labeler_save_their_classifier(tiny_folder, tmp_path):
    import pandas as pd

    from nbllm.notebook.labeler.labeler import Labeler
    from nbllm.notebook.labeler.widget import LabelerWidget
    from nbllm.notebook.panel.panel import Panel

    panel = Panel(threaded=False)
    panel.model.value = tiny_folder
    panel.labels.value = ["negative", "positive"]
    panel.save_path.value = str(tmp_path / "panel.json")
    panel.save_button.click()
    assert panel.status.value.startswith("saved to ")
    saved = ZeroShotClassifier.load(tmp_path / "panel.json")
    np.testing.assert_allclose(probas(saved), probas(panel._estimator()), atol=1e-9)

    frame = pd.DataFrame({"text": X})
    lab = Labeler(frame, "text", LABELS, model=tiny_folder, path=tmp_path / "a.json")
    lab.answer(0, "positive")
    lab.answer(1, "negative")
    lab.improve()
    widget = LabelerWidget(lab, threaded=False)
    assert widget.save_path.value == str(tmp_path / "a.classifier.json")
    widget.save_button.click()
    again = ZeroShotClassifier.load(tmp_path / "a.classifier.json")
    np.testing.assert_allclose(probas(again), probas(lab.estimator_), atol=1e-9)
