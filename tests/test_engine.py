"""The scoring engine: label trie, batch planning and exact label log-probs."""

import copy

import numpy as np
import pytest

from nbllm.engine.loading.models import LoadedModel
from nbllm.engine.scoring import prefix as prefix_module
from nbllm.engine.scoring.prefix import common_prefix_length, shared_prefix_length
from nbllm.engine.scoring import tree_mask
from nbllm.engine.scoring.tree_mask import TreeMaskBackend, pack_rows, plan_batches, plan_packed
from nbllm.engine.scoring.trie import LabelTrie
from tiny import get_tiny_model, get_tiny_tokenizer, oracle_matrix

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# ---------------------------------------------------------------- LabelTrie


def test_trie_merges_shared_prefixes():
    trie = LabelTrie([[1, 2, 3], [1, 2, 4], [1, 5], [6]])
    assert trie.tokens == [1, 2, 3, 4, 5, 6]
    assert trie.parents == [-1, 0, 1, 1, 0, -1]
    assert trie.depths == [1, 2, 3, 3, 2, 1]
    assert trie.paths == [[0, 1, 2], [0, 1, 3], [0, 4], [5]]
    assert trie.internal == [0, 1]
    assert len(trie) == 6
    assert trie.max_depth == 3


def test_trie_label_that_is_prefix_of_another():
    trie = LabelTrie([[7, 8], [7]])
    assert trie.tokens == [7, 8]
    assert trie.paths == [[0, 1], [0]]
    assert trie.internal == [0]


def test_trie_duplicate_labels_share_nodes():
    trie = LabelTrie([[3], [3]])
    assert trie.tokens == [3]
    assert trie.paths == [[0], [0]]
    assert trie.internal == []


def test_trie_same_token_under_different_parents_is_two_nodes():
    trie = LabelTrie([[1, 9], [2, 9]])
    assert trie.tokens == [1, 9, 2, 9]
    assert trie.parents == [-1, 0, -1, 2]


def test_trie_ancestors_or_self():
    trie = LabelTrie([[1, 2, 3], [1, 4]])
    assert trie.ancestors_or_self(2) == [0, 1, 2]
    assert trie.ancestors_or_self(3) == [0, 3]
    assert trie.ancestors_or_self(0) == [0]


def test_trie_rejects_empty_label():
    with pytest.raises(ValueError, match="^every label must have at least one token$"):
        LabelTrie([[1], []])


def test_common_prefix_length():
    assert common_prefix_length([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2
    assert common_prefix_length([], [1]) == 0
    assert common_prefix_length([9], [1]) == 0


# ------------------------------------------------------------- plan_batches


def _flat(batches):
    return sorted(i for b in batches for i in b)


def test_plan_batches_fixed_size_longest_first():
    batches = plan_batches([3, 10, 5, 1, 7], 4, 100, "cpu", 2)
    assert batches == [[1, 4], [2, 0], [3]]


def test_plan_batches_ties_keep_input_order():
    assert plan_batches([2, 2, 2], 1, 100, "cpu", 2) == [[0, 1], [2]]


@pytest.mark.parametrize("batch_size", [1, 3, 7, 100, "auto"])
def test_plan_batches_covers_every_index_once(batch_size):
    lengths = [5, 1, 9, 9, 2, 40, 3]
    batches = plan_batches(lengths, 6, 500, "cpu", batch_size)
    assert _flat(batches) == list(range(7))
    if batch_size != "auto":
        assert all(len(b) <= batch_size for b in batches)
        assert [len(b) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
    order = [i for b in batches for i in b]
    assert [lengths[i] for i in order] == sorted(lengths, reverse=True)


def test_plan_batches_empty():
    assert plan_batches([], 3, 10, "cpu", "auto") == []


def test_plan_batches_auto_splits_on_token_budget():
    # 500 prompt + 10 trie tokens per row: two rows fit 1024, three do not.
    assert plan_batches([500, 500, 500], 10, 10, "cpu", "auto") == [
        [0, 1], [2]
    ]
    assert plan_batches([500, 500, 500], 10, 10, "cpu", "auto",
                        token_budget=2048) == [[0, 1, 2]]
    # The CUDA budget is larger, so the same work is one batch there.
    assert plan_batches([1000, 1000, 1000], 10, 10, "cuda", "auto") == [
        [0, 1, 2]
    ]


def test_pack_rows_fills_rows_best_fit_decreasing():
    rows = pack_rows([9, 4, 5, 6, 3, 1], 10)
    assert sorted(i for row in rows for i in row) == list(range(6))
    assert rows == [[0, 5], [3, 1], [2, 4]]  # 9+1, 6+4, 5+3


def test_pack_rows_caps_the_items_per_row():
    assert pack_rows([1] * 5, 10, max_items=2) == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize("seed", range(3))
def test_plan_packed_covers_every_prompt_once_within_the_budgets(seed):
    rng = np.random.default_rng(seed)
    lengths = list(rng.integers(5, 120, size=300))
    passes = plan_packed(lengths, 3, 49152, "cpu")
    flat = sorted(i for rows in passes for row in rows for i in row)
    assert flat == list(range(300))
    for rows in passes:
        filled = [sum(lengths[i] + 3 for i in row) for row in rows]
        assert len(rows) * max(filled) <= tree_mask._TOKEN_BUDGET["cpu"]
        assert sum(map(len, rows)) * 4 * 49152 <= tree_mask._LOGIT_BUDGET["cpu"]
    fed = sum(len(rows) * max(sum(lengths[i] + 3 for i in row) for row in rows)
              for rows in passes)
    # Ragged lengths, packed: the padding is a few percent of the positions.
    assert fed <= 1.05 * sum(n + 3 for n in lengths)


def test_plan_packed_gives_a_prompt_wider_than_the_budget_a_pass_of_its_own():
    assert plan_packed([2000, 10, 10], 0, 100, "cpu") == [[[0]], [[1, 2]]]


def test_plan_batches_auto_splits_on_logit_budget():
    # rows * (1 + 31 internal) * 2**20 vocab must stay <= 2**26: two rows.
    batches = plan_batches([1] * 5, 31, 2**20, "cpu", "auto")
    assert batches == [[0, 1], [2, 3], [4]]


def test_plan_batches_auto_caps_rows():
    batches = plan_batches([1] * 150, 1, 10, "cpu", "auto")
    assert [len(b) for b in batches] == [64, 64, 22]


def test_plan_batches_auto_gives_an_oversized_sample_its_own_batch():
    assert plan_batches([5000, 10], 1, 10, "cpu", "auto") == [[0], [1]]


# ------------------------------------------------------------ TreeMaskBackend

TEMPLATE_HEAD = "Text:"
TEXTS = [
    "I love it.",
    "The train was late again this morning, the service at the restaurant "
    "was slow but friendly and the battery dies after two hours.",
    "ok",
    "What a wonderful surprise, thank you so much!",
]
# Token ids chosen to exercise the trie: a single-token label, multi-token
# labels with a shared prefix, a label that is a prefix of another, and one
# sharing nothing with the rest.
LABELS = [[387], [286, 299], [286, 299, 5], [286, 17], [89], [12, 30, 31, 40]]


def _loaded():
    """A fresh LoadedModel on the tiny model (empty prefix-cache state)."""
    import torch

    tok = get_tiny_tokenizer()
    return LoadedModel(
        spec="tiny", model=get_tiny_model(), tokenizer=tok,
        device=torch.device("cpu"), dtype=torch.float32,
        fingerprint="tiny", context_length=256,
    )


def _prompts(texts=TEXTS):
    tok = get_tiny_tokenizer()
    return [tok(TEMPLATE_HEAD + " " + t + "\nCategory:")["input_ids"] for t in texts]


def _head_ids():
    return get_tiny_tokenizer()(TEMPLATE_HEAD)["input_ids"]


def _assert_matches_oracle(out, prompts, labels=LABELS):
    expected = np.array(oracle_matrix(get_tiny_model(), prompts, labels))
    assert out.shape == expected.shape
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)


def test_auto_batches_pack_several_prompts_to_a_row_exactly():
    model = get_tiny_model()
    prompts = _prompts()
    passes = []
    head_hook = model.get_output_embeddings().register_forward_hook(
        lambda module, args, output: passes.append(args[0].shape[:2]))
    rows = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True)
    try:
        out = TreeMaskBackend(_loaded()).score(prompts, LABELS, prefix_hint=_head_ids())
    finally:
        hook.remove()
        head_hook.remove()
    _assert_matches_oracle(out, prompts)
    trie_columns = len(LabelTrie(LABELS).internal)
    # Besides the prefix pass: fewer rows than prompts, every prompt's
    # positions read once.
    assert sum(rows[1:]) < len(prompts)
    assert sum(n for n, _ in passes[1:]) == len(prompts)
    assert {k for _, k in passes[1:]} == {trie_columns + 1}


def test_prompts_have_very_different_lengths():
    lengths = sorted(len(p) for p in _prompts())
    assert lengths[-1] - lengths[0] >= 20  # lots of padding in a batch


@pytest.mark.parametrize("batch_size", [1, 2, "auto"])
@pytest.mark.parametrize("hint", ["none", "head", "mismatch"])
def test_score_matches_oracle(batch_size, hint):
    prefix_hint = {"none": None, "head": _head_ids(), "mismatch": [5, 6, 7, 8]}[hint]
    prompts = _prompts()
    out = TreeMaskBackend(_loaded()).score(prompts, LABELS, batch_size, prefix_hint)
    _assert_matches_oracle(out, prompts)


def test_score_single_token_labels_only():
    prompts = _prompts()
    labels = [[387], [339], [397]]
    out = TreeMaskBackend(_loaded()).score(prompts, labels, 2, _head_ids())
    _assert_matches_oracle(out, prompts, labels)


def test_score_label_prefix_of_another_differs_by_the_extra_token():
    prompts = _prompts()[:1]
    out = TreeMaskBackend(_loaded()).score(prompts, [[286, 299], [286, 299, 5]])
    _assert_matches_oracle(out, prompts, [[286, 299], [286, 299, 5]])
    assert out[0, 1] < out[0, 0]


def test_score_identical_prompts():
    prompts = _prompts([TEXTS[0]] * 3)
    out = TreeMaskBackend(_loaded()).score(prompts, LABELS, 2, _head_ids())
    _assert_matches_oracle(out, prompts)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])


def test_score_single_prompt():
    prompts = _prompts([TEXTS[1]])
    out = TreeMaskBackend(_loaded()).score(prompts, LABELS)
    _assert_matches_oracle(out, prompts)


def test_score_one_token_prompt_has_no_prefix():
    prompts = [[0], [0, 5, 6]]
    loaded = _loaded()
    out = TreeMaskBackend(loaded).score(prompts, LABELS, 2)
    _assert_matches_oracle(out, prompts)
    assert loaded.state["prefix_kv"] == {}


def test_score_prompts_sharing_no_prefix():
    tok = get_tiny_tokenizer()
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    assert len({p[0] for p in prompts}) > 1
    out = TreeMaskBackend(_loaded()).score(prompts, LABELS, 2, _head_ids())
    _assert_matches_oracle(out, prompts)


def test_score_results_follow_input_order_not_batch_order():
    prompts = _prompts()
    scorer = TreeMaskBackend(_loaded())
    forward = scorer.score(prompts, LABELS, 1)
    backward = scorer.score(prompts[::-1], LABELS, 1)
    np.testing.assert_allclose(backward, forward[::-1], rtol=0, atol=1e-5)


def test_score_no_prompts():
    out = TreeMaskBackend(_loaded()).score([], LABELS)
    assert out.shape == (0, len(LABELS))


def test_score_empty_label_raises():
    with pytest.raises(ValueError, match="every label must have at least one token"):
        TreeMaskBackend(_loaded()).score(_prompts(), [[5], []])


def test_on_batch_receives_every_index_once():
    prompts = _prompts()
    seen = []
    out = TreeMaskBackend(_loaded()).score(
        prompts, LABELS, 3, on_batch=lambda idx, v: seen.append((list(idx), v))
    )
    assert sorted(i for idx, _ in seen for i in idx) == [0, 1, 2, 3]
    assert [len(idx) for idx, _ in seen] == [3, 1]
    for idx, values in seen:
        assert values.dtype == np.float64
        assert values.shape == (len(idx), len(LABELS))
        np.testing.assert_array_equal(values, out[idx])


def test_exception_in_on_batch_stops_after_delivered_batches():
    delivered = []

    def on_batch(indices, values):
        delivered.append(list(indices))
        if len(delivered) == 2:
            raise KeyboardInterrupt

    scorer = TreeMaskBackend(_loaded())
    with pytest.raises(KeyboardInterrupt):
        scorer.score(_prompts(), LABELS, 1, on_batch=on_batch)
    assert len(delivered) == 2
    # One prefix pass plus exactly the two batches that ran.
    assert scorer.forward_passes == 3


class _Bar:
    def __init__(self, calls, n_batches, n_prompts):
        calls.append(("new", n_batches, n_prompts))
        self.calls = calls

    def update(self, n):
        self.calls.append(("update", n))

    def close(self):
        self.calls.append(("close",))


def test_progress_factory_gets_batch_and_prompt_counts():
    calls = []
    TreeMaskBackend(_loaded()).score(
        _prompts(), LABELS, 3, progress=lambda b, n: _Bar(calls, b, n)
    )
    assert calls == [("new", 2, 4), ("update", 3), ("update", 1), ("close",)]


def test_progress_bar_is_closed_on_interrupt():
    calls = []

    def stop(indices, values):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="^stop$"):
        TreeMaskBackend(_loaded()).score(
            _prompts(), LABELS, 1, on_batch=stop,
            progress=lambda b, n: _Bar(calls, b, n),
        )
    assert calls == [("new", 4, 4), ("close",)]


def test_progress_factory_may_return_none():
    out = TreeMaskBackend(_loaded()).score(_prompts(), LABELS, 2, progress=lambda b, n: None)
    assert out.shape == (4, len(LABELS))


# ---------------------------------------------------------- prefix KV cache


def test_prefix_kv_is_cached_and_reused_across_calls():
    loaded = _loaded()
    prompts, head = _prompts(), _head_ids()
    first = TreeMaskBackend(loaded)
    out1 = first.score(prompts, LABELS, 2, head)
    assert list(loaded.state["prefix_kv"]) == [tuple(head)]
    assert first.forward_passes == 1 + 2  # the prefix, then two batches

    second = TreeMaskBackend(loaded)
    out2 = second.score(prompts, LABELS, 2, head)
    assert second.forward_passes == 2  # batches only: the prefix was reused
    np.testing.assert_array_equal(out1, out2)


def test_prefix_kv_without_hint_uses_all_shared_tokens():
    loaded = _loaded()
    prompts = _prompts(["I love it.", "I love you."])
    TreeMaskBackend(loaded).score(prompts, LABELS)
    shared = common_prefix_length(prompts[0], prompts[1])
    assert list(loaded.state["prefix_kv"]) == [tuple(prompts[0][:shared])]


def test_prefix_kv_for_identical_prompts_leaves_one_token_each():
    loaded = _loaded()
    prompts = _prompts([TEXTS[0]] * 2)
    TreeMaskBackend(loaded).score(prompts, LABELS)
    assert list(loaded.state["prefix_kv"]) == [tuple(prompts[0][:-1])]


def test_prefix_kv_keeps_the_most_recent_entries_within_its_byte_bound(monkeypatch):
    loaded = _loaded()
    scorer = TreeMaskBackend(loaded)
    tok = get_tiny_tokenizer()
    heads = [f"Text {i}:" for i in range(4)]
    assert len({len(tok(h)["input_ids"]) for h in heads}) == 1  # equal sizes
    scorer.score([tok(heads[0] + " ok")["input_ids"]], LABELS, 1, tok(heads[0])["input_ids"])
    (_, size), = loaded.state["prefix_kv"].values()
    assert size == prefix_module.kv_bytes(next(iter(loaded.state["prefix_kv"].values()))[0])
    monkeypatch.setattr(prefix_module, "max_bytes", 2 * size)
    for head in heads[1:]:
        scorer.score([tok(head + " ok")["input_ids"]], LABELS, 1, tok(head)["input_ids"])
    kept = [tok(h)["input_ids"] for h in heads[2:]]
    assert list(loaded.state["prefix_kv"]) == [tuple(k) for k in kept]
    # A prefix larger than the bound is computed but not kept.
    monkeypatch.setattr(prefix_module, "max_bytes", size - 1)
    scorer.score([tok(heads[0] + " ok")["input_ids"]], LABELS, 1, tok(heads[0])["input_ids"])
    assert list(loaded.state["prefix_kv"]) == [tuple(k) for k in kept]


def test_prefix_cache_bound_defaults_to_256_mb():
    assert prefix_module.DEFAULT_MAX_BYTES == 256 * 2**20


def test_prefix_kv_is_shared_by_scorers_on_the_same_model():
    loaded = _loaded()
    assert TreeMaskBackend(loaded).prefix_caches is TreeMaskBackend(loaded).prefix_caches


def test_out_of_memory_halves_the_batch_and_retries(monkeypatch):
    import torch

    from nbllm.engine.loading.models import wrap_model

    tiny_model, tiny_tok = get_tiny_model(), get_tiny_tokenizer()
    loaded = wrap_model(tiny_model, tiny_tok)
    prompts = [tiny_tok(f"The movie number {i} was great")["input_ids"] for i in range(8)]
    labels = [tiny_tok(w, add_special_tokens=False)["input_ids"] for w in ("good", "bad")]
    expected = TreeMaskBackend(loaded).score(prompts, labels, batch_size=1)
    real = TreeMaskBackend._score_batch
    sizes = []

    def small_device(self, suffixes, *args):
        sizes.append(len(suffixes))
        if len(suffixes) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(self, suffixes, *args)

    monkeypatch.setattr(TreeMaskBackend, "_score_batch", small_device)
    scorer = TreeMaskBackend(loaded)
    seen = []
    got = scorer.score(prompts, labels, batch_size=8,
                       on_batch=lambda idx, v: seen.extend(idx))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert sorted(seen) == list(range(8))
    assert sizes == [8, 4, 2, 2, 2, 2]  # one OOM per size, then the cap holds
    assert scorer.oom_retries == 2 and scorer.row_cap == 2


def test_other_runtime_errors_are_not_retried(monkeypatch):
    from nbllm.engine.loading.models import wrap_model

    def broken(self, *args):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(TreeMaskBackend, "_score_batch", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        TreeMaskBackend(wrap_model(get_tiny_model(), get_tiny_tokenizer())).score(
            [[1, 2, 3], [1, 2, 4]], [[5]], batch_size=2)


# ------------------------------------------- float32 reductions in half precision


def _bf16_loaded():
    import torch

    loaded = _loaded()
    # A copy: get_tiny_model() is shared by the whole test session.
    loaded.model = copy.deepcopy(loaded.model).to(torch.bfloat16)
    loaded.dtype = torch.bfloat16
    return loaded


def _backend(name, loaded):
    from nbllm.engine.scoring.exact import ExactBackend

    return {"tree-mask": lambda: TreeMaskBackend(loaded),
            "exact": lambda: ExactBackend(loaded),
            "exact (unpadded)": lambda: ExactBackend(loaded, pad_free=True)}[name]()


@pytest.mark.parametrize("path", ["tree-mask", "exact", "exact (unpadded)"])
def test_bf16_model_reduces_in_float32(monkeypatch, path):
    """With a bf16 model, log-softmax and the sums over label tokens run in
    float32 (a bf16 log-softmax of logits near -20 is off by ~0.1), and the
    results stay close to the float32 model's."""
    import torch

    from nbllm.engine.scoring import batching, exact, tree_mask

    loaded = _bf16_loaded()
    softmax_inputs, delivered = [], []
    original_softmax, original_deliver = torch.log_softmax, batching.deliver

    def spy_softmax(x, *args, **kwargs):
        softmax_inputs.append(x.dtype)
        return original_softmax(x, *args, **kwargs)

    def spy_deliver(out, indices, logprobs, *args):
        delivered.append(logprobs.dtype)
        return original_deliver(out, indices, logprobs, *args)

    monkeypatch.setattr(torch, "log_softmax", spy_softmax)
    for module in (tree_mask, exact):
        if hasattr(module, "deliver"):
            monkeypatch.setattr(module, "deliver", spy_deliver)
    prompts = _prompts()
    out = _backend(path, loaded).score(prompts, LABELS, prefix_hint=_head_ids())
    assert softmax_inputs and set(softmax_inputs) == {torch.float32}
    assert set(delivered) <= {torch.float32, torch.float64}
    assert out.dtype == np.float64
    expected = np.array(oracle_matrix(get_tiny_model(), prompts, LABELS))
    assert np.abs(out - expected).max() < 0.15


@pytest.mark.parametrize("labels, trie_columns", [
    ([[387], [89]], 0),  # single-token labels: the prompt's last logits decide
    (LABELS, 5),  # internal nodes: 286, 286>299, 12, 12>30, 12>30>31
])
def test_the_passes_feed_internal_trie_nodes_only(labels, trie_columns):
    model = get_tiny_model()
    prompts = _prompts()
    widths, head_inputs = [], []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: widths.append(
            (kwargs["input_ids"].shape[1], kwargs.get("logits_to_keep"))),
        with_kwargs=True)
    # A forward hook sees the head's input after the backend picked the
    # positions whose logits are needed.
    head_hook = model.get_output_embeddings().register_forward_hook(
        lambda module, args, output: head_inputs.append(tuple(args[0].shape[:-1])))
    try:
        out = TreeMaskBackend(_loaded()).score(prompts, labels, batch_size=8,
                                               prefix_hint=_head_ids())
    finally:
        hook.remove()
        head_hook.remove()
    _assert_matches_oracle(out, prompts, labels)
    prefix_len = shared_prefix_length(prompts, _head_ids())
    longest = max(len(p) for p in prompts) - prefix_len
    # One prefix pass (one logit kept), then one pass over the suffixes and
    # trie, one prompt to a row (a fixed batch size), whose head runs on the
    # prompt's last column and each trie column only.
    assert widths == [(prefix_len, 1), (longest + trie_columns, 0)]
    assert head_inputs == [(1, 1), (len(prompts), trie_columns + 1)]
