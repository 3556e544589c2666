"""Raw prompts that end with a space: the space is scored with the label.
"""

import math

import numpy as np
import pytest

from nbllm.engine.scoring.prompts import PromptRenderer, label_token_ids, trailing_space
from tiny import get_tiny_model, get_tiny_tokenizer, oracle_logprob

from quality_helpers import (
    CLASSES,
    LABELS,
    TEXTS,
    chat,
    ids_of,
    oracle_row,
    zero_shot,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")


RAW_PROMPT = "Labels: {labels}\nText: {text}\nCategory: "


def test_trailing_space_helpers():
    assert trailing_space("Category: ") == " "
    assert trailing_space("Category:  ") == "  "
    assert trailing_space("Category:") == ""
    assert trailing_space("Category:\n") == ""
    tok = get_tiny_tokenizer()
    assert label_token_ids(tok, "positive") == ids_of("positive")
    assert label_token_ids(tok, "positive", " ") == ids_of("x positive")[len(ids_of("x")):]
    assert label_token_ids(tok, "positive", " ") != ids_of("positive")
    renderer = PromptRenderer("Q: {text} A: ", {}, strip_end=1)
    assert renderer.render("hi") == "Q: hi A:"
    assert renderer.head() == "Q: "


def test_raw_prompt_with_trailing_space_scores_the_joint_string():
    clf = zero_shot(prompt=RAW_PROMPT, use_chat_template=False,
                    probas_sum_to_1=False).fit(None, LABELS)
    assert clf.prompt_mode().label_prefix == " "
    assert clf.get_prompt("I love it.") == (
        "Labels: ['negative', 'neutral', 'positive']\nText: I love it.\nCategory:")
    expected = []
    for text in TEXTS:
        prompt = clf.get_prompt(text)
        assert prompt + " " == RAW_PROMPT.format(
            labels="['negative', 'neutral', 'positive']", text=text)
        p_ids = ids_of(prompt, special=True)
        row = []
        for label, label_ids in zip(CLASSES, clf.label_ids_):
            joint = ids_of(prompt + " " + label, special=True)
            assert joint[:len(p_ids)] == p_ids
            assert label_ids == joint[len(p_ids):]
            assert label_ids != ids_of(label)
            row.append(math.exp(oracle_logprob(get_tiny_model(), p_ids, label_ids)))
        expected.append(row)
    np.testing.assert_allclose(clf.predict_proba(TEXTS), expected, rtol=1e-5, atol=0)


def test_chat_prompt_with_trailing_space_is_unaffected():
    # 'auto' sends a prompt ending with a space raw; True still wraps it.
    clf = zero_shot(prompt=RAW_PROMPT, probas_sum_to_1=False,
                    use_chat_template=True).fit(None, LABELS)
    assert clf.use_chat_template_ is True
    assert clf.prompt_mode().label_prefix == ""
    assert clf.label_ids_ == [ids_of(label) for label in CLASSES]
    message = RAW_PROMPT.format(labels="['negative', 'neutral', 'positive']", text="hi")
    assert clf.get_prompt("hi") == chat(message)
    expected = np.exp([oracle_row(clf.get_prompt(t), clf.label_ids_, False)
                       for t in TEXTS])
    np.testing.assert_allclose(clf.predict_proba(TEXTS), expected, rtol=1e-5, atol=0)


def test_prompt_without_trailing_space_keeps_plain_label_ids():
    clf = zero_shot(prompt=RAW_PROMPT.rstrip(), use_chat_template=False).fit(None, LABELS)
    assert clf.prompt_mode().label_prefix == ""
    assert clf.label_ids_ == [ids_of(label) for label in CLASSES]
