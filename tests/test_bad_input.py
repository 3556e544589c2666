"""Bad input through every entry point: each gets its documented outcome.

Issue 7, "Bad input to estimators, magics, the panel and the accessor", the
HTML and cell-content parts of "Security" and "Interrupts".  The estimators
(ZeroShotClassifier, FewShotClassifier, MultiLabelZeroShotClassifier), the
``%%zeroshot`` / ``%%fewshot`` magics, the ``Panel`` and ``df.llm.classify``
are all driven on the tiny random model of ``tiny.py``.

Cases already tested elsewhere are not repeated here; the closing note of the
issue lists which test covers which case.
"""

import ast
import copy
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError

import nbllm  # noqa: F401  (registers the df.llm accessor)
from nbllm.engine import text_scorer
from nbllm.estimators import base as estimators
from nbllm.estimators import multi_label as multilabel
from nbllm.notebook import classify as api
from nbllm.notebook import session
from nbllm.engine import scorer as scoring
from nbllm.engine.result_cache import result_cache
from nbllm.notebook.display import ClassificationResult, GenerationPreview
from nbllm.estimators import FewShotClassifier, ZeroShotClassifier
from nbllm.estimators.base import _LLMBase
from nbllm.estimators.multi_label import MultiLabelZeroShotClassifier
from nbllm.notebook.panel import Panel
from tiny import SENTENCES, get_tiny_model, get_tiny_tokenizer, oracle_logprob

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")

LABELS = ["positive", "negative"]
TEXTS = ["I love it.", "The train was late again this morning.", "ok"]
FEW_X = ["good movie", "bad film", "great", "awful"]
FEW_Y = ["pos", "neg", "pos", "neg"]
ML_Y = [["sports"], ["politics", "science"]]
SCRIPT = "<script>alert(1)</script>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"
# About 600 tokens: longer than the saved tiny model's context of 256 tokens.
LONG_TEXT = " ".join(SENTENCES)
# The same model with a 64-token context, for cheap long-text cases.
SMALL_CONTEXT = 64
SHORT_PROMPT = "Text: {text}\nAnswer: {labels}"
SHORT_FEW_PROMPT = "{examples}\nText: {text}\nAnswer: {labels}"

NOT_STRINGS = "{} value(s) in X are not strings and were converted with str()"
MISSING = ("X contains {} missing value(s) (None or NaN) at position(s) {}; drop or fill "
           "them first")
SKIPPED = "{} missing text(s) (None or NaN) were skipped; their results are NaN"
CUT = ("{n} sample(s) did not fit the model's context of {context} tokens; their text "
       "was cut {where} so that the prompt template and the labels fit")
WHERE = {"right": "at the end", "left": "at the start", "middle": "in the middle"}
SINGLE_LABEL = ("Only one label ({!r}): normalised over the labels, its probability is "
                "always 1; use probas_sum_to_1=False for the model's own probability, "
                "or add labels")
LONE_BRACE = ("The prompt is not a valid template (Single '{}' encountered in format "
              "string); write literal braces as '{{{{' and '}}}}'")


# ------------------------------------------------------------------ helpers
def _objects(kwargs):
    kwargs.setdefault("model", get_tiny_model(kwargs.pop("max_positions", 256)))
    kwargs.setdefault("tokenizer", get_tiny_tokenizer())
    kwargs.setdefault("progress", False)
    return kwargs


def zero(**kwargs):
    return ZeroShotClassifier(**_objects(kwargs))


def few(**kwargs):
    kwargs.setdefault("random_state", 0)
    # These tests are about the mechanics of one fixed set of examples.
    kwargs.setdefault("example_selection", "stratified")
    return FewShotClassifier(**_objects(kwargs))


def multi(**kwargs):
    return MultiLabelZeroShotClassifier(**_objects(kwargs))


def fitted(kind, **kwargs):
    """A fitted estimator of one of the three kinds."""
    if kind == "zero":
        return zero(**kwargs).fit(None, LABELS)
    if kind == "few":
        return few(**kwargs).fit(FEW_X, FEW_Y)
    return multi(**kwargs).fit(None, ML_Y)


def small(kind, **kwargs):
    """A fitted estimator on the 64-token model with a short prompt."""
    kwargs.setdefault("use_chat_template", False)
    kwargs.setdefault("prompt", SHORT_FEW_PROMPT if kind == "few" else SHORT_PROMPT)
    if kind == "few":
        kwargs.setdefault("max_samples", 1)
    if kind == "multi":
        kwargs["prompt"] = kwargs["prompt"].replace("{labels}", "{label}")
    return fitted(kind, max_positions=SMALL_CONTEXT, **kwargs)


def messages_of(func, *args, **kwargs):
    """Call func; return its result and the messages of the warnings it gave."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = func(*args, **kwargs)
    return out, [str(w.message) for w in record]


def prompt_ids(clf, text, label=None):
    """The prompt's token ids, tokenized as the estimator does."""
    prompt = clf.get_prompt(text) if label is None else clf.get_prompt(text, label)
    special = not clf.use_chat_template_
    return clf.tokenizer_(prompt, add_special_tokens=special)["input_ids"]


def oracle(clf, texts):
    """Unnormalised label probabilities from plain forward passes."""
    return np.array([[math.exp(oracle_logprob(clf.model_, prompt_ids(clf, t), ids))
                      for ids in clf.label_ids_] for t in texts])


def multi_oracle(clf, texts):
    out = np.empty((len(texts), len(clf.classes_)))
    for i, text in enumerate(texts):
        for j, label in enumerate(clf.classes_):
            ids = prompt_ids(clf, text, label)
            lp = [oracle_logprob(clf.model_, ids, a) for a in clf.label_ids_]
            out[i, j] = 1 / (1 + math.exp(np.logaddexp(lp[2], lp[3])
                                          - np.logaddexp(lp[0], lp[1])))
    return out


def from_folder(folder, labels=LABELS, **kwargs):
    """A fresh, uncached estimator on the saved tiny model, as the API builds it."""
    return api.build_estimator(labels, model=folder, progress=False, **kwargs).set_params(
        use_caching=False)


@pytest.fixture
def spy_score(monkeypatch):
    """Record the prompt ids of every LabelScorer.score call."""
    calls = []
    original = scoring.LabelScorer.score

    def score(self, prompt_ids, *args, **kwargs):
        calls.append([list(p) for p in prompt_ids])
        return original(self, prompt_ids, *args, **kwargs)

    monkeypatch.setattr(scoring.LabelScorer, "score", score)
    return calls


def run_cell(ip, cell):
    """Run a cell; return (ExecutionResult, warning messages)."""
    return messages_of(ip.run_cell, cell)


def usage_error(res, capsys, message):
    """The cell failed with exactly this UsageError, shown as one line."""
    assert not res.success
    assert isinstance(res.error_in_exec, UsageError), res.error_in_exec
    assert str(res.error_in_exec) == message
    assert capsys.readouterr().err == f"UsageError: {message}\n"


# Panel helpers (the panel is driven headless, as in test_widgets.py).
def make_panel(folder, labels=LABELS, texts=TEXTS[:2], **kwargs):
    panel = Panel(threaded=False, **kwargs)
    panel.model.value = folder
    panel.labels.value = list(labels)
    panel.texts.value = "\n".join(texts)
    return panel


def error_line(panel):
    import html

    value = panel.status.value
    start, end = '<span style="color:#b00020">', "</span>"
    assert value.startswith(start) and value.endswith(end), value
    return html.unescape(value[len(start):-len(end)])


def assert_idle(panel):
    for button in (panel.classify_button, panel.preview_button, panel.code_button,
                   panel.reset_prompt):
        assert button.disabled is False, button.description
    assert panel.stop_button.disabled is True
    assert not panel.busy


def panel_html(panel):
    """Every piece of HTML the panel shows: HTML widgets and the Output's displays."""
    import ipywidgets as widgets

    pieces, stack = [], [panel]
    while stack:
        w = stack.pop()
        if isinstance(w, widgets.HTML):
            pieces.append(w.value)
        stack.extend(getattr(w, "children", ()))
    for out in panel.output.outputs:
        pieces.append(out.get("data", {}).get("text/html", ""))
    return "\n".join(pieces)


def assert_escaped(page, payload=SCRIPT, escaped=ESCAPED_SCRIPT):
    """The payload reached the HTML, but only escaped."""
    assert "<script" not in page.lower()
    assert payload not in page
    assert escaped in page


# =================================================================== texts
@pytest.mark.parametrize("kind", ["few", "multi"])
def test_missing_texts_at_predict_name_their_positions(kind):
    clf = fitted(kind)
    with pytest.raises(ValueError, match=f"^{re.escape(MISSING.format(2, '1, 3'))}$"):
        clf.predict_proba(["a", None, "b", float("nan")])


def test_accessor_all_missing_texts_give_nan_rows_without_scoring(tiny_folder, spy_score):
    frame = pd.DataFrame({"text": [None, float("nan")]}, index=["x", "y"])
    with pytest.warns(UserWarning, match=f"^{re.escape(SKIPPED.format(2))}$"):
        out = frame.llm.classify("text", LABELS, model=tiny_folder)
    assert out.index.tolist() == ["x", "y"]
    assert list(out.columns) == ["label", "proba_negative", "proba_positive"]
    assert out.isna().all().all()
    assert spy_score == []


def test_accessor_missing_texts_in_a_string_dtype_column(tiny_folder):
    frame = pd.DataFrame({"text": pd.Series([TEXTS[0], None, TEXTS[1]], dtype="string")})
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = frame.llm.classify("text", LABELS, model=tiny_folder)
    assert [str(w.message) for w in record] == [SKIPPED.format(1)]
    assert out.iloc[1].isna().all()
    assert not out.iloc[[0, 2]].isna().any().any()


def test_panel_with_missing_texts_shows_empty_rows(tiny_folder):
    data = pd.DataFrame({"text": [TEXTS[0], None, TEXTS[1]]})
    panel = Panel(data=data, column="text", labels=LABELS, threaded=False)
    panel.model.value = tiny_folder
    with pytest.warns(UserWarning, match=f"^{re.escape(SKIPPED.format(1))}$"):
        panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    result = panel.last_result
    assert result.labels[1] is None and np.isnan(result.probas[1]).all()
    np.testing.assert_allclose(result.probas[[0, 2]],
                               from_folder(tiny_folder).predict_proba(TEXTS[:2]),
                               rtol=0, atol=1e-9)
    assert panel.status.value == "3 texts classified"
    assert_idle(panel)


NON_STRINGS = [7, 3.5, np.int64(-2), b"caf\xc3\xa9", b"bad \xff\xfe utf-8"]
AS_STRINGS = ["7", "3.5", "-2", "caf\u00e9", "bad \ufffd\ufffd utf-8"]


@pytest.mark.parametrize("kind", ["zero", "few", "multi"])
def test_non_strings_are_converted_with_one_warning(kind):
    clf = fitted(kind)
    probas, messages = messages_of(clf.predict_proba, NON_STRINGS + ["plain"])
    assert messages == [NOT_STRINGS.format(len(NON_STRINGS))]
    np.testing.assert_array_equal(probas, clf.predict_proba(AS_STRINGS + ["plain"]))


def test_few_shot_examples_that_are_not_strings_are_converted():
    clf, messages = messages_of(few(max_samples=4).fit, [12, b"\xffbad", "good", 2.5],
                                ["pos", "neg", "pos", "neg"])
    assert messages == [NOT_STRINGS.format(3)]
    assert sorted(t for t, _ in clf.examples_) == sorted(["12", "\ufffdbad", "good", "2.5"])


def test_accessor_converts_non_strings_and_skips_missing(tiny_folder):
    frame = pd.DataFrame({"text": [7, None, b"caf\xc3\xa9", 3.5, "plain"]})
    out, messages = messages_of(frame.llm.classify, "text", LABELS, model=tiny_folder)
    assert messages == [SKIPPED.format(1), NOT_STRINGS.format(3)]
    assert out.iloc[1].isna().all()
    expected = from_folder(tiny_folder).predict_proba(["7", "caf\u00e9", "3.5", "plain"])
    np.testing.assert_allclose(out[["proba_negative", "proba_positive"]].to_numpy()[
        [0, 2, 3, 4]], expected, rtol=0, atol=1e-9)


def test_magic_input_converts_non_strings(ip, tiny_folder):
    ip.user_ns["odd_texts"] = [7, b"caf\xc3\xa9", "plain"]
    res, messages = run_cell(
        ip, f"%%zeroshot --labels positive,negative --model {tiny_folder} "
            "--input odd_texts\n"
            "# texts come from --input")
    assert res.success, res.error_in_exec
    assert messages == [NOT_STRINGS.format(2)]
    np.testing.assert_allclose(res.result.probas, from_folder(tiny_folder).predict_proba(
        ["7", "caf\u00e9", "plain"]), rtol=0, atol=1e-9)


BLANKS = ["", " ", "\n\t  \n"]


# True: the default prompt, which 'auto' sends raw, through the chat template too.
@pytest.mark.parametrize("chat", [True, False])
def test_empty_and_whitespace_texts_are_scored_like_any_text(chat):
    clf = zero(probas_sum_to_1=False, use_chat_template=chat).fit(None, LABELS)
    probas, messages = messages_of(clf.predict_proba, BLANKS)
    assert messages == []
    assert np.isfinite(probas).all() and (probas > 0).all()
    np.testing.assert_allclose(probas, oracle(clf, BLANKS), rtol=1e-5, atol=0)
    # Each blank is its own prompt, not one shared "empty" result.
    assert len({tuple(prompt_ids(clf, t)) for t in BLANKS}) == len(BLANKS)


def test_empty_and_whitespace_texts_through_the_accessor_and_magic(ip, tiny_folder):
    expected = from_folder(tiny_folder).predict_proba(BLANKS)
    assert np.isfinite(expected).all()
    out, messages = messages_of(pd.DataFrame({"text": BLANKS}).llm.classify, "text",
                                LABELS, model=tiny_folder)
    assert messages == []
    np.testing.assert_allclose(out[["proba_negative", "proba_positive"]].to_numpy(),
                               expected, rtol=0, atol=1e-9)
    ip.user_ns["blank_texts"] = list(BLANKS)
    res = ip.run_cell(f"%%zeroshot --labels positive,negative --model {tiny_folder} "
                      "--input blank_texts\n# from --input")
    assert res.success, res.error_in_exec
    np.testing.assert_allclose(res.result.probas, expected, rtol=0, atol=1e-9)


UNUSUAL = [
    "na\u00efve caf\u00e9 \u65e5\u672c\u8a9e \u0416\u0438\u0437\u043d\u044c",  # unicode
    "emoji \U0001F600\U0001F44D\U0001F3FD \U0001F469\u200d\U0001F4BB",  # emoji, ZWJ
    "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u202ertl override",  # RTL
    "bell\x07 esc\x1b[31m tab\t cr\r vt\x0b del\x7f",  # control characters
    "nul\x00 in\x00 the middle\x00",  # NUL bytes
    "\ufeffbom \u200b zero-width \ufffd replacement",
]


@pytest.mark.parametrize("chat", [True, False])
def test_unusual_characters_are_scored_verbatim(chat):
    clf = zero(probas_sum_to_1=False, use_chat_template=chat).fit(None, LABELS)
    head, tail = clf.get_prompt("TEXT").split("TEXT")
    for text in UNUSUAL:
        assert clf.get_prompt(text) == head + text + tail
    probas, messages = messages_of(clf.predict_proba, UNUSUAL)
    assert messages == []
    assert np.isfinite(probas).all()
    np.testing.assert_allclose(probas, oracle(clf, UNUSUAL), rtol=1e-5, atol=0)


def test_unusual_characters_through_the_accessor_and_multi_label(tiny_folder):
    out = pd.DataFrame({"text": UNUSUAL}).llm.classify("text", LABELS, model=tiny_folder)
    np.testing.assert_allclose(out[["proba_negative", "proba_positive"]].to_numpy(),
                               from_folder(tiny_folder).predict_proba(UNUSUAL),
                               rtol=0, atol=1e-9)
    clf = multi(use_chat_template=False).fit(None, ML_Y)
    for text in UNUSUAL:
        assert clf.get_prompt(text, "sports").endswith(f"Text: {text}")
    np.testing.assert_allclose(clf.predict_proba(UNUSUAL[:2]),
                               multi_oracle(clf, UNUSUAL[:2]), rtol=1e-5, atol=1e-9)


BRACES = ["{labels}", "{text}", "{", "}", "{examples} {label}", "{0} {} {{x}}"]


def test_braces_in_few_shot_texts_and_examples_are_verbatim():
    clf = few(max_samples=4, probas_sum_to_1=False).fit(
        ["{text} good", "{labels} bad", "{ great", "awful }"], FEW_Y)
    head, tail = clf.get_prompt("TEXT").split("TEXT")
    for text in ["{text} good", "{labels} bad", "{ great", "awful }"]:
        assert f"Text: {text}\nLabel: " in head
    for text in BRACES:
        assert clf.get_prompt(text) == head + text + tail
    np.testing.assert_allclose(clf.predict_proba(BRACES), oracle(clf, BRACES),
                               rtol=1e-5, atol=0)


def test_braces_in_multi_label_texts_are_verbatim():
    clf = multi().fit(None, ML_Y)
    head, tail = clf.get_prompt("TEXT", "science").split("TEXT")
    for text in BRACES:
        assert clf.get_prompt(text, "science") == head + text + tail


def test_braces_in_magic_cells_are_verbatim(ip, tiny_folder):
    res = ip.run_cell(f"%%zeroshot --labels positive,negative --model {tiny_folder}\n"
                      + "\n".join(BRACES))
    assert res.success, res.error_in_exec
    assert res.result.texts == BRACES
    clf = from_folder(tiny_folder)
    np.testing.assert_allclose(res.result.probas, clf.predict_proba(BRACES),
                               rtol=0, atol=1e-9)
    assert res.result.estimator.get_prompt("{labels}") == clf.get_prompt("{labels}")


def test_example_text_holding_the_text_sentinel_is_verbatim():
    odd = "x\x00nbllm-text\x00y"
    clf = few(max_samples=2).fit([odd, "bad film"], ["pos", "neg"])
    assert f"Text: {odd}\nLabel: pos" in clf.get_prompt("SAMPLE")


# ============================================================ long texts
def text_part(clf, ids):
    """The sample's text inside a scored prompt (template decoded away)."""
    decoded = clf.tokenizer_.decode(ids)
    head, tail = clf.get_prompt("\x01").split("\x01")
    bos = "" if clf.use_chat_template_ else clf.tokenizer_.bos_token
    assert decoded.startswith(bos + head), decoded
    assert decoded.endswith(tail), decoded
    return decoded[len(bos + head):len(decoded) - len(tail)]


@pytest.mark.parametrize("chat", [False, True])
@pytest.mark.parametrize("mode", ["left", "middle"])
def test_long_text_keeps_its_end_or_both_ends(spy_score, mode, chat):
    # truncation='right' (the start is kept) is test_estimators'
    # test_long_text_is_cut_to_fit_the_context.
    clf = small("zero", truncation=mode, use_chat_template=chat, probas_sum_to_1=False)
    probas, messages = messages_of(clf.predict_proba, [LONG_TEXT, "ok"])
    assert messages == [CUT.format(n=1, context=SMALL_CONTEXT, where=WHERE[mode])]
    (long_ids, short_ids), = spy_score
    longest = max(len(ids) for ids in clf.label_ids_)
    assert SMALL_CONTEXT - longest - 8 <= len(long_ids) <= SMALL_CONTEXT - longest
    assert short_ids == prompt_ids(clf, "ok")
    kept = text_part(clf, long_ids)
    if mode == "left":
        assert len(kept) > 25 and LONG_TEXT.endswith(kept)
        assert "\u2026" not in kept
    else:
        start, end = kept.split("\u2026")
        assert len(start) > 8 and LONG_TEXT.startswith(start)
        assert len(end) > 8 and LONG_TEXT.endswith(end)
    expected = [math.exp(oracle_logprob(clf.model_, long_ids, ids))
                for ids in clf.label_ids_]
    np.testing.assert_allclose(probas[0], expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("kind, mode", [("zero", "middle"), ("few", "left"),
                                        ("multi", "right")])
def test_the_cut_warning_counts_the_samples(kind, mode):
    clf = small(kind, truncation=mode)
    probas, messages = messages_of(clf.predict_proba, [LONG_TEXT, "ok", LONG_TEXT + "!"])
    # Multi-label asks one question per label; each says the same.
    assert set(messages) == {CUT.format(n=2, context=SMALL_CONTEXT, where=WHERE[mode])}
    assert np.isfinite(probas).all()


def test_truncation_error_names_count_position_and_tokens():
    clf = small("zero", truncation="error")
    texts = ["ok", LONG_TEXT, "fine", LONG_TEXT + "!"]
    longest = max(len(ids) for ids in clf.label_ids_)
    msg = (f"2 sample(s) do not fit the model's context of {SMALL_CONTEXT} tokens; the "
           f"first, at position 1, needs {len(prompt_ids(clf, LONG_TEXT))} prompt tokens "
           f"plus {longest} for the longest label.  Shorten the texts or use "
           "truncation='right', 'left' or 'middle'")
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        clf.predict_proba(texts)
    # Nothing is left half done: the short texts still score.
    np.testing.assert_allclose(clf.predict_proba(["ok", "fine"]),
                               small("zero").predict_proba(["ok", "fine"]), rtol=1e-12)


def test_truncation_error_position_counts_across_chunks(monkeypatch):
    monkeypatch.setattr(text_scorer, "CHUNK", 2)
    clf = small("zero", truncation="error")
    with pytest.raises(ValueError, match=re.escape(
            "1 sample(s) do not fit the model's context of 64 tokens; the first, at "
            "position 3, needs")):
        clf.predict_proba(["ok", "fine", "x", LONG_TEXT])


def test_few_shot_examples_alone_exceeding_the_context_name_the_token_counts():
    examples = [SENTENCES[2] + " " + SENTENCES[3], SENTENCES[10] + " " + SENTENCES[14]]
    clf = few(max_positions=SMALL_CONTEXT, prompt=SHORT_FEW_PROMPT,
              use_chat_template=False).fit(examples, ["pos", "neg"])
    base = len(prompt_ids(clf, ""))
    longest = max(len(ids) for ids in clf.label_ids_)
    assert base + longest > SMALL_CONTEXT
    msg = (f"The prompt template takes {base} tokens and the longest label {longest}, "
           "which leaves no room for the text in the model's context of 64 tokens; "
           "shorten the prompt or use fewer examples")
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        clf.predict_proba(["hi"])


def test_bad_truncation_value():
    msg = "truncation must be 'right', 'left', 'middle' or 'error'; got 'bogus'"
    for clf in (zero(truncation="bogus"), multi(truncation="bogus")):
        with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
            clf.fit(None, ML_Y if isinstance(clf, MultiLabelZeroShotClassifier)
                    else LABELS)


@pytest.mark.parametrize("mode", ["right", "left", "middle"])
def test_accessor_truncation(tiny_folder, mode):
    frame = pd.DataFrame({"text": ["ok", LONG_TEXT]})
    out, messages = messages_of(frame.llm.classify, "text", LABELS, model=tiny_folder,
                                truncation=mode)
    assert messages == [CUT.format(n=1, context=256, where=WHERE[mode])]
    expected, _ = messages_of(from_folder(tiny_folder, truncation=mode).predict_proba,
                              ["ok", LONG_TEXT])
    np.testing.assert_allclose(out[["proba_negative", "proba_positive"]].to_numpy(),
                               expected, rtol=0, atol=1e-9)


def _too_long_message(folder, position, labels=LABELS):
    clf = from_folder(folder, labels)
    longest = max(len(ids) for ids in clf.label_ids_)
    return (f"1 sample(s) do not fit the model's context of 256 tokens; the first, at "
            f"position {position}, needs {len(prompt_ids(clf, LONG_TEXT))} prompt tokens "
            f"plus {longest} for the longest label.  Shorten the texts or use "
            "truncation='right', 'left' or 'middle'")


def test_accessor_truncation_error(tiny_folder):
    frame = pd.DataFrame({"text": ["ok", LONG_TEXT]})
    msg = _too_long_message(tiny_folder, 1)
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        frame.llm.classify("text", LABELS, model=tiny_folder, truncation="error")


def test_accessor_truncation_error_position_counts_missing_rows(tiny_folder):
    frame = pd.DataFrame({"text": ["ok", None, LONG_TEXT]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=re.escape(_too_long_message(tiny_folder, 2))):
            frame.llm.classify("text", LABELS, model=tiny_folder, truncation="error")


def test_magic_truncation_error_is_a_one_line_usage_error(ip, tiny_folder, capsys):
    res = ip.run_cell(f"%%zeroshot --labels a,b --model {tiny_folder} --truncation error\n"
                      f"ok\n{LONG_TEXT}")
    usage_error(res, capsys, _too_long_message(tiny_folder, 1, ["a", "b"]))


def test_magic_truncation_left_cuts_with_a_warning(ip, tiny_folder):
    res, messages = run_cell(
        ip, f"%%zeroshot --labels a,b --model {tiny_folder} --truncation left\n{LONG_TEXT}")
    assert res.success, res.error_in_exec
    assert messages == [CUT.format(n=1, context=256, where="at the start")]
    expected, _ = messages_of(
        from_folder(tiny_folder, ["a", "b"], truncation="left").predict_proba, [LONG_TEXT])
    np.testing.assert_allclose(res.result.probas, expected, rtol=0, atol=1e-9)


# ================================================================= labels
def test_label_that_tokenizes_to_nothing():
    from tokenizers import normalizers

    # Like many real tokenizers, this one's normaliser drops a character
    # (here the zero-width space, which str.strip() keeps).
    tok = copy.deepcopy(get_tiny_tokenizer())
    tok.backend_tokenizer.normalizer = normalizers.Replace("\u200b", "")
    assert tok("\u200b", add_special_tokens=False)["input_ids"] == []
    msg = "label '\\u200b' tokenizes to no tokens"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        zero(tokenizer=tok).fit(None, ["yes", "\u200b"])
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        multi(tokenizer=tok).fit(None, [["yes"], ["\u200b"]])


def test_blank_label_in_multi_label_y():
    with pytest.raises(ValueError, match=re.escape(
            "labels must be non-empty strings; got ' ' in the classes")):
        multi().fit(None, [["sports", " "]])


@pytest.mark.parametrize("options", [
    dict(multi_label=True),
    dict(examples=[("good", "a"), ("bad", "b")]),
], ids=["multi_label", "examples"])
def test_accessor_repeated_labels_with_other_options(tiny_folder, options):
    frame = pd.DataFrame({"text": TEXTS})
    msg = "labels must be unique; repeated: 'a'"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        frame.llm.classify("text", ["a", "b", "a"], model=tiny_folder, **options)


@pytest.mark.parametrize("cell", [
    "%%zeroshot --multi-label --labels a,b,a --model {}\nx",
    "%%fewshot --labels a,b,a --model {}\na: good\n---\nx",
], ids=["multi-label", "fewshot"])
def test_magic_repeated_labels_with_other_options(ip, tiny_folder, capsys, cell):
    res = ip.run_cell(cell.format(tiny_folder))
    usage_error(res, capsys, "--labels: labels must be unique; repeated: 'a'")


@pytest.mark.parametrize("labels, message", [
    (["a", "a"], "labels must be unique; repeated: 'a'"),
    (["a", " "], "labels must be non-empty strings; got ' '"),
    ([SCRIPT, SCRIPT], f"labels must be unique; repeated: '{SCRIPT}'"),
], ids=["repeated", "blank", "script"])
def test_panel_bad_labels_show_an_escaped_line_and_the_panel_stays_usable(
        tiny_folder, labels, message):
    panel = make_panel(tiny_folder, labels=labels)
    panel.classify_button.click()
    assert error_line(panel) == f"ValueError: {message}"
    assert "<script" not in panel.status.value
    assert panel.last_result is None
    assert_idle(panel)
    panel.labels.value = list(LABELS)
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    assert panel.status.value == "2 texts classified"
    assert_idle(panel)


@pytest.mark.parametrize("make", [
    lambda: zero().fit(None, ["spam", "spam"]),
    lambda: few().fit(["a", "b"], ["spam", "spam"]),
    lambda: zero(label_map={"s": "spam"}).fit(None, ["s"]),
], ids=["zero", "few", "label_map"])
def test_single_label_warns(make):
    clf, messages = messages_of(make)
    assert messages == [SINGLE_LABEL.format("spam")]
    np.testing.assert_array_equal(clf.predict_proba(TEXTS), np.ones((len(TEXTS), 1)))


def test_single_label_warns_through_the_accessor_and_magic(ip, tiny_folder):
    out, messages = messages_of(pd.DataFrame({"text": TEXTS}).llm.classify, "text",
                                ["spam"], model=tiny_folder)
    assert messages == [SINGLE_LABEL.format("spam")]
    assert (out["proba_spam"] == 1).all()
    res, messages = run_cell(ip, f"%%zeroshot --labels spam --model {tiny_folder}\nx")
    assert res.success, res.error_in_exec
    assert messages == [SINGLE_LABEL.format("spam")]


def test_single_label_does_not_warn_where_its_probability_means_something(ip, tiny_folder):
    cases = [
        lambda: multi().fit(None, [["spam"]]),
        lambda: zero(probas_sum_to_1=False).fit(None, ["spam"]),
        lambda: pd.DataFrame({"text": TEXTS}).llm.classify("text", ["spam"],
                                                           model=tiny_folder, raw=True),
        lambda: pd.DataFrame({"text": TEXTS}).llm.classify("text", ["spam"],
                                                           model=tiny_folder,
                                                           multi_label=True),
        lambda: ip.run_cell_magic("zeroshot", f"--multi-label --labels spam --model "
                                  f"{tiny_folder}", "x"),
    ]
    for case in cases:
        _, messages = messages_of(case)
        assert messages == []
    raw = zero(probas_sum_to_1=False).fit(None, ["spam"]).predict_proba(TEXTS)
    assert ((raw > 0) & (raw < 1)).all()


def product_categories():
    adjectives = ["red", "blue", "green", "fresh", "used", "small", "large", "new", "old",
                  "smart"]
    nouns = ["phone", "book", "shoe", "lamp", "chair", "table", "bag", "watch", "camera",
             "bike", "guitar", "kettle", "drill", "tent", "ball", "plate", "towel", "sofa",
             "scarf", "mug"]
    return [f"{a} {n}" for a in adjectives for n in nouns]


def test_two_hundred_labels(spy_score):
    labels = product_categories()
    assert len(set(labels)) == 200
    # The default prompt lists every label (~2.2k tokens): a model with a
    # bigger context, same weights.
    clf = zero(max_positions=4096, use_caching=False).fit(None, labels)
    texts = ["The kettle arrived broken.", "Nice red phone"]
    probas, messages = messages_of(clf.predict_proba, texts)
    assert messages == []
    assert probas.shape == (2, 200)
    assert clf.classes_.tolist() == sorted(labels)
    np.testing.assert_allclose(probas.sum(axis=1), 1.0, atol=1e-9)
    assert (probas > 0).all()
    assert len(spy_score) == 1  # one scoring pass for all 200 labels
    raw = np.exp(clf.label_logprobs(texts[:1]))
    for j in (0, 137):
        expected = math.exp(oracle_logprob(clf.model_, prompt_ids(clf, texts[0]),
                                           clf.label_ids_[j]))
        np.testing.assert_allclose(raw[0, j], expected, rtol=1e-4)
    out = pd.DataFrame({"text": texts}).llm.classify("text", estimator=clf)
    assert out.shape == (2, 201)
    np.testing.assert_allclose(out.drop(columns="label").to_numpy(), probas, rtol=1e-12)


# ================================================================ prompts
MISSING_LABELS = ("The prompt may not be correct, it expects 2 placeholders: 'labels', "
                  "'text', missing keys: 'labels'")


def test_placeholder_warnings_through_the_accessor_magic_and_multi_label(ip, tiny_folder):
    frame = pd.DataFrame({"text": TEXTS[:1]})
    _, messages = messages_of(frame.llm.classify, "text", LABELS, model=tiny_folder,
                              prompt="Text: {text}")
    assert messages == [MISSING_LABELS]
    ip.user_ns["odd_prompt"] = "{text} {labels} {foo}"
    res, messages = run_cell(
        ip, f"%%zeroshot --labels a,b --model {tiny_folder} -p odd_prompt\nx")
    assert res.success, res.error_in_exec
    assert messages == ["The prompt may not be correct, it expects 2 placeholders: "
                        "'labels', 'text', extra keys: 'foo'"]
    assert res.result.estimator.get_prompt("x").startswith(
        "<|im_start|>user\nx ['a', 'b'] {foo}")
    _, messages = messages_of(multi(prompt="Question about {text}?").fit, None, ML_Y)
    assert messages == ["The prompt may not be correct, it expects 2 placeholders: "
                        "'label', 'text', missing keys: 'label'"]


def test_literal_braces_render_as_single_braces(ip, tiny_folder):
    template = 'Answer as {{"label": ...}} for {text} ({labels}) {{{{x}}}}'
    rendered = "Answer as {\"label\": ...} for T (['negative', 'positive']) {{x}}"
    clf, messages = messages_of(zero(prompt=template, use_chat_template=False).fit,
                                None, LABELS)
    assert messages == []
    assert clf.get_prompt("T") == rendered
    few_clf = few(prompt="{{ {examples} }} " + template, use_chat_template=False,
                  max_samples=1).fit(FEW_X, FEW_Y)
    assert few_clf.get_prompt("T").startswith("{ Text: ")
    ml = multi(prompt="{{json}} {label}: {text}", use_chat_template=False).fit(None, ML_Y)
    assert ml.get_prompt("T", "sports") == "{json} sports: T"
    ip.user_ns["brace_prompt"] = template
    res, messages = run_cell(
        ip, f"%%zeroshot --labels positive,negative --model {tiny_folder} "
            "-p brace_prompt\nT")
    assert res.success and messages == [], (res.error_in_exec, messages)
    assert rendered in res.result.estimator.get_prompt("T")


@pytest.mark.parametrize("brace", ["{", "}"])
def test_lone_brace_is_a_clear_error_everywhere(ip, tiny_folder, capsys, brace):
    prompt = "Text: {text} {labels} " + brace
    msg = LONE_BRACE.format(brace)
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        pd.DataFrame({"text": TEXTS}).llm.classify("text", LABELS, model=tiny_folder,
                                                   prompt=prompt)
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        multi(prompt=prompt.replace("{labels}", "{label}")).fit(None, ML_Y)
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        few(prompt="{examples} " + prompt).fit(FEW_X, FEW_Y)
    ip.user_ns["brace_prompt"] = prompt
    res = ip.run_cell(f"%%zeroshot --labels a,b --model {tiny_folder} -p brace_prompt\nx")
    usage_error(res, capsys, msg)


@pytest.mark.parametrize("placeholder", ["{text!r}", "{text:.3}"])
def test_formatted_text_placeholder_is_not_silently_dropped(placeholder):
    template = f"Text: {placeholder} {{labels}}"
    try:
        clf, messages = messages_of(zero(prompt=template, use_chat_template=False).fit,
                                    None, LABELS)
    except ValueError as exc:  # a clear error is a documented outcome too
        assert "text" in str(exc)
        return
    assert "HELLO" in clf.get_prompt("HELLO") or messages


def test_unknown_indexed_placeholder_is_named():
    clf = zero(prompt="{text} {labels} {foo[x]}", use_chat_template=False)
    try:
        _, messages = messages_of(clf.fit, None, LABELS)
    except ValueError as exc:
        assert "foo" in str(exc)
        return
    assert any("'foo[x]'" in m for m in messages)


# ============================================================ magic options
@pytest.mark.parametrize("line, message", [
    ('--labels ""', "--labels: labels must contain at least one label; got none"),
    ("--labels ,", "--labels: labels must be non-empty strings; got ''"),
    ("--labels a,b --threshold x",
     "zeroshot: argument --threshold: invalid float value: 'x'"),
    ("--labels a,b --input", "zeroshot: argument -i/--input: expected one argument"),
    ("--labels a,b --truncation bogus",
     "zeroshot: argument --truncation: invalid choice: 'bogus' (choose from 'right', "
     "'left', 'middle', 'error')"),
])
def test_more_malformed_magic_options_give_one_line(ip, tiny_folder, capsys, line,
                                                    message):
    res = ip.run_cell(f"%%zeroshot {line} --model {tiny_folder}\nsome text")
    usage_error(res, capsys, message)


@pytest.mark.parametrize("line, message", [
    ("-k x", "fewshot: argument -k/--max-samples: invalid int value: 'x'"),
])
def test_more_malformed_fewshot_options_give_one_line(ip, tiny_folder, capsys, line,
                                                      message):
    res = ip.run_cell(f"%%fewshot {line} --model {tiny_folder}\na: good\n---\nx")
    usage_error(res, capsys, message)


# ===================================================== cell content is data
def test_cell_lines_that_look_like_code_are_only_classified(ip, tiny_folder, tmp_path,
                                                             monkeypatch):
    # Each payload would create its marker file if it ran ($PWNEDi names it).
    marks = [tmp_path / f"pwned-{i}" for i in range(6)]
    for i, mark in enumerate(marks):
        monkeypatch.setenv(f"PWNED{i}", str(mark))
    lines = [
        "__import__('os').system('touch $PWNED0')",
        "{__import__('os').system('touch $PWNED1')}",
        "!touch $PWNED2",
        "$(touch $PWNED3) ${__import__('os').system('touch $PWNED3')}",
        "import os; os.system('touch $PWNED4')",
        "{text} {labels} {0.__class__} %time open(__import__('os').environ['PWNED5'], 'w')",
    ]
    res = ip.run_cell(f"%%zeroshot --labels a,b --model {tiny_folder}\n" + "\n".join(lines))
    assert res.success, res.error_in_exec
    assert res.result.texts == lines
    np.testing.assert_allclose(res.result.probas, from_folder(
        tiny_folder, ["a", "b"]).predict_proba(lines), rtol=0, atol=1e-9)
    assert not any(m.exists() for m in marks)
    # %%fewshot: labels and texts of inline examples are data too.
    code_label = "__import__('os').system('touch $PWNED0')"
    res = ip.run_cell(f"%%fewshot --model {tiny_folder}\n{code_label}: {lines[1]}\n"
                      f"b: {lines[2]}\n---\n{lines[4]}")
    assert res.success, res.error_in_exec
    assert res.result.texts == [lines[4]]
    assert sorted(res.result.classes) == sorted([code_label, "b"])
    assert sorted(res.result.estimator.examples_for([lines[4]])[0]) == sorted(
        [(lines[1], code_label), (lines[2], "b")])
    assert not any(m.exists() for m in marks)


@pytest.mark.parametrize("module", ["notebook.magics", "notebook.panel", "notebook.classify",
                                    "notebook.pandas_accessor", "notebook.inline_examples",
                                    "engine.prompts"])
def test_cell_and_widget_content_never_reaches_eval_or_exec(module):
    """The magics (and the panel, the API and prompt rendering behind them)
    hold no eval/exec/compile call nor IPython's code runners."""
    import importlib

    source = Path(importlib.import_module(f"nbllm.{module}").__file__).read_text()
    assert not re.search(r"(?<![\w.])(eval|exec|compile|__import__)\s*\(", source)
    tree = ast.parse(source)
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert not names & {"eval", "exec", "compile", "__import__", "execfile"}
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not attributes & {"run_cell", "run_code", "ex", "ev", "safe_execfile",
                             "user_expressions", "var_expand"}


# ==================================================================== HTML
@pytest.fixture
def evil_generation(monkeypatch):
    """The model's free generation is a script payload."""
    generation = f'"{SCRIPT}" & more'
    monkeypatch.setattr(_LLMBase, "generate",
                        lambda self, text, max_new_tokens=20: generation)
    return generation


def test_generation_payload_is_escaped_in_previews(ip, tiny_folder, evil_generation):
    evil_prompt = f"{SCRIPT} {{text}} {{labels}}"
    clf = zero(prompt=evil_prompt).fit(None, [SCRIPT, "ok"])
    preview = api.preview(clf, f"text {SCRIPT}")
    assert isinstance(preview, GenerationPreview)
    assert preview.continuation == evil_generation
    page = preview._repr_html_()
    assert_escaped(page)
    assert "&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot; &amp; more" in page

    ip.user_ns["evil_prompt"] = evil_prompt
    res = ip.run_cell(f"%%zeroshot --labels ok,{SCRIPT} --model {tiny_folder} "
                      f"-p evil_prompt --preview 2\n{SCRIPT}\nplain")
    assert res.success, res.error_in_exec
    assert res.result.previews[0].continuation == evil_generation
    assert_escaped(res.result._repr_html_())

    frame = pd.DataFrame({"text": [SCRIPT]})
    assert_escaped(frame.llm.preview("text", 0, labels=[SCRIPT, "ok"], model=tiny_folder,
                                     prompt=evil_prompt)._repr_html_())


def test_panel_html_escapes_text_label_prompt_and_generation(tiny_folder, evil_generation):
    panel = make_panel(tiny_folder, labels=[SCRIPT, "ok"], texts=[SCRIPT, "plain"])
    panel.prompt.value = f"{SCRIPT} {{text}} {{labels}}"
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    assert panel.last_result.classes == [SCRIPT, "ok"]
    assert_escaped(panel_html(panel))
    panel.preview_button.click()
    assert panel.last_error is None, panel.last_error
    page = panel_html(panel)
    assert_escaped(page)
    assert "&amp; more" in page  # the generation is shown, escaped


def test_panel_error_lines_and_column_names_are_escaped(tiny_folder):
    panel = make_panel(tiny_folder)
    panel.model.value = f"/nonexistent/{SCRIPT}"
    panel.classify_button.click()
    assert f"'/nonexistent/{SCRIPT}'" in error_line(panel)  # the load error names it
    assert_escaped(panel_html(panel))
    assert_idle(panel)
    panel.model.value = tiny_folder
    panel.prompt.value = f"{{text}} {{labels}} {{{SCRIPT}}}"
    assert_escaped(panel.validation.value)
    panel.classify_button.click()
    assert error_line(panel) == f"ValueError: prompt: unexpected {{{SCRIPT}}}"
    assert_escaped(panel_html(panel))
    assert_idle(panel)
    panel.prompt.value = f"{SCRIPT} {{text}} {{labels}}"
    panel.classify_button.click()
    assert panel.status.value == "2 texts classified"

    data = pd.DataFrame({SCRIPT: [SCRIPT, "plain"]})
    panel = Panel(data=data, column=SCRIPT, labels=LABELS, threaded=False)
    panel.model.value = tiny_folder
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    assert_escaped(panel_html(panel))


def test_result_tables_and_status_escape_payloads(ip, tiny_folder):
    out = pd.DataFrame({"text": [SCRIPT, "plain"]}).llm.classify(
        "text", [SCRIPT, "ok"], model=tiny_folder)
    assert "<script" not in out._repr_html_().lower()
    result = api.classify([SCRIPT], [SCRIPT, "ok"], model=tiny_folder, progress=False)
    assert isinstance(result, ClassificationResult)
    assert_escaped(result._repr_html_())
    status = ip.run_line_magic("nbllm", f"model '{SCRIPT}'")
    assert session.settings["model"] == SCRIPT
    assert_escaped(status._repr_html_())


# ============================================================== interrupts
def _stop_after(n_calls):
    """An on_rows callback that raises KeyboardInterrupt on its n-th call.

    ``done`` holds the rows of every call, that one included: a batch is put
    in the cache before it is reported."""
    done = []

    def on_rows(rows, values):
        done.append(len(rows))
        if len(done) == n_calls:
            raise KeyboardInterrupt

    on_rows.done = done
    return on_rows


def assert_model_usable(clf):
    import torch

    assert clf.model_.training is False
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


INTERRUPT_TEXTS = ["I love it.", "The train was late again.", "ok", "What a surprise!",
                   "The package arrived damaged."]


@pytest.mark.parametrize("kind", ["zero", "few", "multi"])
def test_interrupt_in_on_rows_keeps_finished_batches(kind, monkeypatch):
    monkeypatch.setattr(multilabel, "_STEP", 1)
    expected = fitted(kind, use_caching=False).predict_proba(INTERRUPT_TEXTS)
    clf = fitted(kind, batch_size=1)
    stop = _stop_after(3)
    with pytest.raises(KeyboardInterrupt):
        clf.label_logprobs(INTERRUPT_TEXTS, on_rows=stop)
    assert stop.done == [1, 1, 1]
    assert_model_usable(clf)
    again = fitted(kind, batch_size=1)
    np.testing.assert_allclose(again.predict_proba(INTERRUPT_TEXTS), expected, rtol=1e-5)
    per_row = len(again.classes_) if kind == "multi" else 1  # one question per label
    assert again.n_cache_hits_ == 3 * per_row
    assert again.n_cache_misses_ == 2 * per_row
    # Recomputed from scratch, the model still gives the same numbers.
    fresh = fitted(kind, use_caching=False).predict_proba(INTERRUPT_TEXTS)
    np.testing.assert_allclose(fresh, expected, rtol=1e-12)


def test_interrupt_in_api_classify_on_rows_keeps_finished_batches():
    expected = zero(use_caching=False).fit(None, LABELS).predict_proba(INTERRUPT_TEXTS)
    clf = zero(batch_size=2).fit(None, LABELS)
    stop = _stop_after(2)
    with pytest.raises(KeyboardInterrupt):
        api.classify(INTERRUPT_TEXTS, estimator=clf, on_rows=stop)
    assert stop.done == [2, 2]
    assert_model_usable(clf)
    result = api.classify(INTERRUPT_TEXTS, estimator=zero(batch_size=2).fit(None, LABELS))
    assert result.estimator.n_cache_hits_ == 4
    np.testing.assert_allclose(result.probas, expected, rtol=1e-5)


@pytest.mark.parametrize("at_call, n_finished", [(1, 0), (3, 1)],
                         ids=["in-the-prefix-pass", "in-the-second-batch"])
def test_interrupt_inside_a_forward_pass(at_call, n_finished):
    """A Stop that lands in the model itself: in the prefix pass or a batch."""
    expected = zero(use_caching=False).fit(None, LABELS).predict_proba(INTERRUPT_TEXTS)
    clf = zero(batch_size=1).fit(None, LABELS)
    clf.loaded_.state.get("prefix_kv", {}).clear()
    calls, finished = [], []

    def hook(module, args, kwargs):
        calls.append(1)
        if len(calls) == at_call:
            raise KeyboardInterrupt

    handle = clf.model_.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with pytest.raises(KeyboardInterrupt):
            clf.label_logprobs(INTERRUPT_TEXTS,
                                on_rows=lambda rows, values: finished.extend(rows))
    finally:
        handle.remove()
    assert len(finished) == n_finished  # the prefix pass, then one text per batch
    assert_model_usable(clf)
    again = zero(batch_size=1).fit(None, LABELS)
    np.testing.assert_allclose(again.predict_proba(INTERRUPT_TEXTS), expected, rtol=1e-5)
    assert again.n_cache_hits_ == len(finished)
    np.testing.assert_allclose(
        zero(use_caching=False).fit(None, LABELS).predict_proba(INTERRUPT_TEXTS),
        expected, rtol=1e-12)


def test_interrupt_in_the_panel_keeps_it_usable_and_the_finished_rows(tiny_folder,
                                                                     monkeypatch):
    real = api.build_estimator
    monkeypatch.setattr(api, "build_estimator",
                        lambda *a, **k: real(*a, **dict(k, batch_size=1)))
    panel = make_panel(tiny_folder, texts=INTERRUPT_TEXTS)

    def interrupt(change):
        if change["new"] == 2:
            raise KeyboardInterrupt

    panel.progress.observe(interrupt, "value")
    panel.classify_button.click()
    assert isinstance(panel.last_error, KeyboardInterrupt)
    assert error_line(panel) == "KeyboardInterrupt: "
    assert_idle(panel)
    panel.progress.unobserve(interrupt, "value")
    hits = result_cache.hits
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    assert panel.status.value == "5 texts classified"
    assert result_cache.hits - hits == 2
    np.testing.assert_allclose(panel.last_result.probas,
                               from_folder(tiny_folder).predict_proba(INTERRUPT_TEXTS),
                               rtol=0, atol=1e-9)
    assert_idle(panel)


def test_lone_surrogates_are_replaced_with_a_warning():
    # Found by the fuzzer: tokenizers raise a TypeError on such strings.
    clf = fitted("zero")
    probas, messages = messages_of(clf.predict_proba, ["ok \ud800 fine", "plain"])
    assert messages == ["1 text(s) contain invalid Unicode (lone surrogates); those "
                        "characters were replaced with U+FFFD"]
    np.testing.assert_allclose(probas[0], clf.predict_proba(["ok \ufffd fine"])[0], rtol=1e-6)
