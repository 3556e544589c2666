"""A tiny, randomly initialised Llama and a from-scratch tokenizer, fully offline.

Shared by the fast unit tests.  Everything is built in memory in well under a
second and cached per process; ``save_tiny`` writes it to disk so that it can
be loaded by path through ``nbllm.engine.loading.models.get_model``.  The fixtures
built on these live in ``conftest.py``.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import functools

import pytest

BOS, EOS = "<|im_start|>", "<|im_end|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SENTENCES = [
    "Classify the text into one of these categories.",
    "Answer with the category only.",
    "The movie was great and I loved every minute of it.",
    "This is the worst product I have ever bought.",
    "The weather today is sunny with a light breeze.",
    "I am not sure how I feel about the new update.",
    "Positive, negative and neutral are the three labels.",
    "The service at the restaurant was slow but friendly.",
    "She went to the market to buy fresh vegetables.",
    "Our team won the match in the final seconds.",
    "The battery dies after two hours, very disappointing.",
    "What a wonderful surprise, thank you so much!",
    "The train was late again this morning.",
    "He reads a book every night before sleeping.",
    "The package arrived damaged and incomplete.",
    "Customer support solved my problem quickly.",
    "Sports, politics, science and business news.",
    "The election results were announced on Tuesday.",
    "Scientists discovered a new species of frog.",
    "The stock market fell sharply after the report.",
    "Text: Category: positive negative neutral spam ham",
    "I love it. I hate it. It is fine.",
    "Please classify this sentence as positive or negative.",
    "A quick brown fox jumps over the lazy dog.",
    "Numbers like 1, 2, 3 and 42 appear in text too.",
    "Brackets {like these} and [those] are characters.",
]


@functools.lru_cache(maxsize=None)
def get_tiny_tokenizer(chat=True):
    """A ByteLevel BPE tokenizer trained on the sentences above (~400 tokens)."""
    from tokenizers import (
        Tokenizer, decoders, models, pre_tokenizers, processors, trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=[BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SENTENCES, trainer=trainer)
    # Like many base models, prepend BOS when special tokens are added, so that
    # add_special_tokens=True and False give different ids.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, 0)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=EOS
    )
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


@functools.lru_cache(maxsize=None)
def get_tiny_model(max_positions=256, seed=0):
    """A 2-layer Llama with random weights, in float32 eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(get_tiny_tokenizer()),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        # Sharper than the default 0.02, so log-probabilities depend clearly
        # on the context and a wrong attention mask cannot go unnoticed.
        initializer_range=0.2,
        bos_token_id=get_tiny_tokenizer().bos_token_id,
        eos_token_id=get_tiny_tokenizer().eos_token_id,
        pad_token_id=get_tiny_tokenizer().pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).float().eval()
    return model


def save_tiny(folder, chat=True, max_positions=256):
    """Write the tiny model and tokenizer as a loadable model folder."""
    get_tiny_model(max_positions).save_pretrained(folder)
    get_tiny_tokenizer(chat).save_pretrained(folder)
    return str(folder)


def oracle_logprob(model, prompt_ids, label_ids):
    """log P(label | prompt) from one plain forward pass over prompt + label."""
    import torch

    ids = list(prompt_ids) + list(label_ids)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    logprobs = torch.log_softmax(logits, dim=-1)
    start = len(prompt_ids)
    return float(
        sum(logprobs[start + i - 1, tok] for i, tok in enumerate(label_ids))
    )


def oracle_matrix(model, prompts, labels):
    """The oracle for every (prompt, label) pair, as a nested list."""
    return [[oracle_logprob(model, p, lab) for lab in labels] for p in prompts]


@functools.lru_cache(maxsize=None)
def get_plain_tokenizer(eos_after=False):
    """The tiny tokenizer without BOS, ending every text with EOS if asked.

    skorch tokenizes labels with special tokens, so comparisons with skorch
    need a tokenizer that adds none before a text (as SmolLM2's does), and
    one that ends texts with EOS for T5-like models.
    """
    import copy

    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    raw = copy.deepcopy(get_tiny_tokenizer(chat=False).backend_tokenizer)
    end = f" {EOS}" if eos_after else ""
    raw.post_processor = processors.TemplateProcessing(
        single="$A" + end, pair="$A $B" + end,
        special_tokens=[(EOS, 1)] if eos_after else [])
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token=BOS, eos_token=EOS,
                                   pad_token=EOS)
