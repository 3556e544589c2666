"""Grouped-query attention without copying keys and values, for masked CPU passes.

Models with grouped-query attention (Llama 3, SmolLM2, Qwen2, Mistral...) keep
fewer key/value heads than query heads.  transformers' SDPA path repeats the
key/value heads to the query heads' count whenever an attention mask is given
(CUDA's fast kernels cannot take both), which copies every layer's keys and
values, the shared prefix's included, for every row of every batch.  The
tree-mask backend always passes a mask; profiled on 2 CPU cores, few-shot
prompts, those copies were about a tenth of the pass.

PyTorch's CPU kernel takes a mask and ``enable_gqa=True`` together, so on the
CPU the tree-mask passes run under an attention function that does just that.
It is the same arithmetic as the stock SDPA function (the self-check verifies
each model under it) and hands every other case back to the stock one.  The
switch is per call and per model (:func:`native_gqa`), and seen by the calling
thread only (:func:`nbllm.compat.sdpa_override`): the model's config is not
changed, so another thread using the same model meanwhile runs transformers'
own SDPA.  A model whose attention is not SDPA, or a device other than the
CPU, is left alone.
"""

import contextlib

from ... import compat


def _attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
               is_causal=None, **kwargs):
    """transformers' attention-function contract: returns (output, None)."""
    import torch

    groups = getattr(module, "num_key_value_groups", 1)
    special = any(kwargs.get(k) is not None for k in ("softcap", "position_bias", "s_aux"))
    if groups == 1 or attention_mask is None or special or kwargs.get("output_attentions"):
        return compat.stock_sdpa()(module, query, key, value, attention_mask,
                                   dropout=dropout, scaling=scaling, is_causal=is_causal,
                                   **kwargs)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling,
        enable_gqa=True,
    )
    return out.transpose(1, 2).contiguous(), None


def _uses_gqa(model):
    config = model.config
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    return isinstance(heads, int) and isinstance(kv_heads, int) and heads > kv_heads


@contextlib.contextmanager
def native_gqa(model, device):
    """Run the block's forward passes of ``model`` with key/value heads uncopied.

    Does nothing unless the device is the CPU, the model's attention is
    transformers' ``"sdpa"`` and it groups its query heads.  Only this
    thread's passes switch; the model and its config are not changed.
    """
    switch = (device.type == "cpu" and compat.attention_implementation(model.config) == "sdpa"
              and _uses_gqa(model))
    if not switch:
        yield
        return
    with compat.sdpa_override(_attention):
        yield
