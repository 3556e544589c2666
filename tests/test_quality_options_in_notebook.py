"""The quality options (calibration, label_map, example selection,
multi-label) through the accessor, the magics and the display.
"""

import re

import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError

from nbllm.notebook.display import ClassificationResult
from nbllm.estimators import FewShotClassifier, ZeroShotClassifier
from nbllm.estimators.multi_label import MultiLabelZeroShotClassifier

from quality_helpers import (
    BATCH_WARNING,
    ML_CLASSES,
    ML_TEXTS,
    POOL_X,
    POOL_Y,
    QUERIES,
    messages,
    np_log_softmax,
    np_softmax,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")


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
    msg = ("--multi-label gives each label its own yes/no probability; --raw and "
           "--calibration do not apply")
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
    # Checked at the entry by the option's rule, named as the magic names it.
    msg = ("--label-map must be a dict from class to the non-empty word the model scores, "
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
    assert default.estimator.example_selection == "grouped"


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
           "'stratified', 'random', 'similar', 'grouped')")
    with pytest.raises(UsageError, match=f"^{re.escape(msg)}$"):
        ip.run_cell_magic("fewshot", "--selection foo", "a: b\n---\nx")


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
    blue, red, green = "#1565c0", "#c62828", "#2e7d32"  # the palette's first three
    assert rows[0] == (
        '<td>0</td><td class="nbllm-text" title="&lt;b&gt;bold&lt;/b&gt; &amp; more">'
        "&lt;b&gt;bold&lt;/b&gt; &amp; more</td>"
        f'<td class="nbllm-pred"><span class="nbllm-chip" style="background:{blue}">'
        f'&lt;i&gt;</span> <span class="nbllm-chip" style="background:{red}">b&amp;c'
        "</span></td>"
        f'<td class="nbllm-best">0.900<span class="nbllm-bar" style="width:54.0px;'
        f'background:{blue}"></span></td>'
        f'<td class="nbllm-best">0.600<span class="nbllm-bar" style="width:36.0px;'
        f'background:{red}"></span></td>'
        f'<td>0.100<span class="nbllm-bar" style="width:6.0px;background:{green}">'
        "</span></td>"
    )
    assert rows[1] == (
        '<td>1</td><td class="nbllm-text" title="plain text">plain text</td>'
        '<td class="nbllm-pred"></td>'
        f'<td>0.200<span class="nbllm-bar" style="width:12.0px;background:{blue}">'
        "</span></td>"
        f'<td>0.100<span class="nbllm-bar" style="width:6.0px;background:{red}"></span>'
        "</td>"
        f'<td>0.400<span class="nbllm-bar" style="width:24.0px;background:{green}">'
        "</span></td>"
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
