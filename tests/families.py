"""Tiny random models of many transformers families, for the exactness tests.

Each builder returns a small config (two or three layers, hidden size 32-64)
sized to the tiny test tokenizer's vocabulary, so every family is scored with
the same token ids.  Sliding-window families get a window of 8 tokens, so
prompts of a few dozen tokens are "longer than the window" (a 512-token window
scaled down).
"""

import functools

WINDOW = 8


# The tiny tokenizer's special tokens: <|im_start|> is 0, <|im_end|> is 1.
_IDS = dict(bos_token_id=0, eos_token_id=1, pad_token_id=1)


def _common(vocab, **extra):
    base = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=256, initializer_range=0.2, **_IDS)
    base.update(extra)
    return base


def _llama_like(name):
    def build(vocab):
        import transformers

        return getattr(transformers, name)(**_common(vocab))
    return build


def _gpt2(vocab):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=256,
                      initializer_range=0.2, **_IDS)


def _neox(vocab):
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=256, initializer_range=0.2, **_IDS)


def _falcon(vocab):
    from transformers import FalconConfig

    return FalconConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, initializer_range=0.2, **_IDS)


def _opt(vocab):
    from transformers import OPTConfig

    return OPTConfig(vocab_size=vocab, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                     num_attention_heads=4, max_position_embeddings=256,
                     word_embed_proj_dim=32, init_std=0.2, **_IDS)


def _bloom(vocab):
    from transformers import BloomConfig

    return BloomConfig(vocab_size=vocab, hidden_size=32, n_layer=2, n_head=4,
                       initializer_range=0.2, **_IDS)


def _phi(vocab):
    from transformers import PhiConfig

    return PhiConfig(**_common(vocab, num_key_value_heads=4))


def _phi3(vocab):
    from transformers import Phi3Config

    return Phi3Config(**_common(vocab))


def _phi3_window(vocab):
    from transformers import Phi3Config

    return Phi3Config(**_common(vocab), sliding_window=WINDOW)


def _mistral(vocab):
    from transformers import MistralConfig

    return MistralConfig(**_common(vocab), sliding_window=WINDOW)


def _mixtral(vocab):
    from transformers import MixtralConfig

    return MixtralConfig(**_common(vocab), sliding_window=WINDOW, num_local_experts=4,
                         num_experts_per_tok=2)


def _qwen2_window(vocab):
    from transformers import Qwen2Config

    return Qwen2Config(**_common(vocab, num_hidden_layers=3), use_sliding_window=True,
                       sliding_window=WINDOW, max_window_layers=1)


def _qwen3_moe(vocab):
    from transformers import Qwen3MoeConfig

    return Qwen3MoeConfig(**_common(vocab), num_experts=4, num_experts_per_tok=2,
                          moe_intermediate_size=32, head_dim=8)


def _gemma(vocab):
    from transformers import GemmaConfig

    return GemmaConfig(**_common(vocab), head_dim=8)


def _gemma2(vocab):
    from transformers import Gemma2Config

    return Gemma2Config(**_common(vocab), head_dim=8, sliding_window=WINDOW,
                        query_pre_attn_scalar=8)


def _gemma3(vocab):
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(**_common(vocab, num_hidden_layers=3), head_dim=8,
                            sliding_window=WINDOW, query_pre_attn_scalar=8,
                            sliding_window_pattern=2)


def _olmo2(vocab):
    from transformers import Olmo2Config

    return Olmo2Config(**_common(vocab))


def _stablelm(vocab):
    from transformers import StableLmConfig

    return StableLmConfig(**_common(vocab))


def _starcoder2(vocab):
    from transformers import Starcoder2Config

    return Starcoder2Config(**_common(vocab), sliding_window=None)


def _starcoder2_window(vocab):
    from transformers import Starcoder2Config

    return Starcoder2Config(**_common(vocab), sliding_window=WINDOW)


def _cohere(vocab):
    from transformers import CohereConfig

    return CohereConfig(**_common(vocab))


def _t5(vocab):
    from transformers import T5Config

    return T5Config(vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                    num_decoder_layers=2, num_heads=4, decoder_start_token_id=1,
                    pad_token_id=1, eos_token_id=1, initializer_factor=1.0)


def _bart(vocab):
    from transformers import BartConfig

    return BartConfig(vocab_size=vocab, d_model=32, encoder_layers=2, decoder_layers=2,
                      encoder_attention_heads=4, decoder_attention_heads=4,
                      encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=256,
                      init_std=0.2, pad_token_id=1, bos_token_id=0, eos_token_id=1,
                      decoder_start_token_id=1, forced_eos_token_id=None)


FAMILIES = {
    "llama": _llama_like("LlamaConfig"),
    "qwen2": _llama_like("Qwen2Config"),
    "qwen2-window": _qwen2_window,
    "qwen3": _llama_like("Qwen3Config"),
    "qwen3-moe": _qwen3_moe,
    "gemma": _gemma,
    "gemma2": _gemma2,
    "gemma3": _gemma3,
    "phi": _phi,
    "phi3": _phi3,
    "phi3-window": _phi3_window,
    "gpt2": _gpt2,
    "gpt-neox": _neox,
    "falcon": _falcon,
    "opt": _opt,
    "bloom": _bloom,
    "olmo2": _olmo2,
    "stablelm": _stablelm,
    "granite": _llama_like("GraniteConfig"),
    "starcoder2": _starcoder2,
    "starcoder2-window": _starcoder2_window,
    "cohere": _cohere,
    "smollm3": _llama_like("SmolLM3Config"),
    "mistral": _mistral,
    "mixtral": _mixtral,
    "t5": _t5,
    "bart": _bart,
}


@functools.lru_cache(maxsize=None)
def family_model(name, vocab, seed=0):
    """A float32 eval-mode model of the family, with random weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    config = FAMILIES[name](vocab)
    torch.manual_seed(seed)
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model = auto.from_config(config)
    return model.float().eval()
