"""The prefix tree over a call's prompts: the plan, exactness on every family, cost.

Every shared span's KV is computed once, from its parent's, and the rows below
it attend to it; the scores must equal a plain float32 forward pass over each
prompt + label, whatever the prompts share: nothing, everything, nested
prefixes of ragged lengths.
"""

import copy
import warnings

import numpy as np
import pytest
import torch

from families import FAMILIES, family_model
from nbllm.engine.loading import models
from nbllm.engine.scoring import prefix as prefix_module
from nbllm.engine.scoring.prompt_tree import MIN_SAVING, plan_spans, unique_positions
from nbllm.engine.scoring.scorer import LabelScorer
from nbllm.engine.scoring.tree_mask import TreeMaskBackend
from nbllm.engine.scoring.trie import LabelTrie
from tiny import get_tiny_model, get_tiny_tokenizer, oracle_logprob

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VOCAB = len(get_tiny_tokenizer())
LABELS = [[40], [40, 41], [40, 42, 43], [44, 45]]
TREE_FAMILIES = sorted(set(FAMILIES) - {"t5", "bart", "bloom"})


def _random(g, n):
    return torch.randint(2, VOCAB, (n,), generator=g).tolist()


def nested_prompts(seed=0):
    """Prompts sharing nested prefixes of ragged lengths, and one sharing nothing.

    head (5) + block B (20) + tails; head + B + C (18) + tails; head + block D
    (24) + tails; head + a short run (3, too short to be a span) + tails; an
    unrelated prompt; and one prompt that is another's prefix plus one token.
    """
    g = torch.Generator().manual_seed(seed)
    head, b, c, d, short = (_random(g, n) for n in (5, 20, 18, 24, 3))
    prompts = [head + b + _random(g, n) for n in (1, 7, 30)]
    prompts += [head + b + c + _random(g, n) for n in (2, 11)]
    prompts += [head + d + _random(g, n) for n in (4, 9, 1)]
    prompts += [head + short + _random(g, n) for n in (6, 2)]
    prompts += [_random(g, 13)]
    prompts.append(prompts[1] + _random(g, 1))
    return head, prompts


def fresh_loaded():
    """The tiny model on its own, so no other test's prefix KV is in its state."""
    return models.wrap_model(copy.deepcopy(get_tiny_model()), get_tiny_tokenizer())


def oracle(model, prompts, labels):
    return np.array([[oracle_logprob(model, p, lab) for lab in labels] for p in prompts])


# --------------------------------------------------------------------- the plan


def test_plan_puts_every_prompt_in_one_span_and_keeps_a_token_of_its_own():
    head, prompts = nested_prompts()
    root = plan_spans(prompts, 0)
    rows = [r for span in root.walk() for r in span.rows]
    assert sorted(rows) == list(range(len(prompts)))
    for span in root.walk():
        for r in span.rows:
            assert tuple(prompts[r][:span.end]) == span.tokens
            assert len(prompts[r]) > span.end
        for child in span.children:
            assert child.tokens[:span.end] == span.tokens and child.end > span.end


def test_plan_finds_the_nested_blocks_and_leaves_short_runs_in_the_rows():
    head, prompts = nested_prompts()
    root = plan_spans(prompts, 0)
    ends = sorted(span.end for span in root.walk())
    # The root (empty: the unrelated prompt shares nothing), head (shared by
    # 11 prompts: 50 positions spared), head + B, head + D, head + B + C.
    # Prompt 1 and the last one share 6 more tokens past head + B: too few.
    assert ends == [0, 5, 25, 29, 43]
    by_end = {span.end: span for span in root.walk()}
    assert by_end[0].rows == [10]
    assert by_end[5].rows == [8, 9]  # the short run stays in their rows
    assert by_end[25].rows == [0, 1, 2, 11]
    assert by_end[29].rows == [5, 6, 7]
    assert by_end[43].rows == [3, 4]


def test_plan_honours_min_saving():
    prompts = [[1, 2, 3, 4, 9], [1, 2, 3, 4, 8]]
    assert [s.end for s in plan_spans(prompts, 0, min_saving=5).walk()] == [0]
    assert [s.end for s in plan_spans(prompts, 0, min_saving=4).walk()] == [0, 4]


def test_plan_root_is_the_given_shared_length():
    prompts = [[1, 2, 3], [1, 2, 4]]
    root = plan_spans(prompts, 1)
    assert root.tokens == (1,) and root.rows == [0, 1] and root.children == []


def test_plan_of_identical_prompts_keeps_one_token_each():
    prompts = [[5] * 40, [5] * 40]
    root = plan_spans(prompts, 0)
    assert [s.end for s in root.walk()] == [0, 39]


def test_unique_positions_counts_distinct_prefixes():
    assert unique_positions([[1, 2, 3], [1, 2, 4], [5]]) == 5
    assert unique_positions([]) == 0


# ------------------------------------------------------------------ exactness


@pytest.mark.parametrize("name", TREE_FAMILIES)
def test_every_tree_mask_family_is_exact_on_nested_prompts(name):
    model = family_model(name, VOCAB)
    loaded = models.wrap_model(model, get_tiny_tokenizer())
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback warning
        scorer = LabelScorer(loaded)
    assert scorer.choice.name == "tree-mask"
    head, prompts = nested_prompts()
    expected = oracle(model, prompts, LABELS)
    for hint, batch_size in ((head, 2), (None, "auto"), (head, 1)):
        got = scorer.score(prompts, LABELS, batch_size=batch_size, prefix_hint=hint)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", ["nothing", "everything", "partly"])
def test_sharing_nothing_everything_or_part_is_exact(case):
    loaded = fresh_loaded()
    model = loaded.model
    g = torch.Generator().manual_seed(3)
    if case == "nothing":
        prompts = [[2 + i] + _random(g, n) for i, n in enumerate((1, 9, 4, 30))]
    elif case == "everything":
        prompts = [_random(g, 40)] * 1 + [_random(g, 1)]
        prompts = [prompts[0]] + [prompts[0][:-1] + [t] for t in (7, 8, 9)]
    else:
        block = _random(g, 30)
        prompts = [block + _random(g, n) for n in (1, 5, 17)] + [_random(g, 12)]
    got = TreeMaskBackend(loaded).score(prompts, LABELS, batch_size="auto")
    np.testing.assert_allclose(got, oracle(model, prompts, LABELS), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ the cost


def _grouped_call(seed=5, groups=3, per_group=6):
    """Few-shot-like prompts: a head, one of a few example blocks, a text."""
    g = torch.Generator().manual_seed(seed)
    head = _random(g, 8)
    blocks = [_random(g, 60) for _ in range(groups)]
    return head, [head + blocks[i % groups] + _random(g, 20 + (7 * i) % 23)
                  for i in range(groups * per_group)]


def test_each_shared_span_is_computed_once_and_kept_for_the_next_call():
    head, prompts = _grouped_call()
    loaded = fresh_loaded()
    backend = TreeMaskBackend(loaded)
    first = backend.score(prompts, LABELS, prefix_hint=head)
    assert len(loaded.state["prefix_kv"]) == 4  # the head and the three blocks
    # Each block keeps its own 60 positions, not a copy of the head with them.
    kept = sorted(kv[0][0].shape[2] for kv, _ in loaded.state["prefix_kv"].values())
    assert kept == sorted([len(head), 60, 60, 60])
    again = TreeMaskBackend(loaded)
    np.testing.assert_array_equal(again.score(prompts, LABELS, prefix_hint=head), first)
    # The second call runs its batches only: one pass less for the head and
    # for each block.
    assert backend.forward_passes - again.forward_passes == 1 + 3


def test_positions_fed_stay_within_a_tenth_of_the_ideal():
    head, prompts = _grouped_call(groups=4, per_group=32)
    loaded = fresh_loaded()
    TreeMaskBackend(loaded).score(prompts, LABELS, prefix_hint=head)
    trie_columns = len(LabelTrie(LABELS).internal)
    ideal = unique_positions(prompts) + len(prompts) * trie_columns
    assert ideal <= loaded.state["positions_fed"] <= 1.1 * ideal


def test_half_precision_model_scores_the_tree_like_its_flat_path():
    """In bfloat16 the tree changes only where the rounding happens."""
    head, prompts = _grouped_call(groups=2, per_group=3)
    model = copy.deepcopy(get_tiny_model()).to(torch.bfloat16)
    loaded = models.wrap_model(model, get_tiny_tokenizer())
    tree = TreeMaskBackend(loaded).score(prompts, LABELS, prefix_hint=head)
    flat = np.array([TreeMaskBackend(loaded, prefix_caches={}).score(
        [p], LABELS, prefix_hint=[])[0] for p in prompts])
    np.testing.assert_allclose(tree, flat, atol=0.1, rtol=0)


def test_the_prefix_cache_bound_is_respected_within_a_call(monkeypatch):
    head, prompts = _grouped_call()
    loaded = fresh_loaded()
    monkeypatch.setattr(prefix_module, "max_bytes", 0)
    got = TreeMaskBackend(loaded).score(prompts, LABELS, prefix_hint=head)
    assert loaded.state["prefix_kv"] == {}
    np.testing.assert_allclose(got, oracle(loaded.model, prompts, LABELS), atol=1e-5,
                               rtol=0)

