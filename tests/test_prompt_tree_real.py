"""The prefix tree on both real models: few-shot-like prompts with nested shared
blocks of real tweets, scored exactly (float32) against plain forward passes.

Within 1e-4 in log-probability, as the other real-model tests (float32
rounding across batch shapes reaches ~1.5e-5 on SmolLM2 here).  Prompts: a
head shared by all, one of three example blocks (each shared by several
texts, Gemma's longer than its 512-token sliding window), sometimes a second
example shared by two texts under one block, then the text.
"""

import numpy as np
import pytest

from nbllm.engine.scoring.prompt_tree import plan_spans
from nbllm.engine.scoring.scorer import LabelScorer
from test_gemma import plain_label_logprobs

pytestmark = pytest.mark.slow


def nested_prompts(tokenizer, shots_per_block):
    """Token ids of 9 prompts sharing nested spans, and the head they all share."""
    from nbllm.tools.tweets import load_tweets

    shots = load_tweets(3 * shots_per_block + 1, split="dev", random_state=7)
    texts = load_tweets(9, split="eval", random_state=8)["text"].tolist()
    examples = [f"Text: {t}\nLabel: {y}\n\n" for t, y in zip(shots["text"], shots["label"])]
    head = "Classify each text as negative or positive.\n\n"
    blocks = ["".join(examples[i * shots_per_block:(i + 1) * shots_per_block])
              for i in range(3)]
    extra = examples[-1]
    rendered = [head + blocks[i % 3] + (extra if i in (0, 3) else "") + f"Text: {t}\nLabel:"
                for i, t in enumerate(texts)]
    encode = lambda s: tokenizer(s, add_special_tokens=True)["input_ids"]
    return [encode(r) for r in rendered], encode(head)[:-1]


def check_tree_is_exact(loaded, shots_per_block, atol):
    tokenizer = loaded.tokenizer
    prompts, head = nested_prompts(tokenizer, shots_per_block)
    labels = [tokenizer(w, add_special_tokens=False)["input_ids"]
              for w in (" negative", " positive", " very negative")]
    spans = list(plan_spans(prompts, len(head)).walk())
    assert len(spans) >= 4  # the head, three blocks (and the shared extra example)
    scorer = LabelScorer(loaded)
    assert scorer.choice.name == "tree-mask"
    loaded.state.get("prefix_kv", {}).clear()
    got = scorer.score(prompts, labels, prefix_hint=head)
    for row, prompt in zip(got, prompts):
        expected = plain_label_logprobs(loaded.model, prompt, labels)
        np.testing.assert_allclose(row, expected, atol=atol, rtol=0)
    return prompts, spans


def test_smollm2_scores_nested_shared_blocks_exactly(real_model):
    check_tree_is_exact(real_model, shots_per_block=4, atol=1e-4)


def test_gemma_scores_nested_blocks_past_its_window_exactly(gemma_model):
    prompts, spans = check_tree_is_exact(gemma_model, shots_per_block=16, atol=1e-4)
    window = gemma_model.model.config.sliding_window
    # A block's span ends past the sliding window, so its own pass and the
    # rows below it see a windowed prefix.
    assert max(span.end for span in spans) > window
