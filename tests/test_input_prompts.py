"""Bad prompt templates through every entry point: placeholders, braces,
format specs.
"""

import re

import pandas as pd
import pytest

import nbllm  # noqa: F401  (registers the df.llm accessor)
from entry_points import (  # noqa: F401  (fixtures among them)
    FEW_X,
    FEW_Y,
    LABELS,
    LONE_BRACE,
    ML_Y,
    TEXTS,
    few,
    messages_of,
    multi,
    run_cell,
    usage_error,
    zero,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")


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
    assert res.result.estimator.get_prompt("x") == "x ['a', 'b'] {foo}"  # kept as is
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
