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

import contextlib
import functools
import inspect
import json
import sys
from pathlib import Path

import numpy as np

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

    gguf's reader slices its ``numpy.memmap`` once per value and twice per
    string, and each slice of that subclass costs microseconds of Python: a
    262k-token vocabulary took 23 s.  This reader works on a plain ndarray
    view of the same map and reads arrays of scalars or strings in one pass
    (:func:`_array_parts`), with the same fields as a result: Gemma 3's
    vocabulary then parses in under a second.
    """
    from gguf import GGUFReader, GGUFValueType

    class PlainReader(GGUFReader):
        def _get(self, *args, **kwargs):
            if type(self.data) is not np.ndarray:
                # Still the file's map (the view keeps it alive), minus the subclass.
                self.data = self.data.view(np.ndarray)
            return super()._get(*args, **kwargs)

        def _get_field_parts(self, orig_offs, raw_type):
            if GGUFValueType(raw_type) == GGUFValueType.ARRAY:
                parts = _array_parts(self, orig_offs)
                if parts is not None:
                    return parts
            return super()._get_field_parts(orig_offs, raw_type)

    return PlainReader(str(gguf_path))


def _array_parts(reader, offset):
    """``reader._get_field_parts`` of the array at ``offset``, read in one pass.

    gguf's reader walks an array element by element (a recursive call and
    one or two slices each); here a string's length is read with
    ``int.from_bytes`` and each element's parts are plain slices of the same
    memory, with the dtypes and layout gguf's own walk gives (tested).
    Returns None for arrays of arrays, which gguf's walk reads.
    """
    from gguf import GGUFValueType

    item_type = reader._get(offset, np.uint32)
    length = reader._get(offset + 4, np.uint64)
    kind = GGUFValueType(int(item_type[0]))
    count, start = int(length[0]), offset + 12
    parts = [item_type, length]
    if not count:  # gguf's walk names no item type then, whatever the kind
        return 12, parts, [], [GGUFValueType.ARRAY]
    types = [GGUFValueType.ARRAY, kind]
    scalar = reader.gguf_scalar_to_np.get(kind)
    if scalar is not None:
        values = reader._get(start, scalar, count)
        parts += (values[i:i + 1] for i in range(count))
        return 12 + int(values.nbytes), parts, list(range(2, 2 + count)), types
    if kind != GGUFValueType.STRING:
        return None
    # The length prefix's dtype and byte order, as gguf's own _get gives them.
    length_type = reader._get(start, np.uint64).dtype
    order = _byte_order(length_type)
    data, raw, end = reader.data, memoryview(reader.data), start
    for _ in range(count):
        size = int.from_bytes(raw[end:end + 8], order)
        parts += (data[end:end + 8].view(length_type), data[end + 8:end + 8 + size])
        end += 8 + size
    return end - offset, parts, list(range(3, 3 + 2 * count, 2)), types


def _byte_order(dtype):
    """'little' or 'big': how ``int.from_bytes`` reads a value of ``dtype``."""
    return {"<": "little", ">": "big"}.get(dtype.byteorder, sys.byteorder)


@contextlib.contextmanager
def shared_reader(gguf_path, reader):
    """Within the block, transformers reads ``gguf_path`` through ``reader``.

    transformers re-reads what cannot change within one conversion: the
    whole header (the vocabulary included) at each of its calls (the
    tokenizer, the config: three parses of a 262k-token vocabulary, most of a
    conversion's time), and gguf's tensor-name table once per module of the
    model (300 times for Gemma 3).  It looks both names up in ``gguf`` when
    called, so for this block ``gguf.GGUFReader`` returns the reader already
    open for this file (a new one for any other file), and
    ``gguf.get_tensor_name_map`` remembers its tables.
    """
    import gguf

    reader_class, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    path = Path(gguf_path).resolve()

    def reuse(file, *args, **kwargs):
        if not args and not kwargs and Path(file).resolve() == path:
            return reader
        return reader_class(file, *args, **kwargs)

    gguf.GGUFReader = reuse
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader_class, name_map


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
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    architecture = _architecture(reader)
    # transformers reads these under another name (modeling_gguf_pytorch_utils).
    known = set(GGUF_SUPPORTED_ARCHITECTURES) | {"qwen2moe", "qwen3moe", "gpt-oss", "t5encoder"}
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
            f"from GGUF (it can: {', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))}); "
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
    try:
        from transformers.integrations.gguf.utils import GGUF_ARCHS
    except ImportError:  # an older transformers: none
        return set()
    return set(GGUF_ARCHS)


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


def _name_map(model, processor):
    """transformers' GGUF-to-model tensor names (its signature changed in 5.x)."""
    from transformers.modeling_gguf_pytorch_utils import get_gguf_hf_weights_map

    if "processor" in inspect.signature(get_gguf_hf_weights_map).parameters:
        return get_gguf_hf_weights_map(model, processor)
    return get_gguf_hf_weights_map(model)


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
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor

    config = AutoConfig.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                        trust_remote_code=False)
    # A model without storage: only its parameter names and shapes are needed.
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    processor = TENSOR_PROCESSORS.get(_architecture(reader), TensorProcessor)(
        config=config.to_dict())
    names = _name_map(model, processor)
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
