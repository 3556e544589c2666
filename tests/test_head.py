"""In half precision the label tokens' logits are computed again in float32.

nbllm.engine.scoring.head is checked on its own (exact columns, the others as the
model rounded them, the hook gone after the block, nothing done in float32)
and in the engine: each backend runs its label passes under it in bfloat16,
with the labels' tokens as the columns, and never in float32.
"""

import copy

import numpy as np
import pytest
import torch

from families import family_model
from nbllm.engine.loading import devices
from nbllm.engine.scoring import head
from nbllm.engine.scoring.exact import ExactBackend
from nbllm.engine.loading.models import LoadedModel, fingerprint
from nbllm.engine.scoring.seq2seq import Seq2SeqBackend
from nbllm.engine.scoring.tree_mask import TreeMaskBackend
from tiny import get_tiny_model, get_tiny_tokenizer

CPU = torch.device("cpu")
LABELS = [[387], [286, 299], [89]]


def _bf16(model):
    return copy.deepcopy(model).to(torch.bfloat16)  # the shared tiny model stays float32


def _loaded(model):
    dtype = next(model.parameters()).dtype
    return LoadedModel(spec="tiny", model=model, tokenizer=get_tiny_tokenizer(),
                       device=CPU, dtype=dtype, fingerprint="tiny", context_length=256)


def _ids():
    return get_tiny_tokenizer()("Text: the train was late\nCategory:", return_tensors="pt")[
        "input_ids"]


def test_label_columns_are_exact_and_the_others_as_the_model_rounded_them():
    model = _bf16(get_tiny_model())
    ids = _ids()
    columns = torch.tensor([89, 286, 387])
    with torch.no_grad():
        hidden = model.model(input_ids=ids).last_hidden_state
        rounded = model(input_ids=ids).logits
        with head.float32_label_logits(model, columns):
            logits = model(input_ids=ids).logits
        exact = hidden.double() @ model.lm_head.weight[columns].double().T
    assert rounded.dtype == torch.bfloat16 and logits.dtype == torch.float32
    np.testing.assert_allclose(logits[..., columns].double(), exact, rtol=0, atol=1e-5)
    # The rounded logits are off by up to half a bfloat16 step, far above 1e-5.
    assert (rounded[..., columns].double() - exact).abs().max() > 1e-4
    others = torch.ones(logits.shape[-1], dtype=torch.bool)
    others[columns] = False
    assert torch.equal(logits[..., others], rounded[..., others].float())


def test_the_hook_is_gone_after_the_block_and_after_an_error():
    model = _bf16(get_tiny_model())
    with head.float32_label_logits(model, torch.tensor([5])):
        assert len(model.lm_head._forward_hooks) == 1
    assert not model.lm_head._forward_hooks
    with pytest.raises(RuntimeError, match="boom"):
        with head.float32_label_logits(model, torch.tensor([5])):
            raise RuntimeError("boom")
    assert not model.lm_head._forward_hooks


def test_float32_models_are_left_alone():
    model = get_tiny_model()
    ids = _ids()
    with torch.no_grad():
        before = model(input_ids=ids).logits
        with head.float32_label_logits(model, torch.tensor([5])):
            assert not model.lm_head._forward_hooks
            after = model(input_ids=ids).logits
    assert torch.equal(before, after)
    assert not head.runs_low_precision(model)
    assert head.runs_low_precision(_bf16(model))


def test_the_result_cache_key_tells_the_rounded_logits_apart():
    assert devices.numerics_tag(torch.float32) == b""
    assert devices.numerics_tag(torch.float64) == b""
    assert devices.numerics_tag(torch.bfloat16) == devices.numerics_tag("float16") != b""
    model = get_tiny_model()
    assert fingerprint(model, get_tiny_tokenizer()) != fingerprint(
        _bf16(model), get_tiny_tokenizer())


def _spy_on_head():
    """Record, at each call of the head, which of nbllm's columns are recomputed."""
    calls = []
    real = head.float32_label_logits

    def spying(m, columns):
        calls.append(sorted(columns.tolist()))
        return real(m, columns)

    return calls, spying


@pytest.mark.parametrize("backend", ["exact", "tree-mask"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_decoder_backends_score_labels_under_the_hook(backend, dtype, monkeypatch):
    model = get_tiny_model() if dtype == torch.float32 else _bf16(get_tiny_model())
    ran = []
    model.lm_head.register_forward_pre_hook(
        lambda module, args: ran.append(len(module._forward_hooks)))
    cls = {"exact": ExactBackend, "tree-mask": TreeMaskBackend}[backend]
    prompts = [_ids()[0].tolist(), _ids()[0].tolist()[:-2]]
    try:
        out = cls(_loaded(model)).score(prompts, LABELS, 2)
    finally:
        model.lm_head._forward_pre_hooks.clear()
    assert np.isfinite(out).all() and out.shape == (2, 3)
    # The shared prefix's pass also runs the head, for no label: it may run without.
    assert (1 in ran) == (dtype == torch.bfloat16) and set(ran) <= {0, 1}


def test_the_columns_are_the_label_tokens(monkeypatch):
    from nbllm.engine.scoring import exact, tree_mask

    model = _bf16(get_tiny_model())
    prompts = [_ids()[0].tolist()]
    for module, cls in ((exact, ExactBackend), (tree_mask, TreeMaskBackend)):
        calls, spying = _spy_on_head()
        monkeypatch.setattr(module, "float32_label_logits", spying)
        cls(_loaded(model)).score(prompts, LABELS, 2)
        assert calls and all(c == [89, 286, 299, 387] for c in calls)


def test_encoder_decoder_backend_scores_labels_under_the_hook():
    model = _bf16(family_model("t5", len(get_tiny_tokenizer())))
    ran = []
    model.lm_head.register_forward_pre_hook(
        lambda module, args: ran.append(len(module._forward_hooks)))
    out = Seq2SeqBackend(_loaded(model)).score([_ids()[0].tolist()], LABELS, 2)
    assert np.isfinite(out).all() and out.shape == (1, 3)
    assert ran and all(n == 1 for n in ran)
