"""Texts longer than the context: truncation='right'|'left'|'middle'|'error',
through every entry point.
"""

import math
import re
import warnings

import numpy as np
import pandas as pd
import pytest

import nbllm  # noqa: F401  (registers the df.llm accessor)
from nbllm.engine.scoring import text_scorer
from nbllm.estimators.multi_label import MultiLabelZeroShotClassifier
from tiny import SENTENCES, oracle_logprob
from entry_points import (  # noqa: F401  (fixtures among them)
    CUT,
    LABELS,
    LONG_TEXT,
    ML_Y,
    SHORT_FEW_PROMPT,
    SMALL_CONTEXT,
    WHERE,
    few,
    from_folder,
    messages_of,
    multi,
    prompt_ids,
    run_cell,
    small,
    usage_error,
    zero,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")


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
