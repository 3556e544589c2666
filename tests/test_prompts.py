"""Prompt templates: placeholder checks, rendering and few-shot examples."""

import re
import warnings

import pytest

from nbllm.engine.scoring.prompts import (
    DEFAULT_PROMPT_FEW_SHOT,
    DEFAULT_PROMPT_ZERO_SHOT,
    FEW_SHOT_PLACEHOLDERS,
    ZERO_SHOT_PLACEHOLDERS,
    PromptRenderer,
    check_template,
    format_examples,
    template_placeholders,
)
from tiny import CHAT_TEMPLATE, get_tiny_tokenizer


def test_default_prompts_have_exactly_the_expected_placeholders():
    assert template_placeholders(DEFAULT_PROMPT_ZERO_SHOT) == {"labels", "text"}
    assert template_placeholders(DEFAULT_PROMPT_FEW_SHOT) == {
        "examples", "labels", "text"
    }


def test_template_placeholders_ignores_escaped_braces():
    assert template_placeholders("{{not}} {text} {{x}}") == {"text"}


def test_template_placeholders_rejects_lone_brace():
    with pytest.raises(ValueError, match=re.escape(
        "The prompt is not a valid template (Single '{' encountered in format "
        "string); write literal braces as '{{' and '}}'"
    )):
        template_placeholders("Text: {text} {")


def test_check_template_is_silent_when_placeholders_match():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_template(DEFAULT_PROMPT_ZERO_SHOT, ZERO_SHOT_PLACEHOLDERS)
        check_template(DEFAULT_PROMPT_FEW_SHOT, FEW_SHOT_PLACEHOLDERS)


def test_check_template_warns_missing_keys():
    with pytest.warns(UserWarning) as record:
        check_template("Text: {text}", ZERO_SHOT_PLACEHOLDERS)
    assert [str(w.message) for w in record] == [
        "The prompt may not be correct, it expects 2 placeholders: 'labels', "
        "'text', missing keys: 'labels'"
    ]


def test_check_template_warns_missing_and_extra_keys():
    with pytest.warns(UserWarning) as record:
        check_template("{text} {foo} {bar}", FEW_SHOT_PLACEHOLDERS)
    assert [str(w.message) for w in record] == [
        "The prompt may not be correct, it expects 3 placeholders: 'examples', "
        "'labels', 'text', missing keys: 'examples', 'labels', extra keys: "
        "'bar', 'foo'"
    ]


def test_check_template_wording_matches_skorch():
    skorch_llm = pytest.importorskip("skorch.llm.classifier")
    template = "Text: {text} {other}"
    expected = dict.fromkeys(ZERO_SHOT_PLACEHOLDERS)
    with pytest.warns(UserWarning) as ours:
        check_template(template, expected)
    with pytest.warns(UserWarning) as theirs:
        skorch_llm._check_format_string(template, expected)
    assert str(ours[0].message) == str(theirs[0].message)


def test_renderer_fills_fields_and_inserts_text():
    r = PromptRenderer("L={labels} T={text}!", {"labels": ["a", "b"]})
    assert r.user_message("hi") == "L=['a', 'b'] T=hi!"
    assert r.render("hi") == "L=['a', 'b'] T=hi!"
    assert r.head() == "L=['a', 'b'] T="


def test_renderer_inserts_text_verbatim():
    r = PromptRenderer("<{text}> {labels}", {"labels": ["x"]})
    for text in ["{labels}", "{text}", "{", "}", "{{0}}", "a {b} c"]:
        assert r.render(text) == f"<{text}> ['x']"


def test_renderer_converts_non_string_text():
    assert PromptRenderer("[{text}]", {}).render(42) == "[42]"


def test_renderer_keeps_escaped_braces_and_unknown_placeholders():
    r = PromptRenderer("{{json}} {text} {unknown}", {})
    assert r.render("t") == "{json} t {unknown}"


def test_renderer_with_text_twice_inserts_it_twice_and_head_stops_at_first():
    r = PromptRenderer("{text} / {text}", {})
    assert r.render("z") == "z / z"
    assert r.head() == ""


def test_renderer_with_positional_placeholder_renders_it_as_is():
    # Unknown placeholders are documented to render as themselves; a bare
    # "{}" must not crash rendering with an IndexError.
    r = PromptRenderer("{text} {}", {})
    assert r.render("t") == "t {}"


def test_chat_renderer_wraps_user_message_with_generation_prompt():
    tok = get_tiny_tokenizer()
    r = PromptRenderer("Q: {text}", {}, tokenizer=tok, use_chat=True)
    assert tok.chat_template == CHAT_TEMPLATE
    assert r.user_message("hi") == "Q: hi"
    assert r.render("hi") == (
        "<|im_start|>user\nQ: hi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert r.head() == "<|im_start|>user\nQ: "


def test_chat_renderer_inserts_jinja_syntax_verbatim():
    tok = get_tiny_tokenizer()
    r = PromptRenderer("{text}", {}, tokenizer=tok, use_chat=True)
    assert r.render("{{ x }} {% if %}") == (
        "<|im_start|>user\n{{ x }} {% if %}<|im_end|>\n<|im_start|>assistant\n"
    )


def test_format_examples_default_format():
    assert format_examples([("good film", "pos"), ("bad film", "neg")]) == (
        "Text: good film\nLabel: pos\n\nText: bad film\nLabel: neg"
    )


def test_format_examples_empty_and_custom_format():
    assert format_examples([]) == ""
    assert format_examples([("t", 1)], "{label}<-{text}") == "1<-t"


def test_format_examples_inserts_example_text_verbatim():
    # An example text that contains "{label}" must not get the label put in.
    assert format_examples([("I like {label} and {text}", "pos")]) == (
        "Text: I like {label} and {text}\nLabel: pos"
    )
