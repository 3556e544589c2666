"""The self-check judges a half-precision model's fast path in float32.

Two exact paths in bfloat16 round differently, so a bfloat16 tolerance wide
enough for rounding lets a slightly wrong fast path through; in float32 both
paths agree to ~1e-5.  The tiny random model (tests/tiny.py) in bfloat16 runs
on any CPU: torch emulates bfloat16 where the CPU lacks it.  What is checked:
the judgement's dtype and sharpness, that the weights come back bit for bit
(tied ones tied, each tensor in its own dtype, also after an error), the
fallback to the model's own dtype without room for a float32 copy, a failure
that only half precision shows, the probe's nested prefixes, the kept verdict
and the warning's wording.
"""

import copy
import json
import re
import warnings

import numpy as np
import pytest
import torch

from nbllm.engine.loading import models
from nbllm.engine.scoring import selfcheck
from nbllm.engine.scoring.exact import ExactBackend
from nbllm.engine.scoring.scorer import backend_choice, fallback_message
from nbllm.engine.scoring.tree_mask import TreeMaskBackend
from tiny import get_tiny_model, get_tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def bf16_model(tied=False):
    """A private bfloat16 copy of the tiny model (optionally with tied
    embeddings), its rotary ``inv_freq`` kept in float32 as some loaders do."""
    from transformers import LlamaForCausalLM

    base = get_tiny_model()
    if tied:
        config = copy.deepcopy(base.config)
        config.tie_word_embeddings = True
        torch.manual_seed(1)
        model = LlamaForCausalLM(config).eval()
        assert model.lm_head.weight is model.model.embed_tokens.weight
    else:
        model = copy.deepcopy(base)
    model.to(torch.bfloat16)
    rotary = model.model.rotary_emb
    rotary.inv_freq = rotary.inv_freq.float()
    return model


def loaded_bf16(tied=False):
    return models.wrap_model(bf16_model(tied), get_tiny_tokenizer())


def tensors(model):
    return dict(model.named_parameters()) | dict(model.named_buffers())


def snapshot(model):
    """Each parameter's and buffer's values, dtype and storage address."""
    return {name: (t.detach().clone(), t.dtype, t.data_ptr())
            for name, t in tensors(model).items()}


def assert_unchanged(model, before):
    after = tensors(model)
    assert after.keys() == before.keys()
    for name, (values, dtype, address) in before.items():
        assert after[name].dtype == dtype, name
        assert torch.equal(after[name], values), name
        assert after[name].data_ptr() == address, name  # its own storage, not a copy


def probe(loaded, backend=None):
    backend = TreeMaskBackend(loaded) if backend is None else backend
    return selfcheck.run_probe(loaded, backend, ExactBackend(loaded, pad_free=True))


# The wrong fast paths below are subclasses, not wrappers: the probe gives the
# backend it runs prefix caches of its own, so that keys and values computed
# in float32 are never reused in half precision.


class Shifted(TreeMaskBackend):
    """A fast path off by 0.05 in one log-probability: below bfloat16's
    tolerance (0.15), far above float32's (2e-3)."""

    def score(self, prompts, labels, *args, **kwargs):
        out = super().score(prompts, labels, *args, **kwargs)
        out[0, 0] += 0.05
        return out


class BrokenInHalfPrecision(TreeMaskBackend):
    """A fast path that works in float32 only, as a mask built in the wrong
    dtype would: ``result`` is what it does in half precision."""

    def __init__(self, loaded, result):
        super().__init__(loaded)
        self.result = result

    def score(self, prompts, labels, *args, **kwargs):
        out = super().score(prompts, labels, *args, **kwargs)
        if self.model.dtype == torch.float32:
            return out
        if self.result == "raise":
            raise RuntimeError("expected mask dtype to be bool or float")
        return out * np.nan


# ------------------------------------------------- the judgement


def test_a_bf16_model_is_judged_in_float32_and_keeps_the_fast_path():
    loaded = loaded_bf16()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        choice = backend_choice(loaded)
    assert choice.name == "tree-mask"
    result = choice.probe
    assert result.passed and result.judged_in == "float32"
    assert result.tolerance == selfcheck.TOLERANCE["float32"]
    assert result.difference < 1e-4
    assert "judged in float32" in result.describe()
    # The probe leaves no keys or values (float32 ones least of all) behind.
    assert loaded.state.get("prefix_kv", {}) == {}


def test_float32_judgement_catches_what_bf16_rounding_would_hide(monkeypatch):
    loaded = loaded_bf16()
    in_float32 = probe(loaded, Shifted(loaded))
    assert not in_float32.passed and in_float32.judged_in == "float32"
    assert in_float32.difference == pytest.approx(0.05, abs=1e-3)
    # Judged in bfloat16 (no room for a float32 copy), the same fast path
    # passes: the rounding tolerance is wider than its error.
    monkeypatch.setattr(selfcheck, "room_for_float32", lambda tensors: False)
    in_bf16 = probe(loaded, Shifted(loaded))
    assert in_bf16.passed and in_bf16.judged_in == "bfloat16"
    assert in_bf16.tolerance == selfcheck.TOLERANCE["bfloat16"]


def test_a_wrong_mask_is_caught_in_float32():
    from test_families import IgnoresTreeMask, wrapped

    model = wrapped(IgnoresTreeMask).to(torch.bfloat16)
    loaded = models.wrap_model(model, get_tiny_tokenizer())
    result = probe(loaded)
    assert not result.passed and result.judged_in == "float32"


@pytest.mark.parametrize("free, judged_in", [(0, "bfloat16"), (None, "bfloat16"),
                                             (2**40, "float32")])
def test_without_room_for_a_float32_copy_it_judges_in_the_models_dtype(
        monkeypatch, free, judged_in):
    # Unknown free memory (None) counts as no room.
    loaded = loaded_bf16()
    casts = []
    real = selfcheck.in_float32

    def spy(tensors):
        casts.append(len(tensors))
        return real(tensors)

    monkeypatch.setattr(selfcheck, "available_memory", lambda: free)
    monkeypatch.setattr(selfcheck, "in_float32", spy)
    result = probe(loaded)
    assert result.passed and result.judged_in == judged_in
    assert result.tolerance == selfcheck.tolerance_for(judged_in)
    assert bool(casts) == (judged_in == "float32")


def test_a_quantized_model_is_judged_in_its_own_dtype():
    # Integer weights come with kernels that expect half-precision inputs.
    loaded = loaded_bf16()
    loaded.model.model.register_parameter("quantized", torch.nn.Parameter(
        torch.zeros(4, dtype=torch.int8), requires_grad=False))
    assert selfcheck.half_precision_tensors(loaded.model) == []
    result = probe(loaded)
    assert result.passed and result.judged_in == "bfloat16"


def test_a_model_that_cannot_run_in_float32_is_judged_in_its_own_dtype():
    # Code shipped with a model may insist on its dtype, the plain path's too.
    class Bf16Only(type(get_tiny_model())):
        def forward(self, *args, **kwargs):
            if self.dtype != torch.bfloat16:
                raise RuntimeError("this model runs in bfloat16 only")
            return super().forward(*args, **kwargs)

    model = Bf16Only(get_tiny_model().config).eval()
    model.load_state_dict(get_tiny_model().state_dict())
    loaded = models.wrap_model(model.to(torch.bfloat16), get_tiny_tokenizer())
    before = snapshot(loaded.model)
    result = probe(loaded)
    assert result.passed and result.judged_in == "bfloat16"
    assert_unchanged(loaded.model, before)


def test_room_is_twice_the_half_precision_bytes(monkeypatch):
    half = selfcheck.half_precision_tensors(bf16_model())
    need = 4 * sum(t.numel() for t in half) + selfcheck.PROBE_MARGIN_BYTES
    monkeypatch.setattr(selfcheck, "available_memory", lambda: need)
    assert selfcheck.room_for_float32(half)
    monkeypatch.setattr(selfcheck, "available_memory", lambda: need - 1)
    assert not selfcheck.room_for_float32(half)


def test_a_float32_model_is_judged_in_float32_without_a_copy(monkeypatch):
    monkeypatch.setattr(selfcheck, "in_float32", None)  # never called
    loaded = models.wrap_model(get_tiny_model(), get_tiny_tokenizer())
    result = probe(loaded)
    assert result.passed and result.judged_in == "float32"


@pytest.mark.parametrize("result, error", [
    ("raise", "RuntimeError: expected mask dtype to be bool or float"),
    ("nan", "its log-probabilities were not finite"),
])
def test_a_fast_path_broken_only_in_half_precision_fails(result, error):
    # The float32 comparison passes; the run in the model's own dtype, which
    # the user's scoring will use, does not.
    loaded = loaded_bf16()
    before = snapshot(loaded.model)
    got = probe(loaded, BrokenInHalfPrecision(loaded, result))
    assert not got.passed and got.error == error and got.judged_in == "bfloat16"
    assert got.describe() == f"it failed in bfloat16 ({error})"
    assert_unchanged(loaded.model, before)


# ------------------------------------------------- the weights afterwards


def test_the_weights_come_back_bit_for_bit_each_in_its_dtype():
    loaded = loaded_bf16()
    before = snapshot(loaded.model)
    assert before["model.rotary_emb.inv_freq"][1] == torch.float32
    assert probe(loaded).judged_in == "float32"
    assert_unchanged(loaded.model, before)
    assert loaded.model.dtype == torch.bfloat16


def test_tied_weights_stay_tied():
    loaded = loaded_bf16(tied=True)
    model = loaded.model
    before = snapshot(model)
    seen = []

    def spy(module, args, output):
        seen.append((module.weight.dtype, module.weight is model.model.embed_tokens.weight))

    hook = model.lm_head.register_forward_hook(spy)
    try:
        result = probe(loaded)
    finally:
        hook.remove()
    assert result.passed and result.judged_in == "float32"
    assert (torch.float32, True) in seen  # tied while in float32 too
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert_unchanged(model, before)


def test_the_weights_come_back_when_the_fast_path_raises():
    class Raises:
        def score(self, *args, **kwargs):
            raise RuntimeError("broken")

    loaded = loaded_bf16()
    before = snapshot(loaded.model)
    result = probe(loaded, Raises())
    assert result.error == "RuntimeError: broken" and result.judged_in == "float32"
    assert_unchanged(loaded.model, before)


def test_the_weights_come_back_when_anything_raises_in_float32():
    model = bf16_model()
    before = snapshot(model)
    with pytest.raises(KeyboardInterrupt):
        with selfcheck.in_float32(selfcheck.half_precision_tensors(model)):
            assert model.model.embed_tokens.weight.dtype == torch.float32
            raise KeyboardInterrupt
    assert_unchanged(model, before)


# ------------------------------------------------- the probe's prompts


def test_the_probe_nests_shared_prefixes():
    loaded = models.wrap_model(get_tiny_model(), get_tiny_tokenizer())
    (nested, head), (apart, hint), = selfcheck.probe_inputs(loaded)[0]
    on_b, under_b_short, under_b_long, under_c = nested
    assert len(head) == 3 and all(p[:3] == head for p in nested)
    # head + B is a prompt and the shared prefix of two longer ones, which
    # branch at once and differ in length.
    assert under_b_short[:-1] == on_b == under_b_long[:-2]
    assert under_b_short[-1] != under_b_long[len(on_b)]
    # C branches off right after the head.
    assert on_b[3] != under_c[3]
    assert sorted(len(p) for p in nested) == [5, 5, 6, 7]
    # A call whose prompts share nothing, without a hint.
    assert hint is None and apart[1] == under_c and apart[0][0] != head[0]


def test_the_probe_adds_windows_to_the_nested_group():
    from families import WINDOW, family_model

    loaded = models.wrap_model(family_model("mistral", len(get_tiny_tokenizer())),
                               get_tiny_tokenizer())
    groups, _ = selfcheck.probe_inputs(loaded, window=WINDOW)
    nested, head = groups[0]
    assert len(nested) == 5 and len(nested[-1]) > WINDOW and nested[-1][:3] == head
    assert len(groups) == 3 and len(groups[2][1]) > WINDOW


# ------------------------------------------------- the kept verdict


def test_only_a_verdict_judged_in_float32_is_kept(monkeypatch, tmp_path):
    loaded = loaded_bf16()
    loaded.selfcheck_file = tmp_path / "selfcheck-cpu.json"
    monkeypatch.setattr(selfcheck, "room_for_float32", lambda tensors: False)
    in_bf16 = probe(loaded)
    assert in_bf16.passed and in_bf16.judged_in == "bfloat16"
    selfcheck.remember_pass(loaded, "tree-mask", in_bf16)
    assert not loaded.selfcheck_file.exists()
    monkeypatch.undo()
    in_float32 = probe(loaded)
    selfcheck.remember_pass(loaded, "tree-mask", in_float32)
    kept = json.loads(loaded.selfcheck_file.read_text())
    assert kept["key"]["judged_in"] == "float32" and kept["key"]["dtype"] == "torch.bfloat16"
    again = selfcheck.remembered_pass(loaded, "tree-mask")
    assert again.remembered and again.passed and again.judged_in == "float32"
    assert again.tolerance == selfcheck.TOLERANCE["float32"]


def test_a_verdict_kept_before_float32_judging_is_not_taken(tmp_path):
    loaded = loaded_bf16()
    loaded.selfcheck_file = tmp_path / "selfcheck-cpu.json"
    key = selfcheck.verdict_key(loaded, "tree-mask")
    del key["judged_in"]  # as written by an earlier version, judged in bfloat16
    loaded.selfcheck_file.write_text(json.dumps({"key": key, "difference": 0.1}))
    assert selfcheck.remembered_pass(loaded, "tree-mask") is None


# ------------------------------------------------- the warning


def test_the_warning_says_the_probabilities_stay_exact(monkeypatch):
    loaded = loaded_bf16()
    real = TreeMaskBackend.score

    def shifted(self, prompts, labels, *args, **kwargs):
        out = real(self, prompts, labels, *args, **kwargs)
        out[0, 0] += 0.05
        return out

    monkeypatch.setattr(TreeMaskBackend, "score", shifted)
    message = ("nbllm's tree-mask scoring path is not exact for LlamaForCausalLM: its "
               "log-probabilities differ from a plain forward pass by up to 0.05 (judged "
               "in float32, tolerance 0.002).  nbllm scores this model with the slower "
               "exact path from now on: the probabilities stay exact, only scoring takes "
               "longer.")
    with pytest.warns(RuntimeWarning, match=f"^{re.escape(message)}$"):
        choice = backend_choice(loaded)
    assert choice.name == "exact" and choice.probe.judged_in == "float32"


def test_the_warning_names_the_dtype_a_failure_happened_in():
    failed = selfcheck.ProbeResult(np.inf, "RuntimeError: boom", 0.0, 0.15, "bfloat16")
    assert fallback_message("Gemma3ForCausalLM", "tree-mask", failed, "exact") == (
        "nbllm's tree-mask scoring path is not exact for Gemma3ForCausalLM: it failed in "
        "bfloat16 (RuntimeError: boom).  nbllm scores this model with the slower exact "
        "path from now on: the probabilities stay exact, only scoring takes longer.")


def test_the_kept_verdicts_engine_digest_covers_both_halves_of_the_engine(monkeypatch):
    """A change to any engine file, the scoring code in engine/scoring/ included,
    or to nbllm/compat.py (which picks the attention function), changes the key
    of a kept verdict."""
    from pathlib import Path

    engine = Path(selfcheck.__file__).parents[1]
    read = []
    real_read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda path: read.append(path) or real_read_bytes(path))
    monkeypatch.setattr(selfcheck, "_ENGINE_DIGEST", None)
    digest = selfcheck._engine_digest()
    assert set(read) == set(engine.rglob("*.py")) | {engine.parent / "compat.py"}
    assert {engine / "scoring" / "tree_mask.py", engine / "scoring" / "selfcheck.py",
            engine / "loading" / "models.py"} <= set(read)
    # Another byte in one scoring file: another digest.
    monkeypatch.setattr(Path, "read_bytes", lambda path: real_read_bytes(path) + (
        b"#" if path.name == "tree_mask.py" else b""))
    monkeypatch.setattr(selfcheck, "_ENGINE_DIGEST", None)
    assert selfcheck._engine_digest() != digest
