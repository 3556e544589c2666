"""The tree-mask passes run grouped-query attention without copying keys and values.

The switch (nbllm.engine.scoring.gqa) is checked for what it does (the passes of the
block, in the block's thread only, run the function; the model's config never
changes, even when the pass fails), when it stays off, and for exactness: the
tree-mask backend under it matches the plain-forward oracle and the stock SDPA
path.
"""

import contextlib
import threading

import numpy as np
import pytest
import torch

from nbllm.engine.scoring import gqa, tree_mask
from nbllm.engine.loading.models import LoadedModel
from nbllm.engine.scoring.tree_mask import TreeMaskBackend
from tiny import get_tiny_model, get_tiny_tokenizer, oracle_matrix

CPU = torch.device("cpu")
LABELS = [[387], [286, 299], [286, 299, 5], [89]]


def _prompts():
    tok = get_tiny_tokenizer()
    texts = ["I love it.", "ok", "The train was late again this morning, very late."]
    return [tok("Text: " + t + "\nCategory:")["input_ids"] for t in texts]


def _loaded(model):
    return LoadedModel(spec="tiny", model=model, tokenizer=get_tiny_tokenizer(),
                       device=CPU, dtype=torch.float32, fingerprint="tiny",
                       context_length=256)


def _spy(monkeypatch):
    """Record the thread of each call of the GQA function."""
    calls, real = [], gqa._attention

    def spy(*args, **kwargs):
        calls.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(gqa, "_attention", spy)
    return calls


def _forward(model):
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():  # a mask, so that grouped heads take the GQA path
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def test_the_switch_holds_only_during_the_block_and_leaves_the_config(monkeypatch):
    model = get_tiny_model()
    calls = _spy(monkeypatch)
    assert model.config._attn_implementation == "sdpa"
    with gqa.native_gqa(model, CPU):
        assert model.config._attn_implementation == "sdpa"
        inside = _forward(model)
    assert calls and set(calls) == {threading.get_ident()}
    calls.clear()
    outside = _forward(model)
    assert calls == [] and model.config._attn_implementation == "sdpa"
    torch.testing.assert_close(inside, outside, rtol=0, atol=1e-5)


def test_the_switch_is_undone_when_the_pass_fails(monkeypatch):
    model = get_tiny_model()
    calls = _spy(monkeypatch)
    with pytest.raises(RuntimeError, match="boom"):
        with gqa.native_gqa(model, CPU):
            raise RuntimeError("boom")
    _forward(model)
    assert calls == [] and model.config._attn_implementation == "sdpa"


def test_another_thread_using_the_model_meanwhile_runs_stock_sdpa(monkeypatch):
    # The model (and its config) is shared: the panel scores in a thread while
    # the kernel may run a cell with the same model.
    model = get_tiny_model()
    calls = _spy(monkeypatch)
    seen = {}

    def other():
        seen["attention"] = model.config._attn_implementation
        seen["logits"] = _forward(model)

    with gqa.native_gqa(model, CPU):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        _forward(model)
    assert seen["attention"] == "sdpa" and "logits" in seen
    assert calls and set(calls) == {threading.get_ident()}


@pytest.mark.parametrize("case", ["cuda", "eager", "no groups"])
def test_the_switch_stays_off(monkeypatch, case):
    tiny = get_tiny_model()  # shared by the tests: never changed here
    settings = {"eager": {"attn_implementation": "eager"},
                "no groups": {"num_key_value_heads": 4}}.get(case, {})
    model = tiny.__class__(tiny.config.__class__(**{**tiny.config.to_dict(), **settings}))
    device = torch.device("cuda") if case == "cuda" else CPU  # compared, never used
    calls = _spy(monkeypatch)
    before = model.config._attn_implementation
    with gqa.native_gqa(model, device):
        assert model.config._attn_implementation == before
        _forward(model)
    assert calls == [] and model.config._attn_implementation == before


def test_tree_mask_under_the_switch_matches_the_oracle_and_stock_sdpa(monkeypatch):
    model = get_tiny_model()
    prompts = _prompts()
    seen = []
    real = gqa._attention

    def spy(module, query, key, *args, **kwargs):
        seen.append((query.shape[1], key.shape[1]))
        return real(module, query, key, *args, **kwargs)

    monkeypatch.setattr(gqa, "_attention", spy)
    ours = TreeMaskBackend(_loaded(model)).score(prompts, LABELS, 2, prompts[0][:2])
    # Keys and values reached the kernel with their own (fewer) heads.
    assert seen and all(q == 4 and k == 2 for q, k in seen)
    expected = np.array(oracle_matrix(model, prompts, LABELS))
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)

    monkeypatch.setattr(tree_mask, "native_gqa", lambda m, d: contextlib.nullcontext())
    stock = TreeMaskBackend(_loaded(model)).score(prompts, LABELS, 2, prompts[0][:2])
    np.testing.assert_allclose(ours, stock, rtol=0, atol=1e-6)
