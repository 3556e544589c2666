"""Attention over a shared prefix: per-row copies against Hydragen's split, one layer.

Run::

    python benchmarks/bench_prefix_attention.py [--device cpu] [--dtype bfloat16]
        [--rows 20] [--width 50] [--prefix 300]

The tree-mask backend attends each batch row to the shared prefix's keys and
values by expanding them to every row, which the model's cache update then
concatenates with the row's own (a copy of the prefix per row and layer),
and runs PyTorch's fused SDPA.  Hydragen (and ChunkAttention) instead
attend all rows' queries to the one prefix at once and merge that with each
row's attention over its own tokens by their log-sum-exp, with no copy.  This
times one attention layer of the embedded model's shape (9 query heads, 3
key/value heads, 64 dimensions) three ways, after checking they agree:

- ``concat``: the prefix expanded and concatenated per row, fused SDPA with
  the mask (what the backend does);
- ``split-fused``: the prefix part as one fused attention call over all rows'
  queries (SDPA's CPU kernel returns the log-sum-exp), the suffix part per row,
  merged by log-sum-exp (CPU only: the kernel is PyTorch's
  ``_scaled_dot_product_flash_attention_for_cpu``);
- ``split-gemm``: the prefix part as two matrix products with a float32
  softmax in between (any device), merged the same way.

It prints the minimum and median milliseconds of each over ``--repeat`` runs,
interleaved, and the largest difference from ``concat``.
"""

import argparse
import statistics
import time


def make_inputs(rows, width, prefix, device, dtype, heads=9, kv_heads=3, dim=64):
    import torch

    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    causal = torch.tril(torch.ones(width, width, dtype=torch.bool, device=device))
    suffix_mask = torch.zeros(rows, 1, width, width, dtype=dtype, device=device)
    suffix_mask.masked_fill_(~causal, torch.finfo(dtype).min)
    return dict(query=rand(rows, heads, width, dim), keys=rand(rows, kv_heads, width, dim),
                values=rand(rows, kv_heads, width, dim), prefix_keys=rand(1, kv_heads, prefix, dim),
                prefix_values=rand(1, kv_heads, prefix, dim), suffix_mask=suffix_mask)


def concat(query, keys, values, prefix_keys, prefix_values, suffix_mask):
    import torch

    rows = query.shape[0]
    k = torch.cat([prefix_keys.expand(rows, -1, -1, -1), keys], 2)
    v = torch.cat([prefix_values.expand(rows, -1, -1, -1), values], 2)
    visible = torch.zeros(*suffix_mask.shape[:3], prefix_keys.shape[2],
                          dtype=suffix_mask.dtype, device=suffix_mask.device)
    mask = torch.cat([visible, suffix_mask], 3)
    return torch.nn.functional.scaled_dot_product_attention(query, k, v, attn_mask=mask,
                                                            enable_gqa=True)


def _by_kv_head(query, kv_heads):
    """(rows, heads, width, dim) -> (kv_heads, rows * group * width, dim)."""
    rows, heads, width, dim = query.shape
    group = heads // kv_heads
    return query.view(rows, kv_heads, group, width, dim).transpose(0, 1).reshape(
        kv_heads, rows * group * width, dim)


def _from_kv_head(x, rows, heads):
    """The inverse of :func:`_by_kv_head` (a trailing dim of 1 or ``dim``)."""
    kv_heads = x.shape[0]
    return x.reshape(kv_heads, rows, heads // kv_heads, -1, x.shape[-1]).transpose(
        0, 1).reshape(rows, heads, -1, x.shape[-1])


def _merge(prefix_out, prefix_lse, suffix_out, suffix_lse, dtype):
    import torch

    share = torch.sigmoid(prefix_lse - suffix_lse)[..., None]
    return (prefix_out.float() * share + suffix_out.float() * (1 - share)).to(dtype)


def _suffix_part(query, keys, values, suffix_mask):
    import torch

    group = query.shape[1] // keys.shape[1]
    kernel = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    return kernel(query, keys.repeat_interleave(group, 1), values.repeat_interleave(group, 1),
                  0.0, False, attn_mask=suffix_mask)


def split_fused(query, keys, values, prefix_keys, prefix_values, suffix_mask):
    import torch

    rows, heads = query.shape[:2]
    kernel = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    q = _by_kv_head(query, prefix_keys.shape[1])[None]
    out, lse = kernel(q, prefix_keys, prefix_values, 0.0, False)
    prefix_out = _from_kv_head(out[0], rows, heads)
    prefix_lse = _from_kv_head(lse[0][..., None], rows, heads)[..., 0]
    suffix_out, suffix_lse = _suffix_part(query, keys, values, suffix_mask)
    return _merge(prefix_out, prefix_lse, suffix_out, suffix_lse, query.dtype)


def split_gemm(query, keys, values, prefix_keys, prefix_values, suffix_mask):
    import torch

    rows, heads, _, dim = query.shape
    q = _by_kv_head(query, prefix_keys.shape[1])
    scores = torch.matmul(q, prefix_keys[0].transpose(1, 2)).float() * dim ** -0.5
    top = scores.amax(-1, keepdim=True)
    weights = torch.exp(scores - top)
    total = weights.sum(-1, keepdim=True)
    out = torch.matmul(weights.to(query.dtype), prefix_values[0]).float() / total
    prefix_out = _from_kv_head(out, rows, heads)
    prefix_lse = _from_kv_head(top + total.log(), rows, heads)[..., 0]
    if query.device.type == "cpu":
        suffix_out, suffix_lse = _suffix_part(query, keys, values, suffix_mask)
    else:
        group = heads // keys.shape[1]
        s = torch.matmul(query, keys.repeat_interleave(group, 1).transpose(2, 3)).float()
        s = s * dim ** -0.5 + suffix_mask.float()
        suffix_lse = torch.logsumexp(s, -1)
        suffix_out = torch.matmul(torch.softmax(s, -1).to(query.dtype),
                                  values.repeat_interleave(group, 1))
    return _merge(prefix_out, prefix_lse, suffix_out, suffix_lse, query.dtype)


def main():
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--prefix", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    inputs = make_inputs(args.rows, args.width, args.prefix, device, dtype)
    ways = [concat, split_gemm] + ([split_fused] if device.type == "cpu" else [])
    reference = concat(**inputs).float()
    times = {way.__name__: [] for way in ways}
    with torch.inference_mode():
        for way in ways:
            diff = float((way(**inputs).float() - reference).abs().max())
            print(f"{way.__name__:<12} max |difference| from concat {diff:.1e}")
        for _ in range(args.repeat):
            for way in ways:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                way(**inputs)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[way.__name__].append(time.perf_counter() - start)
    print(f"{args.rows} rows x {args.width} tokens over a {args.prefix}-token prefix, "
          f"{args.dtype} on {args.device}, {torch.get_num_threads()} threads")
    for name, values in times.items():
        print(f"{name:<12} min {min(values) * 1e3:6.2f} ms   median "
              f"{statistics.median(values) * 1e3:6.2f} ms")


if __name__ == "__main__":
    main()
