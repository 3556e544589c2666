"""Llama-family GGUF files of any size, written with gguf's own writer.

For tests of the conversion (small ones, quantized like real files) and for
benchmarks/bench_conversion.py (files larger than any installed model, rather
than extrapolating).  Weights are random blocks with valid scales, so
de-quantizing them costs what a real file of those types costs.
"""

import numpy as np

# (elements, bytes) per block, and the byte ranges of each block's float16
# scales, which must hold finite numbers.
BLOCKS = {
    "Q8_0": (32, 34, [(0, 2)]),
    "Q4_K": (256, 144, [(0, 2), (2, 4)]),
    "Q6_K": (256, 210, [(208, 210)]),
}
SCALE = np.float16(0.002).tobytes()


def _blocks(rows, cols, kind, rng):
    """Random quantized rows of ``kind`` with valid, small scales."""
    elements, size, scales = BLOCKS[kind]
    data = rng.integers(0, 256, size=(rows, cols // elements, size), dtype=np.uint8)
    for start, end in scales:
        data[:, :, start:end] = np.frombuffer(SCALE, dtype=np.uint8)
    return data.reshape(rows, -1)


def write_llama_gguf(path, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128,
                     vocab=None, matrix_type="Q8_0", tokenizer_from=None, seed=0):
    """Write a Llama GGUF file with random weights; return its path.

    Parameters
    ----------
    path : pathlib.Path
        Where to write.
    hidden, layers, heads, kv_heads, intermediate : int
        The architecture (rows and columns must be multiples of the block).
    vocab : int or None
        The vocabulary size; None takes it from ``tokenizer_from``.
    matrix_type : str
        How the matrices are stored: a key of :data:`BLOCKS` or ``'F32'``.
        Norms are float32, as in real files.
    tokenizer_from : pathlib.Path or None
        A GGUF file whose tokenizer fields are copied, so that transformers
        can build a tokenizer (a whole first load); None writes none.
    seed : int
        Seeds the weights.
    """
    from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter, GGUFValueType

    rng = np.random.default_rng(seed)
    writer = GGUFWriter(str(path), "llama")
    if tokenizer_from is not None:
        reader = GGUFReader(str(tokenizer_from))
        for key, field in reader.fields.items():
            if not key.startswith("tokenizer."):
                continue
            values = [field.parts[i] for i in field.data]
            kind = field.types[0]
            if kind == GGUFValueType.ARRAY:
                item = field.types[1]
                if item == GGUFValueType.STRING:
                    writer.add_array(key, [bytes(v).decode("utf-8") for v in values])
                else:
                    writer.add_array(key, [v.tolist()[0] for v in values])
            elif kind == GGUFValueType.STRING:
                writer.add_string(key, bytes(values[0]).decode("utf-8"))
            else:
                writer.add_key_value(key, values[0].tolist()[0], kind)
        vocab = vocab or len(reader.fields["tokenizer.ggml.tokens"].data)
    writer.add_context_length(2048)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(intermediate)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)

    def matrix(name, rows, cols):
        if matrix_type == "F32":
            writer.add_tensor(name, rng.standard_normal((rows, cols), dtype=np.float32) * 0.02)
        else:
            writer.add_tensor(name, _blocks(rows, cols, matrix_type, rng),
                              raw_dtype=GGMLQuantizationType[matrix_type])

    def norm(name):
        writer.add_tensor(name, 1 + 0.1 * rng.standard_normal(hidden, dtype=np.float32))

    head_dim = hidden // heads
    matrix("token_embd.weight", vocab, hidden)
    for layer in range(layers):
        block = f"blk.{layer}"
        norm(f"{block}.attn_norm.weight")
        matrix(f"{block}.attn_q.weight", hidden, hidden)
        matrix(f"{block}.attn_k.weight", kv_heads * head_dim, hidden)
        matrix(f"{block}.attn_v.weight", kv_heads * head_dim, hidden)
        matrix(f"{block}.attn_output.weight", hidden, hidden)
        norm(f"{block}.ffn_norm.weight")
        matrix(f"{block}.ffn_gate.weight", intermediate, hidden)
        matrix(f"{block}.ffn_up.weight", intermediate, hidden)
        matrix(f"{block}.ffn_down.weight", hidden, intermediate)
    norm("output_norm.weight")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
