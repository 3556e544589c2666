"""The streaming GGUF conversion: transformers' own weights, in bounded memory.

Unit tests run on small Llama files written with gguf's writer
(synthetic_gguf.py) in the quantization types of real files; the slow ones
compare the two real models' converted copies with transformers' own load.
"""

import re

import numpy as np
import pytest
import torch

from nbllm import compat
from nbllm.engine.loading import gguf_convert
from nbllm.engine.loading.gguf import converted_copy, converter_versions
from nbllm.exceptions import ModelError
from synthetic_gguf import write_llama_gguf


def transformers_own(path, dtype=torch.float32):
    """The state dict of ``from_pretrained(gguf_file=...)``."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                 dtype=dtype)
    return model.state_dict()


def converted_weights(folder):
    from safetensors import safe_open

    weights = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), "pt") as shard:
            weights.update({name: shard.get_tensor(name) for name in shard.keys()})
    return weights


def assert_bit_identical(ours, theirs):
    # Tied weights (the LM head) are saved once, as transformers saves them.
    assert set(ours) <= set(theirs) and len(ours) >= len(theirs) - 1
    for name, tensor in ours.items():
        assert tensor.dtype == theirs[name].dtype, name
        assert torch.equal(tensor, theirs[name]), name


@pytest.mark.parametrize("matrix_type", ["Q8_0", "Q4_K", "Q6_K", "F32"])
def test_weights_equal_transformers_own_load_bit_for_bit(tmp_path, monkeypatch, matrix_type):
    path = write_llama_gguf(tmp_path / "model.gguf", hidden=256, intermediate=512, vocab=512,
                            heads=4, kv_heads=2, matrix_type=matrix_type)
    # Small shards and slices: several of each, as for a large file.
    monkeypatch.setattr(gguf_convert, "SHARD_BYTES", 1 << 20)
    monkeypatch.setattr(gguf_convert, "SLICE_BYTES", 64 << 10)
    out = tmp_path / "out"
    out.mkdir()
    gguf_convert.write_weights(path, gguf_convert.open_reader(path), out, torch.float32)
    assert (out / gguf_convert.WEIGHTS_INDEX).is_file()
    assert len(list(out.glob("*.safetensors"))) > 2
    assert_bit_identical(converted_weights(out), transformers_own(path))


def test_bfloat16_copy_is_transformers_float32_load_rounded_once(tmp_path):
    path = write_llama_gguf(tmp_path / "model.gguf", hidden=256, intermediate=512, vocab=512,
                            matrix_type="Q4_K")
    out = tmp_path / "out"
    out.mkdir()
    gguf_convert.write_weights(path, gguf_convert.open_reader(path), out, torch.bfloat16)
    # One shard: named as save_pretrained names it.
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["model.safetensors"]
    theirs = {n: t.to(torch.bfloat16) for n, t in transformers_own(path).items()}
    assert_bit_identical(converted_weights(out), theirs)


def test_a_folder_loads_as_the_same_model(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    path = write_llama_gguf(tmp_path / "model.gguf", hidden=256, intermediate=512, vocab=512)
    monkeypatch.setattr(gguf_convert, "SHARD_BYTES", 1 << 20)
    out = tmp_path / "out"
    out.mkdir()
    gguf_convert.write_weights(path, gguf_convert.open_reader(path), out, torch.float32)
    ours = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert ours.config.architectures == ["LlamaForCausalLM"]
    ids = torch.tensor([[1, 5, 9, 200]])
    theirs = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="model.gguf",
                                                  dtype=torch.float32)
    assert torch.equal(ours(ids).logits, theirs(ids).logits)


def test_slices_of_rows_give_the_whole_tensors_bits(tmp_path, monkeypatch):
    from gguf import dequantize

    path = write_llama_gguf(tmp_path / "model.gguf", hidden=256, intermediate=512, vocab=512,
                            matrix_type="Q6_K")
    monkeypatch.setattr(gguf_convert, "SLICE_BYTES", 4096)
    for tensor in gguf_convert.open_reader(path).tensors:
        whole = dequantize(tensor.data, tensor.tensor_type)
        sliced = gguf_convert._dequantize(tensor)
        assert sliced.shape == whole.shape and np.array_equal(sliced, whole), tensor.name


def test_memory_holds_one_shard_and_one_tensor(tmp_path, monkeypatch):
    path = write_llama_gguf(tmp_path / "model.gguf", hidden=256, intermediate=512, vocab=512)
    monkeypatch.setattr(gguf_convert, "SHARD_BYTES", 1 << 20)
    held = []
    real_flush = gguf_convert._ShardWriter._flush

    def flush(self):
        held.append(self.size)
        real_flush(self)

    monkeypatch.setattr(gguf_convert._ShardWriter, "_flush", flush)
    out = tmp_path / "out"
    out.mkdir()
    gguf_convert.write_weights(path, gguf_convert.open_reader(path), out, torch.float32)
    largest = 512 * 256 * 4  # the embedding, float32
    assert len(held) > 2 and max(held) <= (1 << 20) + largest


def assert_same_fields(ours, theirs):
    """Same fields, parts (values, dtypes with byte order, shapes) and tensors."""
    assert list(ours.fields) == list(theirs.fields)
    for key, field in theirs.fields.items():
        mine = ours.fields[key]
        assert (mine.offset, mine.name, mine.types, mine.data) == \
            (field.offset, field.name, field.types, field.data), key
        assert len(mine.parts) == len(field.parts), key
        for a, b in zip(mine.parts, field.parts):
            assert a.dtype == b.dtype and a.shape == b.shape, key
            assert a.tobytes() == b.tobytes(), key
    assert len(ours.tensors) == len(theirs.tensors)
    for a, b in zip(ours.tensors, theirs.tensors):
        assert a.name == b.name and a.tensor_type == b.tensor_type
        assert np.array_equal(a.data, b.data)


def test_the_plain_reader_reads_what_ggufs_reader_reads(tmp_path):
    from gguf import GGUFReader

    path = write_llama_gguf(tmp_path / "model.gguf", matrix_type="Q8_0", vocab=64)
    assert_same_fields(gguf_convert.open_reader(path), GGUFReader(str(path)))


@pytest.mark.parametrize("endian", ["LITTLE", "BIG"])
def test_arrays_read_in_one_pass_equal_ggufs_walk(tmp_path, endian):
    import gguf

    path = tmp_path / "arrays.gguf"
    writer = gguf.GGUFWriter(str(path), "llama", endianess=getattr(gguf.GGUFEndian, endian))
    writer.add_array("t.strings", ["a", "", "héllo wörld", "▁tok" * 40, "\n"])
    writer.add_array("t.empty_strings", ["", ""])
    writer.add_array("t.no_items", [])
    writer.add_array("t.floats", [0.5, -1.25, 3e-8])
    writer.add_array("t.ints", [1, -2, 2**31 - 1])
    writer.add_array("t.bools", [True, False, True])
    writer.add_array("t.nested", [[1, 2], [3]])  # arrays of arrays: gguf's own walk
    writer.add_string("t.after", "still aligned")
    writer.add_uint32("t.last", 7)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert_same_fields(gguf_convert.open_reader(path), gguf.GGUFReader(str(path)))


def test_transformers_reads_the_file_through_the_open_reader(tmp_path):
    import gguf

    path = write_llama_gguf(tmp_path / "model.gguf", vocab=64)
    other = write_llama_gguf(tmp_path / "other.gguf", vocab=64)
    reader = gguf_convert.open_reader(path)
    with pytest.raises(RuntimeError):
        with compat.shared_reader(path, reader):
            assert gguf.GGUFReader(str(path)) is reader
            assert gguf.GGUFReader(str(tmp_path / "." / "model.gguf")) is reader
            assert gguf.GGUFReader(str(other)) is not reader
            first = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
            assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2) is first
            raise RuntimeError  # gguf's own come back however the block ends
    stock, _ = compat._stock_gguf()
    assert type(gguf.GGUFReader(str(path))) is stock
    assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2) is not \
        gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)


def write_odd_gguf(path, architecture="llama", tensor_type=None):
    from gguf import GGMLQuantizationType, GGUFWriter

    writer = GGUFWriter(str(path), architecture)
    if tensor_type is None:
        writer.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    else:
        kind = GGMLQuantizationType[tensor_type]
        writer.add_tensor("token_embd.weight", np.zeros((4, 40), dtype=np.uint8), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_an_architecture_transformers_lacks_is_named_before_converting(tmp_path, monkeypatch):
    import transformers

    monkeypatch.setenv("NBLLM_CACHE_DIR", str(tmp_path / "cache"))
    path = write_odd_gguf(tmp_path / "odd.gguf", architecture="rwkv9")
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    message = (
        f"Could not load model 'odd': odd.gguf holds a 'rwkv9' model, an architecture "
        f"transformers {transformers.__version__} cannot load from GGUF (it can: "
        f"{', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))}); use the original model's "
        "Hugging Face folder, or a newer transformers"
    )
    with pytest.raises(ModelError, match=f"^{re.escape(message)}$"):
        converted_copy("odd", path)
    assert not (tmp_path / "cache" / "converted").exists() or \
        list((tmp_path / "cache" / "converted").iterdir()) == []


def test_a_quantization_type_gguf_lacks_is_named_before_converting(tmp_path, monkeypatch):
    monkeypatch.setenv("NBLLM_CACHE_DIR", str(tmp_path / "cache"))
    path = write_odd_gguf(tmp_path / "odd.gguf", tensor_type="Q8_1")
    message = (
        "Could not load model 'odd': odd.gguf stores token_embd.weight as Q8_1, a "
        "quantization type the installed gguf package cannot de-quantize; use a file "
        "quantized as Q4_K_M, Q8_0 or another k-quant, or upgrade gguf"
    )
    with pytest.raises(ModelError, match=f"^{re.escape(message)}$"):
        converted_copy("odd", path)


def test_converter_versions_name_the_libraries():
    assert re.fullmatch(r"format \d+, transformers \S+, tokenizers \S+, gguf \S+",
                        converter_versions())


# ----------------------------------------------- the real files (slow)


@pytest.mark.slow
def test_smollm2_copy_is_transformers_own_load(real_model):
    from nbllm.engine.loading.embedded import embedded_model_path

    path = embedded_model_path("smollm2-135m")
    # transformers' own load, with its parses of the header made one (the
    # values do not depend on how often the header is parsed).
    with compat.shared_reader(path, gguf_convert.open_reader(path)):
        theirs = transformers_own(path)
    assert_bit_identical(real_model.model.state_dict(), theirs)


@pytest.mark.slow
def test_gemma3_copy_is_transformers_own_load(gemma_model):
    from nbllm.engine.loading.embedded import embedded_model_path

    path = embedded_model_path("gemma3-270m")
    ours = gemma_model.model.state_dict()
    with compat.shared_reader(path, gguf_convert.open_reader(path)):
        theirs = transformers_own(path)
    assert_bit_identical(ours, theirs)


@pytest.mark.slow
def test_the_plain_reader_reads_gemma3s_vocabulary_as_ggufs_reader(gemma_model):
    # 262k tokens, scores and types: the arrays the one-pass read exists for.
    from gguf import GGUFReader

    from nbllm.engine.loading.embedded import embedded_model_path

    class WalkingReader(GGUFReader):
        """gguf's own element-by-element walk, over a plain view of the map
        (18 s over the numpy.memmap itself, 7 s so)."""

        def _get(self, *args, **kwargs):
            self.data = self.data.view(np.ndarray)
            return super()._get(*args, **kwargs)

    path = embedded_model_path("gemma3-270m")
    assert_same_fields(gguf_convert.open_reader(path), WalkingReader(str(path)))


def test_an_architecture_only_the_packed_loader_reads_is_named(tmp_path, monkeypatch):
    import transformers

    monkeypatch.setattr(gguf_convert, "_packed_only", lambda: {"qwen35", "llama"})
    monkeypatch.setenv("NBLLM_CACHE_DIR", str(tmp_path / "cache"))
    path = write_odd_gguf(tmp_path / "odd.gguf", architecture="qwen35")
    message = (
        f"Could not load model 'odd': odd.gguf holds a 'qwen35' model, which transformers "
        f"{transformers.__version__} loads from GGUF only with its weights kept packed, not "
        "tensor by tensor as nbllm converts them; use the original model's Hugging Face "
        "folder"
    )
    with pytest.raises(ModelError, match=f"^{re.escape(message)}$"):
        converted_copy("odd", path)
