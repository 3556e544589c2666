"""Property tests (Hypothesis) on prompt rendering, the label trie and scoring.

For any texts, labels and templates, nbllm either raises a clear ValueError or
gives exactly what an independent oracle gives: ``str.format`` for rendering,
a set of prefixes for the trie, and one plain forward pass per (prompt, label)
on the tiny model for scoring.
"""

import re
import string
import warnings
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbllm import ZeroShotClassifier
from nbllm.engine.scoring.prompts import PromptRenderer, template_placeholders
from nbllm.engine.scoring.trie import LabelTrie

from tiny import get_tiny_model, get_tiny_tokenizer, oracle_matrix

# Any unicode text, NUL bytes, braces and placeholder look-alikes included.
TEXTS = st.text(
    alphabet=st.one_of(st.characters(), st.sampled_from(list("{}\x00\n\t "))),
    max_size=40,
) | st.sampled_from(["{text}", "{labels}", "{", "}}", "{0}", "{text!r}", ""])

TEMPLATE_PARTS = st.lists(
    st.sampled_from(["Text: ", "{text}", "{labels}", "{{", "}}", "{", "}", "\n",
                     "{other}", "{}", "Label:", " ", "é", "{0}"]),
    max_size=8,
).map("".join)

LABEL_WORDS = st.text(alphabet=string.ascii_letters + " éü-", min_size=0, max_size=12)

# Derandomized, so CI runs the same examples every time (a random run found
# the lone-surrogate bug; tests/test_input_texts.py keeps that case).
FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


class _Keep(dict):
    """format_map values: known keys, and unknown ones rendered as written."""

    def __missing__(self, key):
        return "{" + key + "}"


def format_oracle(template, text, labels):
    """What the template means, by plain str.format (which never re-reads the
    values it inserts).

    Positional fields ('{}', '{0}') are kept as '{}': they are renamed to a
    keyword that renders as '{}', reading the template left to right so that
    escaped braces ('{{}}' is a literal '{}') are left alone.
    """
    positional = re.sub(r"\{\{|\}\}|\{0?\}",
                        lambda m: "{_positional_}" if m.group() in ("{}", "{0}")
                        else m.group(), template)
    return positional.format_map(_Keep(text=text, labels=labels, _positional_="{}"))


@FAST
@given(template=TEMPLATE_PARTS, text=TEXTS, labels=st.lists(LABEL_WORDS, max_size=3))
def test_rendering_equals_str_format_or_raises_a_clear_error(template, text, labels):
    try:
        template_placeholders(template)
    except ValueError as exc:
        assert str(exc).startswith("The prompt is not a valid template (")
        assert str(exc).endswith("); write literal braces as '{{' and '}}'")
        return
    rendered = PromptRenderer(template, {"labels": labels}).render(text)
    assert rendered == format_oracle(template, text, labels)


@FAST
@given(text=TEXTS)
def test_text_is_inserted_verbatim_through_the_chat_template(text):
    tok = get_tiny_tokenizer()
    renderer = PromptRenderer("Text: {text}\nLabels: {labels}", {"labels": ["a"]},
                              tok, use_chat=True)
    message = f"Text: {text}\nLabels: ['a']"
    expected = tok.apply_chat_template([{"role": "user", "content": message}],
                                       tokenize=False, add_generation_prompt=True)
    assert renderer.render(text) == expected


TOKEN_SEQS = st.lists(st.lists(st.integers(0, 6), min_size=1, max_size=4),
                      min_size=1, max_size=6)


@FAST
@given(label_ids=TOKEN_SEQS)
def test_trie_holds_each_distinct_prefix_once(label_ids):
    trie = LabelTrie(label_ids)
    prefixes = {tuple(ids[:i]) for ids in label_ids for i in range(1, len(ids) + 1)}
    assert len(trie) == len(prefixes)
    for ids, path in zip(label_ids, trie.paths):
        assert [trie.tokens[n] for n in path] == ids
        assert trie.ancestors_or_self(path[-1]) == path
        assert [trie.depths[n] for n in path] == list(range(1, len(ids) + 1))
    # A node is internal exactly when a longer prefix of some label extends it.
    node_of = {tuple(ids[:i + 1]): path[i]
               for ids, path in zip(label_ids, trie.paths) for i in range(len(ids))}
    internal = {node_of[prefix[:-1]] for prefix in prefixes if len(prefix) > 1}
    assert set(trie.internal) == internal


@FAST
@given(label_ids=st.lists(st.lists(st.integers(0, 6), max_size=3), min_size=1,
                          max_size=4).filter(lambda seqs: any(not s for s in seqs)))
def test_trie_rejects_an_empty_label(label_ids):
    with pytest.raises(ValueError, match="^every label must have at least one token$"):
        LabelTrie(label_ids)


LABEL_SETS = st.lists(LABEL_WORDS, min_size=1, max_size=4)


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(labels=LABEL_SETS, texts=st.lists(TEXTS, min_size=1, max_size=3),
       template=st.sampled_from([None, "{text} -> {labels}:", "Labels: {labels}\n{text}\nLabel: "]),
       chat=st.booleans())
def test_scoring_equals_the_oracle_or_raises_a_clear_error(labels, texts, template, chat):
    model, tok = get_tiny_model(), get_tiny_tokenizer()
    clf = ZeroShotClassifier(model=model, tokenizer=tok, prompt=template,
                             use_chat_template=chat, progress=False, use_caching=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # single-label and conversion warnings
        try:
            clf.fit(None, labels)
        except ValueError as exc:
            blank = [w for w in labels if not w.strip()]
            assert blank, f"unexpected error {exc}"
            assert str(exc) == (f"labels must be non-empty strings; got {blank[0]!r} "
                                "in the classes") or "tokenizes to no tokens" in str(exc)
            return
        logprobs = clf.label_logprobs(texts)
    special = not clf.use_chat_template_
    prompts = [tok(clf.get_prompt(t), add_special_tokens=special)["input_ids"]
               for t in texts]
    expected = np.array(oracle_matrix(model, prompts, clf.label_ids_))
    np.testing.assert_allclose(logprobs, expected, atol=1e-4)
    # The label ids are the labels' own tokens (after the prompt's trailing
    # space where the raw prompt ends with one).
    for word, ids in zip(clf.classes_, clf.label_ids_):
        assert tok.decode(ids).strip() == str(word).strip()
