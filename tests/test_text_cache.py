"""The text-level result cache: a rerun is answered before any tokenizing.

The result cache is keyed by (model fingerprint, prompt token ids, label
ids); in front of it, within a process, a key of the rendered prompt text
(with the settings that decide its token ids) answers a rerun without calling
the tokenizer.
"""

import re

import numpy as np
import pytest

from nbllm.engine.scoring import text_scorer
from nbllm.engine.scoring.result_cache import result_cache, result_key, text_result_key
from entry_points import CUT, LONG_TEXT, SMALL_CONTEXT, WHERE, small
from quality_helpers import zero_shot

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")

LABELS = ["negative", "positive"]
TEXTS = ["a wonderful surprise", "the train was late", "so so"]


@pytest.fixture
def encoded(monkeypatch):
    """The texts each tokenizing call of the engine received."""
    calls = []
    real = text_scorer.TextScorer._encode

    def spy(self, texts, *args, **kwargs):
        calls.append(list(texts))
        return real(self, texts, *args, **kwargs)

    monkeypatch.setattr(text_scorer.TextScorer, "_encode", spy)
    return calls


def test_a_rerun_does_not_tokenize(encoded):
    clf = zero_shot().fit(None, LABELS)
    first = clf.predict_proba(TEXTS)
    assert encoded == [TEXTS]
    second = clf.predict_proba(TEXTS)
    assert encoded == [TEXTS]  # no second tokenizing
    np.testing.assert_array_equal(first, second)
    assert (clf.n_cache_hits_, clf.n_cache_misses_) == (3, 3)
    assert len(result_cache) == 3  # results, not keys


def test_only_new_texts_are_tokenized(encoded):
    clf = zero_shot().fit(None, LABELS)
    clf.predict_proba(TEXTS[:2])
    both = clf.predict_proba(TEXTS[::-1])
    assert encoded == [TEXTS[:2], [TEXTS[2]]]
    np.testing.assert_allclose(both, clf.set_params(use_caching=False).fit(None, LABELS)
                               .predict_proba(TEXTS[::-1]), rtol=0, atol=1e-6)


def test_a_text_scored_under_other_token_ids_is_found_by_its_ids(encoded):
    """A second estimator on the same prompts finds them through the token
    ids (and fills the text key), so the two keys always agree."""
    zero_shot().fit(None, LABELS).predict_proba(TEXTS)
    # Drop the text keys only (one LRU holds both kinds; a text key's value
    # is its result's key, a result's an array).
    entries = result_cache._entries
    for key in [k for k, v in entries.items() if not isinstance(v, np.ndarray)]:
        del entries[key]
    assert len(result_cache) == 3
    clf = zero_shot().fit(None, LABELS)
    clf.predict_proba(TEXTS)
    assert (clf.n_cache_hits_, clf.n_cache_misses_) == (3, 0)
    clf.predict_proba(TEXTS)
    assert len(encoded) == 2


def test_the_text_key_depends_on_everything_that_decides_the_ids():
    base = text_result_key("fp", "True|right", "Text: a", [[1], [2]])
    assert text_result_key("fp", "True|right", "Text: a", [[1], [2]]) == base
    others = [text_result_key("fp2", "True|right", "Text: a", [[1], [2]]),
              text_result_key("fp", "False|right", "Text: a", [[1], [2]]),
              text_result_key("fp", "True|left", "Text: a", [[1], [2]]),
              text_result_key("fp", "True|right", "Text: b", [[1], [2]]),
              text_result_key("fp", "True|right", "Text: a", [[1], [3]]),
              text_result_key("fp", "True|right", "Text: a", [[1, 2]])]
    assert len({base, *others}) == 7
    # Never equal to a token-id key.
    assert base != result_key("fp", [1], [[1], [2]])


def test_a_cut_text_is_tokenized_and_warned_about_on_every_call(encoded):
    clf = small("zero", truncation="right").fit(None, LABELS)
    msg = CUT.format(n=1, context=SMALL_CONTEXT, where=WHERE["right"])
    for _ in range(2):
        with pytest.warns(UserWarning, match=f"^{re.escape(msg)}$"):
            clf.predict_proba([LONG_TEXT, "short"])
    assert encoded == [[LONG_TEXT, "short"], [LONG_TEXT]]
    assert (clf.n_cache_hits_, clf.n_cache_misses_) == (2, 2)


def test_truncation_modes_do_not_share_text_keys(encoded):
    right = small("zero", truncation="right").fit(None, LABELS)
    left = small("zero", truncation="left").fit(None, LABELS)
    with pytest.warns(UserWarning):
        a = right.predict_proba([LONG_TEXT])
    with pytest.warns(UserWarning):
        b = left.predict_proba([LONG_TEXT])
    assert not np.allclose(a, b)


def test_no_text_keys_without_caching(encoded):
    clf = zero_shot(use_caching=False).fit(None, LABELS)
    clf.predict_proba(TEXTS)
    clf.predict_proba(TEXTS)
    assert len(encoded) == 2
    assert result_cache.nbytes == 0 and len(result_cache) == 0  # no text keys either
