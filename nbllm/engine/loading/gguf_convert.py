"""De-quantize a GGUF file into a safetensors folder, one tensor at a time.

``from_pretrained(gguf_file=...)`` holds every de-quantized tensor in memory,
then the model, then a copy while saving: 2.7 GB for Gemma 3 270M's 253 MB
file, so a 3B file would exhaust a 24 GB machine.  Here the file stays memory
mapped and each tensor is de-quantized (in slices of rows, for the largest),
turned into the model's layout, cast to the stored dtype and written before
the next is read, so memory holds one shard of output at most.

The weights are transformers' own: the same de-quantizer (``gguf``'s), the
same per-family tensor processors and name map (``transformers``' GGUF
module), the same order of float operations, so the folder loads
bit-identical to ``from_pretrained(gguf_file=...)`` (tested on both embedded
files).  The config and the tokenizer come from transformers' public API.
"""

import json

import numpy as np

from ... import compat
from ...exceptions import ModelError

# A shard of the converted weights is written once it holds this many bytes;
# the conversion's memory is about one shard plus the largest tensor.
SHARD_BYTES = 256 * 2**20
# A tensor is de-quantized this many bytes of float32 output at a time:
# gguf's de-quantizers make a few temporaries the size of their output.
SLICE_BYTES = 32 * 2**20
WEIGHTS_INDEX = "model.safetensors.index.json"


def open_reader(gguf_path):
    """Parse a GGUF file's header once: a ``gguf.GGUFReader`` over its memory map.

    It reads arrays of scalars or strings in one pass rather than element by
    element (:func:`nbllm.compat.plain_reader`): Gemma 3's vocabulary parses
    in under a second instead of 23 s.
    """
    return compat.plain_reader(gguf_path)


def check_convertible(spec, gguf_path, reader):
    """Refuse, before any long work, a file transformers or gguf cannot convert.

    Parameters
    ----------
    spec : str
        The model spec, for the message.
    gguf_path : pathlib.Path
        The file.
    reader : gguf.GGUFReader
        The file, opened.

    Raises
    ------
    ModelError
        Naming the architecture or the quantization type and what to do.
    """
    import transformers
    from gguf import dequantize

    supported = compat.gguf_architectures()
    architecture = _architecture(reader)
    # transformers reads these under another name (modeling_gguf_pytorch_utils).
    known = supported | {"qwen2moe", "qwen3moe", "gpt-oss", "t5encoder"}
    if architecture in _packed_only() - known:
        raise ModelError(
            f"Could not load model {spec!r}: {gguf_path.name} holds a {architecture!r} "
            f"model, which transformers {transformers.__version__} loads from GGUF only "
            "with its weights kept packed, not tensor by tensor as nbllm converts them; "
            "use the original model's Hugging Face folder"
        )
    if architecture not in known:
        raise ModelError(
            f"Could not load model {spec!r}: {gguf_path.name} holds a {architecture!r} "
            f"model, an architecture transformers {transformers.__version__} cannot load "
            f"from GGUF (it can: {', '.join(sorted(supported))}); "
            "use the original model's Hugging Face folder, or a newer transformers"
        )
    seen = set()
    for tensor in reader.tensors:
        kind = tensor.tensor_type
        if kind in seen:
            continue
        seen.add(kind)
        try:
            dequantize(_rows(tensor.data)[:1], kind)
        except NotImplementedError:
            raise ModelError(
                f"Could not load model {spec!r}: {gguf_path.name} stores {tensor.name} "
                f"as {kind.name}, a quantization type the installed gguf package cannot "
                "de-quantize; use a file quantized as Q4_K_M, Q8_0 or another k-quant, "
                "or upgrade gguf"
            ) from None


def _packed_only():
    """Architectures that only transformers' newer packed-GGUF loader (5.x) reads."""
    return compat.packed_gguf_architectures()


def _architecture(reader):
    field = reader.fields["general.architecture"]
    return bytes(field.parts[field.data[0]]).decode()


def _rows(data):
    """A tensor's raw data as rows (a 1-D tensor is one row)."""
    return data.reshape(1, -1) if data.ndim == 1 else data.reshape(-1, data.shape[-1])


def _dequantize(tensor):
    """One tensor as float32 numpy, de-quantized a slice of rows at a time.

    gguf's de-quantizers work block by block along the last axis, so slices
    of rows give the same bits as the whole tensor at once, with temporaries
    the size of a slice instead of the tensor.
    """
    from gguf import dequantize

    data, kind = tensor.data, tensor.tensor_type
    rows = _rows(data)
    first = dequantize(rows[:1], kind)  # gives the width of a de-quantized row
    width = first.shape[-1]
    out = np.empty((rows.shape[0], width), dtype=np.float32)
    step = max(1, SLICE_BYTES // (width * 4))
    for start in range(0, rows.shape[0], step):
        out[start:start + step] = dequantize(rows[start:start + step], kind)
    # The rows' layout, with the last axis counted in weights, not bytes.
    return out.reshape(*data.shape[:-1], width) if data.ndim > 1 else out.reshape(width)


def write_weights(gguf_path, reader, folder, dtype):
    """De-quantize every tensor of the file into safetensors shards in ``folder``.

    Parameters
    ----------
    gguf_path : pathlib.Path
        The file.
    reader : gguf.GGUFReader
        The file, opened (its tensors are memory-mapped views).
    folder : pathlib.Path
        An empty folder to write ``config.json``, the weights and, when they
        take more than one shard, their index.
    dtype : torch.dtype
        The stored dtype.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                        trust_remote_code=False)
    # A model without storage: only its parameter names and shapes are needed.
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    processor = compat.gguf_tensor_processor(_architecture(reader), config.to_dict())
    names = compat.gguf_weights_map(model, processor)
    # Processors of mixture-of-experts families gather experts into tensors
    # they keep here, complete only at the end.
    gathered = {"config": config.to_dict(), "tensors": {}}
    shards = _ShardWriter(folder)
    for tensor in reader.tensors:
        result = processor.process(weights=_dequantize(tensor), name=tensor.name,
                                   tensor_key_mapping=names, parsed_parameters=gathered)
        if result.name in names:
            shards.add(names[result.name], torch.from_numpy(result.weights).to(dtype))
    for name, weights in gathered["tensors"].items():
        shards.add(name, weights.to(dtype))
    shards.close()
    config.architectures = [type(model).__name__]
    config.dtype = dtype
    config.save_pretrained(folder)
    if model.can_generate():
        model.generation_config.save_pretrained(folder)


class _ShardWriter:
    """Write named tensors to safetensors files of about ``SHARD_BYTES`` each."""

    def __init__(self, folder):
        self.folder, self.pending, self.size = folder, {}, 0
        self.written = []  # (file name, tensor names)

    def add(self, name, tensor):
        nbytes = tensor.numel() * tensor.element_size()
        if self.pending and self.size + nbytes > SHARD_BYTES:
            self._flush()
        # Contiguous and owning its memory: safetensors writes raw bytes.
        self.pending[name] = tensor.contiguous()
        self.size += nbytes

    def _flush(self):
        from safetensors.torch import save_file

        file = f"model-{len(self.written) + 1:05d}.safetensors"
        save_file(self.pending, self.folder / file, metadata={"format": "pt"})
        self.written.append((file, list(self.pending)))
        self.pending, self.size = {}, 0

    def close(self):
        """Write the last shard, then name the files as transformers expects."""
        if self.pending or not self.written:
            self._flush()
        if len(self.written) == 1:
            (self.folder / self.written[0][0]).rename(self.folder / "model.safetensors")
            return
        total = sum((self.folder / file).stat().st_size for file, _ in self.written)
        index = {"metadata": {"total_size": total},
                 "weight_map": {name: file for file, names in self.written for name in names}}
        (self.folder / WEIGHTS_INDEX).write_text(json.dumps(index, indent=2))
