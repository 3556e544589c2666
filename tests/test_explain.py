"""explain: word contributions computed by the exact engine (tiny model).

Exactness is checked against an independent computation: the estimator's own
predict_proba / label_log_odds on the full and on the perturbed texts.
"""

import re

import numpy as np
import pytest

from nbllm.engine.scoring import prompt_tree
from nbllm.engine.scoring.result_cache import disk_cache, result_cache
from nbllm.estimators import explain as explaining
from nbllm.estimators.explain import features, without

from quality_helpers import few_shot, multi_label, zero_shot, POOL_X, POOL_Y, QUERIES

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")

LABELS = ["positive", "negative", "neutral"]
TEXTS = ["I love it so much", "The train was late again this morning."]


def log_odds(p, c):
    return np.log(p[c]) - np.log(p.sum() - p[c])


def test_occlusion_equals_the_score_difference_computed_independently():
    clf = zero_shot(use_caching=False).fit(None, LABELS)
    ex = clf.explain(TEXTS)
    assert ex.method == "occlusion" and len(ex) == 2
    for row, text in zip(ex.rows, TEXTS):
        assert [text[a:b] for a, b in row.spans] == text.split()
        full = clf.predict_proba([text])[0]
        c = int(np.argmax(full))
        assert row.predicted == clf.classes_[c]
        occluded = [without(text, row.spans, np.arange(len(row.spans)) != k)
                    for k in range(len(row.spans))]
        probas = clf.predict_proba(occluded)
        expected = [log_odds(full, c) - log_odds(p, c) for p in probas]
        np.testing.assert_allclose(row.contributions, expected, atol=1e-5)
        np.testing.assert_allclose(row.label_contributions,
                                   np.log(full)[None] - np.log(probas), atol=1e-5)


def test_removal_rule():
    text = "  I love\nit.  "
    spans = features(text)[0]
    assert [text[a:b] for a, b in spans] == ["I", "love", "it."]
    assert without(text, spans, [False, True, True]) == "  love\nit.  "
    assert without(text, spans, [True, False, True]) == "  I\nit.  "
    assert without(text, spans, [True, True, False]) == "  I love  "
    assert without(text, spans, [False, False, False]) == ""


def test_shapley_values_add_up_to_full_minus_empty():
    clf = zero_shot(use_caching=False).fit(None, LABELS)
    ex = clf.explain(TEXTS[:1], method="shapley", n_samples=3)
    row = ex[0]
    full, empty = clf.predict_proba([TEXTS[0], ""])
    c = int(np.argmax(full))
    assert row.contributions.sum() == pytest.approx(log_odds(full, c) - log_odds(empty, c),
                                                    abs=1e-5)
    assert ex.n_samples == 3 and "shapley, 3 orders" in repr(ex)


def test_one_batched_call_and_the_prefix_tree_shares_the_occluded_copies(spy_score,
                                                                          monkeypatch):
    planned = []
    original = prompt_tree.plan_spans

    def plan(prompt_ids, root_length, min_saving=None):
        root = original(prompt_ids, root_length, min_saving)
        planned.append((root, min_saving))
        return root

    from nbllm.engine.scoring import tree_mask
    monkeypatch.setattr(tree_mask, "plan_spans", plan)
    clf = zero_shot(use_caching=False).fit(None, LABELS)
    text = "one two three four five six seven eight nine ten eleven twelve"
    clf.explain([text])
    assert len(spy_score) == 1 and len(spy_score[0]) == 13  # full + 12 occluded
    # explain's own span threshold, for this call only.
    assert [saving for _, saving in planned] == [explaining.MIN_SAVING]
    # Below it, the same prompts still share the words before each gap.
    root = original([list(p) for p in spy_score[0]], 1, 16)
    assert len(list(root.walk())) > 1


def test_perturbed_prompts_stay_out_of_the_result_caches(tmp_path):
    result_cache.clear()
    clf = zero_shot(cache_dir=str(tmp_path)).fit(None, LABELS)
    clf.explain(TEXTS)
    assert len(result_cache) == 0
    assert len(disk_cache(str(tmp_path))) == 0


def test_similar_few_shot_keeps_the_original_texts_examples(spy_score, tiny_tok):
    clf = few_shot(example_selection="similar", max_samples=2,
                   use_caching=False).fit(POOL_X, POOL_Y)
    text = QUERIES[0]
    prompt = clf.get_prompt(text)
    head = prompt[:prompt.rindex(text)]
    ex = clf.explain([text])
    scored = [tiny_tok.decode(ids, skip_special_tokens=True) for ids in spy_score[-1]]
    assert len(scored) == len(text.split()) + 1
    assert all(p.startswith(head) for p in scored)
    # The perturbed texts alone would get other examples.
    words = text.split()
    assert any(clf.examples_for([" ".join(words[:k] + words[k + 1:])])
               != clf.examples_for([text]) for k in range(len(words)))
    full = clf.predict_proba([text])[0]
    assert ex[0].probability == pytest.approx(full.max(), abs=1e-6)


def test_multi_label_explains_each_labels_own_log_odds():
    clf = multi_label(use_caching=False).fit(None, [["sports", "politics"], ["science"]])
    text = "Our team won the match"
    ex = clf.explain([text])
    row = ex[0]
    full = clf.label_log_odds([text])[0]
    occluded = clf.label_log_odds([without(text, row.spans, np.arange(5) != k)
                                   for k in range(5)])
    c = int(np.argmax(full))
    assert row.predicted == clf.classes_[c]
    np.testing.assert_allclose(row.contributions, full[c] - occluded[:, c], atol=1e-5)
    logp = lambda x: -np.log1p(np.exp(-x))  # noqa: E731
    np.testing.assert_allclose(row.label_contributions, logp(full)[None] - logp(occluded),
                               atol=1e-5)
    assert ex.target == "each label's own log-odds"


def test_calibrated_estimator_is_explained_as_it_returns_probabilities():
    clf = zero_shot(use_caching=False, calibration="content_free").fit(None, LABELS)
    row = clf.explain(TEXTS[:1])[0]
    full = clf.predict_proba(TEXTS[:1])[0]
    c = int(np.argmax(full))
    occluded = clf.predict_proba([without(TEXTS[0], row.spans, np.arange(5) != 0)])[0]
    assert row.contributions[0] == pytest.approx(log_odds(full, c) - log_odds(occluded, c),
                                                 abs=1e-5)


def test_batch_calibration_explains_uncalibrated_scores_and_says_so():
    clf = zero_shot(use_caching=False, calibration="batch").fit(None, LABELS)
    ex = clf.explain(TEXTS[:1])
    assert ex.note == ("calibration='batch' makes each row depend on the others: the "
                       "uncalibrated probabilities are explained")
    assert "note: calibration='batch'" in repr(ex)


# ----------------------------------------------------------------- bad input
def test_bad_input_rows_get_one_line_outcomes_and_the_rest_is_explained():
    clf = zero_shot(use_caching=False).fit(None, LABELS)
    long_text = "word " * 300
    ex = clf.explain(["", None, "awful", long_text, "I love it"])
    outcomes = [r.outcome for r in ex.rows]
    assert outcomes[0] == "not explained: the text is empty (no words)"
    assert outcomes[1] == "not explained: the text is missing (None or NaN)"
    assert outcomes[2] == "one word: its contribution is the change from the empty text"
    assert re.fullmatch(r"not explained: its prompt needs \d+ tokens, more than the "
                        r"model's context of 256 leaves \(\d+\); shorten the text",
                        outcomes[3])
    assert outcomes[4] is None and len(ex[4].contributions) == 3
    assert ex[2].contributions.shape == (1,)
    frame = ex.to_frame()
    assert frame["row"].tolist() == [0, 1, 2, 3, 4, 4, 4]  # nothing lost
    assert all("\n" not in o for o in outcomes if o)


def test_single_label_explains_its_own_log_probability():
    with pytest.warns(UserWarning, match="Only one label"):
        clf = zero_shot(use_caching=False).fit(None, ["positive"])
    ex = clf.explain(["I love it"])
    assert ex.note == ("one label: its normalised probability is always 1, so its own "
                       "log-probability is explained (as probas_sum_to_1=False gives it)")
    full, occluded = clf.label_logprobs(["I love it", "love it"])[:, 0]
    assert ex[0].contributions[0] == pytest.approx(full - occluded, abs=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "lime"}, "method must be one of 'occlusion', 'shapley'; got 'lime'"),
    ({"n_samples": 0}, "n_samples must be a whole number of at least 1; got 0"),
    ({"max_features": 1.5}, "max_features must be a whole number of at least 1; got 1.5"),
])
def test_bad_options_raise_one_line(kwargs, message):
    clf = zero_shot(use_caching=False).fit(None, LABELS)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        clf.explain(TEXTS, **kwargs)


def test_a_single_string_is_refused():
    clf = zero_shot(use_caching=False).fit(None, LABELS)
    with pytest.raises(ValueError, match=re.escape("got a single string; wrap it in a "
                                                   "list: [text]")):
        clf.explain("I love it")


# ------------------------------------------------------------- long texts
def test_long_texts_are_explained_over_sentences_or_word_groups():
    sentences = " ".join(f"Sentence {i} has five words." for i in range(10))
    spans, grouping = features(sentences, max_features=20)
    assert grouping == "sentences" and len(spans) == 10
    assert sentences[spans[0][0]:spans[0][1]] == "Sentence 0 has five words."
    plain = " ".join(f"w{i}" for i in range(50))
    spans, grouping = features(plain, max_features=20)
    assert grouping == "groups of 3 words" and len(spans) == 17
    assert plain[spans[0][0]:spans[0][1]] == "w0 w1 w2"
    clf = zero_shot(use_caching=False).fit(None, LABELS)
    ex = clf.explain([plain], max_features=20)
    assert ex[0].grouping == "groups of 3 words" and len(ex[0].contributions) == 17
    assert "[groups of 3 words]" in repr(ex) and "[groups of 3 words]" in ex._repr_html_()


# ------------------------------------------------------------------ display
def test_html_is_escaped_inline_and_has_a_legend():
    clf = zero_shot(use_caching=False).fit(None, LABELS)
    ex = clf.explain(["<script>alert(1)</script> & more"])
    page = ex._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "tex2jax_ignore mathjax_ignore" in page
    assert "contribution to the log-odds" in page and "against" in page
    assert "<style" not in page and "class=\"nbllm-explain" in page
    assert re.search(r'title="[+-]\d\.\d{3}"', page)  # the value on hover
    assert "rgba(230,97,1," in page or "rgba(33,102,172," in page


def test_frame_columns():
    clf = zero_shot(use_caching=False).fit(None, LABELS)
    frame = clf.explain(["I love it"]).to_frame()
    assert list(frame.columns) == (["row", "unit", "word", "start", "end", "label",
                                    "contribution"]
                                   + [f"logp:{c}" for c in clf.classes_] + ["outcome"])
    assert frame["word"].tolist() == ["I", "love", "it"]
    assert frame["start"].tolist() == [0, 2, 7]


def test_status_line_reports_the_work():
    from nbllm.engine import status

    lines = []
    clf = zero_shot(use_caching=False).fit(None, LABELS)
    with status.listening(lines.append):
        clf.explain(["I love it"])
    assert "explaining 1 text(s) by occlusion: scoring 4 prompts\u2026" in lines


def test_module_constants_are_the_documented_defaults():
    import inspect

    from nbllm.estimators.base import _LLMBase

    params = inspect.signature(_LLMBase.explain).parameters
    assert params["n_samples"].default == explaining.N_SAMPLES
    assert params["max_features"].default == explaining.MAX_FEATURES
