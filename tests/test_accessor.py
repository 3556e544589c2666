"""The pandas accessors df.llm and series.llm on the tiny model.

Outputs are compared with a fresh, uncached estimator on the same texts.
"""

import copy
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

import nbllm
from nbllm.engine.loading import models
from nbllm.notebook import classify as api
from nbllm.notebook import session
from nbllm.notebook.pandas_accessor import DataFrameLLMAccessor, SeriesLLMAccessor
from nbllm.notebook.display import GenerationPreview
from nbllm.estimators import FewShotClassifier, ZeroShotClassifier

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")

LABELS = ["positive", "negative"]
CLASSES = ["negative", "positive"]
TEXTS = [
    "The train was late again this morning.",
    "I love it.",
    "What a wonderful surprise, thank you so much!",
]
EXAMPLES = [
    ("Customer support solved my problem quickly", "positive"),
    ("The package arrived damaged", "negative"),
    ("Our team won the match", "positive"),
    ("The battery dies after two hours", "negative"),
]


@pytest.fixture
def df():
    """Texts on a shuffled, non-default string index, plus an unrelated column."""
    return pd.DataFrame(
        {"text": TEXTS, "stars": [1, 5, 4]},
        index=pd.Index(["c", "a", "b"], name="id"),
    )


def zero(folder, labels=LABELS, **kwargs):
    return ZeroShotClassifier(model_name=folder, use_caching=False, progress=False,
                              **kwargs).fit(None, labels)


def few(folder, pairs, max_samples=5):
    clf = FewShotClassifier(model_name=folder, max_samples=max_samples, random_state=0,
                            use_caching=False, progress=False)
    return clf.fit([t for t, _ in pairs], [y for _, y in pairs])


def assert_output(out, clf, texts, index):
    classes = list(clf.classes_)
    assert list(out.columns) == ["label"] + [f"proba_{c}" for c in classes]
    assert out.index.equals(index)
    np.testing.assert_allclose(out[[f"proba_{c}" for c in classes]].to_numpy(),
                               clf.predict_proba(texts), rtol=0, atol=1e-9)
    assert out["label"].tolist() == list(clf.predict(texts))


# ---------------------------------------------------------- registration
def test_import_registers_the_accessors(df):
    assert isinstance(df.llm, DataFrameLLMAccessor)
    assert isinstance(df["text"].llm, SeriesLLMAccessor)
    assert df.llm._obj is df
    assert "llm" in pd.DataFrame._accessors
    assert "llm" in pd.Series._accessors


def test_plain_import_registers_df_llm_without_torch():
    code = (
        "import sys, pandas as pd, nbllm\n"
        "df = pd.DataFrame({'text': ['x']})\n"
        "df.llm; df.text.llm\n"
        "assert 'torch' not in sys.modules, 'torch'\n"
        "assert 'transformers' not in sys.modules, 'transformers'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)

def _run(code):
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_pandas_imported_by_another_package_gets_df_llm():
    _run(
        "import nbllm\n"
        "import pandas.testing\n"
        "import sys\n"
        "df = sys.modules['pandas'].DataFrame({'text': ['x']})\n"
        "assert type(df.llm).__name__ == 'DataFrameLLMAccessor'\n"
    )


def test_accessor_construction_loads_no_model(df, monkeypatch):
    before = dict(models.load_counts)

    def boom(*args, **kwargs):
        raise AssertionError("the accessor built an estimator")

    monkeypatch.setattr(api, "build_estimator", boom)
    monkeypatch.setattr(models, "get_model", boom)
    for _ in range(3):
        df.llm
        df["text"].llm
    assert models.load_counts == before


# --------------------------------------------------------------- classify
def test_classify_matches_the_estimator_on_the_same_index(df, tiny_folder):
    original = copy.deepcopy(df)
    out = df.llm.classify("text", labels=LABELS, model=tiny_folder)
    assert isinstance(out, pd.DataFrame)
    assert out is not df
    assert_output(out, zero(tiny_folder), TEXTS, df.index)
    assert list(out.columns) == ["label", "proba_negative", "proba_positive"]
    assert out.index.name == "id"
    pdt.assert_frame_equal(df, original)
    np.testing.assert_allclose(out[["proba_negative", "proba_positive"]].sum(axis=1), 1.0,
                               atol=1e-12)


def test_classify_positional_labels_and_integer_index(tiny_folder):
    frame = pd.DataFrame({"body": TEXTS}, index=[7, 2, 30])
    out = frame.llm.classify("body", LABELS, model=tiny_folder)
    assert_output(out, zero(tiny_folder), TEXTS, frame.index)
    assert out.loc[2, "label"] == zero(tiny_folder).predict([TEXTS[1]])[0]


def test_classify_proba_false_gives_only_the_label(df, tiny_folder):
    out = df.llm.classify("text", labels=LABELS, model=tiny_folder, proba=False)
    assert list(out.columns) == ["label"]
    assert out.index.equals(df.index)
    assert out["label"].tolist() == list(zero(tiny_folder).predict(TEXTS))


def test_classify_raw_adds_label_mass(df, tiny_folder):
    out = df.llm.classify("text", labels=LABELS, model=tiny_folder, raw=True)
    assert list(out.columns) == ["label", "proba_negative", "proba_positive", "label_mass"]
    expected = zero(tiny_folder, probas_sum_to_1=False).predict_proba(TEXTS)
    np.testing.assert_allclose(out[["proba_negative", "proba_positive"]].to_numpy(),
                               expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(out["label_mass"].to_numpy(), expected.sum(axis=1),
                               rtol=1e-12, atol=0)
    assert (out["label_mass"] < 0.99).all()
    only = df.llm.classify("text", labels=LABELS, model=tiny_folder, raw=True, proba=False)
    assert list(only.columns) == ["label", "label_mass"]


def test_classify_with_a_prompt(df, tiny_folder):
    template = "Review: {text}\nOptions: {labels}\nAnswer:"
    out = df.llm.classify("text", labels=LABELS, model=tiny_folder, prompt=template)
    assert_output(out, zero(tiny_folder, prompt=template), TEXTS, df.index)


@pytest.mark.parametrize("dtype", [None, object])
def test_classify_missing_texts_give_nan_and_a_warning(tiny_folder, dtype):
    values = [TEXTS[0], None, TEXTS[1], float("nan"), TEXTS[2]]
    index = ["v", "w", "x", "y", "z"]
    frame = pd.DataFrame({"text": pd.Series(values, index=index, dtype=dtype)})
    original = copy.deepcopy(frame)
    with pytest.warns(UserWarning, match=re.escape(
            "2 missing text(s) (None or NaN) were skipped; their results are NaN")):
        out = frame.llm.classify("text", labels=LABELS, model=tiny_folder)
    assert out.index.equals(frame.index)
    missing = out.loc[["w", "y"]]
    assert missing.isna().all().all()
    present = out.loc[["v", "x", "z"]]
    clf = zero(tiny_folder)
    np.testing.assert_allclose(present[["proba_negative", "proba_positive"]].to_numpy(),
                               clf.predict_proba(TEXTS), rtol=0, atol=1e-9)
    assert present["label"].tolist() == list(clf.predict(TEXTS))
    pdt.assert_frame_equal(frame, original)


def test_classify_few_shot_with_examples(df, tiny_folder):
    for examples in (list(EXAMPLES), pd.DataFrame(EXAMPLES, columns=["text", "label"])):
        out = df.llm.classify("text", model=tiny_folder, examples=examples, max_samples=3)
        assert_output(out, few(tiny_folder, EXAMPLES, max_samples=3), TEXTS, df.index)
    default = df.llm.classify("text", LABELS, model=tiny_folder, examples=EXAMPLES)
    assert_output(default, few(tiny_folder, EXAMPLES, max_samples=5), TEXTS, df.index)


def test_classify_reuses_a_fitted_estimator(df, tiny_folder):
    clf = ZeroShotClassifier(model_name=tiny_folder, prompt="Say: {text} {labels}",
                             progress=False).fit(None, ["spam", "ham", "positive"])
    out = df.llm.classify("text", estimator=clf)
    assert list(out.columns) == ["label", "proba_ham", "proba_positive", "proba_spam"]
    assert_output(out, clf, TEXTS, df.index)
    series_out = df["text"].llm.classify(estimator=clf)
    pdt.assert_frame_equal(series_out, out)


def test_series_classify_equals_the_dataframe_classify(df, tiny_folder):
    from_df = df.llm.classify("text", labels=LABELS, model=tiny_folder)
    from_series = df["text"].llm.classify(LABELS, model=tiny_folder)
    pdt.assert_frame_equal(from_series, from_df)
    assert_output(from_series, zero(tiny_folder), TEXTS, df.index)


def test_series_classify_options(df, tiny_folder):
    out = df["text"].llm.classify(LABELS, model=tiny_folder, raw=True, proba=False)
    assert list(out.columns) == ["label", "label_mass"]
    few_out = df["text"].llm.classify(model=tiny_folder, examples=EXAMPLES, max_samples=2)
    assert_output(few_out, few(tiny_folder, EXAMPLES, max_samples=2), TEXTS, df.index)


# ---------------------------------------------------------------- preview
def test_preview_returns_a_generation_preview(df, tiny_folder):
    p = df.llm.preview("text", 1, labels=LABELS, model=tiny_folder)
    assert isinstance(p, GenerationPreview)
    clf = zero(tiny_folder)
    assert p.text == TEXTS[1]
    assert p.prompt == clf.get_prompt(TEXTS[1])
    assert p.classes == CLASSES
    np.testing.assert_allclose(p.probas, clf.predict_proba([TEXTS[1]])[0], rtol=0,
                               atol=1e-9)
    assert p.continuation == clf.generate(TEXTS[1], max_new_tokens=24)
    assert "Free generation" in p._repr_html_()


def test_series_preview_and_estimator_preview(df, tiny_folder):
    p = df["text"].llm.preview(2, labels=LABELS, model=tiny_folder)
    assert p.text == TEXTS[2]
    clf = zero(tiny_folder, labels=["ham", "spam"])
    q = df.llm.preview("text", 0, estimator=clf)
    assert q.classes == ["ham", "spam"]
    assert q.prompt == clf.get_prompt(TEXTS[0])


# ----------------------------------------------------------------- errors
def test_unknown_column_is_a_key_error(df):
    with pytest.raises(KeyError, match=re.escape(
            "column 'nope' not found; columns are 'text', 'stars'")):
        df.llm.classify("nope", labels=LABELS)
    with pytest.raises(KeyError, match="column 'nope' not found"):
        df.llm.preview("nope", 0, labels=LABELS)


@pytest.mark.parametrize("labels,message", [
    (None, "labels must contain at least one label; got none"),
    ([], "labels must contain at least one label; got none"),
    ("positive", "labels must be a list of strings, got the single string 'positive'"),
    (["a", " "], "labels must be non-empty strings; got ' '"),
    (["a", "b", "a"], "labels must be unique; repeated: 'a'"),
])
def test_bad_labels_raise_value_errors(df, tiny_folder, labels, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        df.llm.classify("text", labels=labels, model=tiny_folder)


def test_examples_with_unknown_labels(df, tiny_folder):
    with pytest.raises(ValueError, match=re.escape(
            "examples use label(s) not in labels: 'negative'")):
        df.llm.classify("text", labels=["positive", "neutral"], model=tiny_folder,
                        examples=EXAMPLES)


def test_nbllm_package_exports():
    assert nbllm.classify is api.classify
