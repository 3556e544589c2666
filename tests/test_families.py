"""Exact scores on every model family, the self-check, and model= validation.

Every family is a tiny random model built from its transformers config
(tests/families.py), scored by the engine and by an independent plain
forward pass per (prompt + label).  Sliding-window families have a window of
8 tokens, so most prompts here are longer than the window, and one shared
prefix is longer than it too.  skorch, which scores each label with
``generate`` and the model's own caches, is a second oracle through the
estimators.
"""

import copy
import re
import warnings

import numpy as np
import pytest
import torch

from families import FAMILIES, WINDOW, family_model
from nbllm import ZeroShotClassifier
from nbllm.engine.loading import models
from nbllm.engine.scoring import scorer as engine_scorer
from nbllm.engine.scoring.scorer import LabelScorer
from tiny import SENTENCES, get_tiny_model, get_tiny_tokenizer, oracle_logprob

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VOCAB = len(get_tiny_tokenizer())
ENCODER_DECODER = {"t5", "bart"}
# Families whose attention a tree mask cannot reproduce (ALiBi).
EXACT_PATH = {"bloom"}
# Labels of one to three tokens; the first two share their first token.
LABELS = [[40], [40, 41], [40, 42, 43], [44, 45]]


def seq2seq_oracle(model, prompt, label):
    """log P(label | prompt) for an encoder-decoder model, one plain pass."""
    start = model.config.decoder_start_token_id
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt]),
                       decoder_input_ids=torch.tensor([[start, *label[:-1]]])).logits[0]
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    return float(sum(logprobs[i, t] for i, t in enumerate(label)))


def oracle(name, model, prompts, labels):
    score = seq2seq_oracle if name in ENCODER_DECODER else oracle_logprob
    return np.array([[score(model, p, lab) for lab in labels] for p in prompts])


def token_prompts(seed, prefix_len, tails):
    g = torch.Generator().manual_seed(seed)
    prefix = torch.randint(2, VOCAB, (prefix_len,), generator=g).tolist()
    return prefix, [prefix + torch.randint(2, VOCAB, (n,), generator=g).tolist()
                    for n in tails]


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_is_exact(name):
    model = family_model(name, VOCAB)
    loaded = models.wrap_model(model, get_tiny_tokenizer())
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback warning
        scorer = LabelScorer(loaded)
    expected_path = ("encoder-decoder" if name in ENCODER_DECODER
                     else "exact" if name in EXACT_PATH else "tree-mask")
    assert scorer.choice.name == expected_path
    # A short shared prefix with tails below and far beyond the window, then
    # a shared prefix that is itself longer than the window.
    for prefix, prompts in (token_prompts(1, 5, [2, 3 * WINDOW, WINDOW + 1, 7]),
                            token_prompts(2, 3 * WINDOW, [1, 4, WINDOW + 3])):
        got = scorer.score(prompts, LABELS, batch_size=2, prefix_hint=prefix)
        np.testing.assert_allclose(got, oracle(name, model, prompts, LABELS),
                                   atol=1e-4, rtol=0)


def test_sliding_window_matters_in_these_tests():
    """Without its window, Mistral's scores differ: the window tests test something."""
    model = family_model("mistral", VOCAB)
    prefix, prompts = token_prompts(3, 4, [3 * WINDOW])
    windowed = oracle("mistral", model, prompts, LABELS)
    unwindowed = copy.deepcopy(model)
    unwindowed.config.sliding_window = None
    assert np.abs(windowed - oracle("mistral", unwindowed, prompts, LABELS)).max() > 0.05


# ------------------------------------------------------------ estimators


def skorch_tokenizer(eos_after):
    """The tiny tokenizer without its BOS (skorch tokenizes labels with special
    tokens), ending every text with EOS for the T5-like case."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    raw = copy.deepcopy(get_tiny_tokenizer(chat=False).backend_tokenizer)
    end = " <|im_end|>" if eos_after else ""
    raw.post_processor = processors.TemplateProcessing(
        single="$A" + end, pair="$A $B" + end,
        special_tokens=[("<|im_end|>", 1)] if eos_after else [])
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|im_start|>",
                                   eos_token="<|im_end|>", pad_token="<|im_end|>")


@pytest.mark.parametrize("name", ["t5", "bart", "bloom", "mistral", "gemma3"])
def test_estimator_matches_skorch(name):
    from skorch.llm import ZeroShotClassifier as SkorchZeroShot
    from skorch.llm.prompts import DEFAULT_PROMPT_ZERO_SHOT

    model = family_model(name, VOCAB)
    tok = skorch_tokenizer(eos_after=name in ENCODER_DECODER)
    labels = ["positive", "negative", "neutral", "neutral spam"]
    texts = SENTENCES[2:7]
    ours = ZeroShotClassifier(model=model, tokenizer=tok, prompt=DEFAULT_PROMPT_ZERO_SHOT,
                              use_chat_template=False, probas_sum_to_1=False)
    theirs = SkorchZeroShot(model=model, tokenizer=tok, prompt=DEFAULT_PROMPT_ZERO_SHOT,
                            probas_sum_to_1=False,
                            use_caching=name not in ENCODER_DECODER)
    p_ours = ours.fit(None, labels).predict_proba(texts)
    p_theirs = theirs.fit(None, labels).predict_proba(texts)
    # The prompts are far longer than the window of the sliding families.
    assert len(tok(ours.get_prompt(texts[0]))["input_ids"]) > 10 * WINDOW
    np.testing.assert_allclose(np.log(p_ours), np.log(p_theirs), atol=1e-4, rtol=0)


def test_encoder_decoder_labels_end_with_eos_and_results_are_cached():
    model = family_model("t5", VOCAB)
    tok = get_tiny_tokenizer()
    clf = ZeroShotClassifier(model=model, tokenizer=tok).fit(None, ["positive", "negative"])
    assert all(ids[-1] == tok.eos_token_id for ids in clf.label_ids_)
    first = clf.predict_proba(SENTENCES[:4])
    assert clf.n_cache_misses_ == 4 and clf.n_cache_hits_ == 0
    np.testing.assert_array_equal(clf.predict_proba(SENTENCES[:4]), first)
    assert clf.n_cache_hits_ == 4
    assert isinstance(clf.generate(SENTENCES[0], max_new_tokens=3), str)


# ------------------------------------------------------------ self-check


class IgnoresTreeMask(type(get_tiny_model())):
    """A model that drops 4D attention masks, as an unknown architecture might."""

    def forward(self, *args, attention_mask=None, **kwargs):
        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = None
        return super().forward(*args, attention_mask=attention_mask, **kwargs)


class RefusesPadding(type(get_tiny_model())):
    """A model that fails on any custom or padded mask: only the plain path works."""

    def forward(self, *args, attention_mask=None, **kwargs):
        if isinstance(attention_mask, dict) or (
            attention_mask is not None
            and (attention_mask.dim() == 4 or not bool(attention_mask.all()))
        ):
            raise RuntimeError("this model cannot take that mask")
        return super().forward(*args, attention_mask=attention_mask, **kwargs)


class IgnoresCache(type(get_tiny_model())):
    """A model that drops any KV cache it is given (and the mask that spans it)."""

    def forward(self, *args, attention_mask=None, **kwargs):
        if kwargs.pop("cache", None) is not None and attention_mask is not None:
            attention_mask = attention_mask[:, -kwargs["input_ids"].shape[1]:]
        return super().forward(*args, attention_mask=attention_mask, **kwargs)


def wrapped(cls):
    base = get_tiny_model()
    model = cls(base.config).eval()
    model.load_state_dict(base.state_dict())
    return model


def test_a_broken_fast_path_warns_once_and_falls_back_to_exact():
    model = wrapped(IgnoresTreeMask)
    loaded = models.wrap_model(model, get_tiny_tokenizer())
    message = (re.escape("nbllm's tree-mask scoring path is not exact for IgnoresTreeMask: "
                         "its log-probabilities differ from a plain forward pass by up to ")
               + "[0-9.e+-]+"
               + re.escape(" (judged in float32, tolerance 0.002).  nbllm scores this model "
                           "with the slower exact path from now on: the probabilities "
                           "stay exact, only scoring takes longer."))
    with pytest.warns(RuntimeWarning, match=f"^{message}$"):
        scorer = LabelScorer(loaded)
    assert scorer.choice.name == "exact" and loaded.scoring_path == "exact"
    assert "scoring='exact'" in repr(loaded)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per model, not per scorer
        again = LabelScorer(loaded)
    prefix, prompts = token_prompts(4, 6, [1, 9, 20])
    got = again.score(prompts, LABELS, prefix_hint=prefix)
    np.testing.assert_allclose(got, oracle("llama", model, prompts, LABELS), atol=1e-4)


def test_a_model_that_only_takes_plain_input_gets_the_unpadded_path():
    model = wrapped(RefusesPadding)
    loaded = models.wrap_model(model, get_tiny_tokenizer())
    with pytest.warns(RuntimeWarning) as record:
        scorer = LabelScorer(loaded)
    messages = [str(w.message) for w in record if "nbllm" in str(w.message)]
    assert messages == [
        f"nbllm's {path} scoring path is not exact for RefusesPadding: it failed in "
        "float32 (RuntimeError: this model cannot take that mask).  nbllm scores this "
        f"model with the slower {slower} path from now on: the probabilities stay "
        "exact, only scoring takes longer."
        for path, slower in [("tree-mask", "exact"), ("exact", "exact (no prefix cache)"),
                             ("exact (no prefix cache)", "exact (unpadded)")]
    ]
    assert scorer.choice.name == "exact (unpadded)"
    prefix, prompts = token_prompts(5, 3, [2, 11, 5])
    got = scorer.score(prompts, LABELS, batch_size=3)
    np.testing.assert_allclose(got, oracle("llama", model, prompts, LABELS), atol=1e-4)


def test_a_model_that_ignores_caches_is_scored_without_one():
    model = wrapped(IgnoresCache)
    loaded = models.wrap_model(model, get_tiny_tokenizer())
    with pytest.warns(RuntimeWarning):
        scorer = LabelScorer(loaded)
    assert scorer.choice.name == "exact (no prefix cache)"
    prefix, prompts = token_prompts(6, 8, [2, 13, 4])
    got = scorer.score(prompts, LABELS, prefix_hint=prefix)
    np.testing.assert_allclose(got, oracle("llama", model, prompts, LABELS), atol=1e-4)


def test_the_probe_is_recorded_and_cheap():
    loaded = models.wrap_model(family_model("gemma3", VOCAB), get_tiny_tokenizer())
    choice = engine_scorer.backend_choice(loaded)
    assert choice.probe.passed and choice.probe.difference < 1e-4
    assert choice.probe.seconds < 5
    # The probe keeps its prefix caches to itself.
    assert loaded.state.get("prefix_kv", {}) == {}


def test_probe_has_prompts_longer_than_the_window():
    from nbllm.engine.scoring.selfcheck import probe_inputs

    loaded = models.wrap_model(family_model("mistral", VOCAB), get_tiny_tokenizer())
    groups, labels = probe_inputs(loaded, window=WINDOW)
    assert max(len(p) for prompts, _ in groups for p in prompts) > WINDOW
    assert any(len(shared or ()) > WINDOW for _, shared in groups)
    assert labels[0][0] == labels[1][0] and len(labels[0]) != len(labels[1])


# ---------------------------------------------------------- model= checks

WANTED = ("model must be a causal language model (as AutoModelForCausalLM loads) "
          "or an encoder-decoder one (AutoModelForSeq2SeqLM)")


def fit_with(model, tokenizer=None):
    tokenizer = get_tiny_tokenizer() if tokenizer is None else tokenizer
    return ZeroShotClassifier(model=model, tokenizer=tokenizer).fit(None, ["a", "b"])


def test_model_without_lm_head_is_refused():
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=32))
    msg = f"{WANTED}; BertModel has no language-modelling head"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        fit_with(bert)


def test_masked_lm_is_refused():
    from transformers import BertConfig, BertForMaskedLM

    bert = BertForMaskedLM(BertConfig(vocab_size=VOCAB, hidden_size=16,
                                      num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=32)).eval()
    msg = (f"{WANTED}; BertForMaskedLM's prediction at a position depends on later "
           "tokens, as in encoders such as BERT")
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        fit_with(bert)


def test_not_a_model_is_refused():
    # A name given as model= is refused by the option's own rule (issue 36),
    # which says where a name goes.
    msg = "model must be a loaded model object or None; give a name as model_name; got str"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        fit_with("gpt2")


def test_tokenizer_larger_than_the_vocabulary_is_refused():
    from transformers import LlamaConfig, LlamaForCausalLM

    small = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=16,
                                         intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2)).eval()
    msg = (f"The tokenizer has {VOCAB} tokens but LlamaForCausalLM's vocabulary has "
           "only 100: they do not belong together; pass the tokenizer saved with the "
           "model")
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        fit_with(small)


def test_padded_vocabulary_is_fine():
    from transformers import LlamaConfig, LlamaForCausalLM

    padded = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB + 24, hidden_size=16,
                                          intermediate_size=32, num_hidden_layers=1,
                                          num_attention_heads=2)).eval()
    assert fit_with(padded).predict_proba(["I love it"]).shape == (1, 2)


def test_tokenizer_must_be_a_tokenizer():
    msg = "tokenizer must be a transformers tokenizer; got a dict"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        fit_with(get_tiny_model(), tokenizer={})


# ------------------------------------------------------- every path, forced


@pytest.mark.parametrize("family,path", [
    ("llama", "tree-mask"), ("llama", "exact"), ("llama", "exact (no prefix cache)"),
    ("llama", "exact (unpadded)"), ("mistral", "exact"), ("gemma3", "exact"),
    ("bloom", "exact (unpadded)"), ("t5", "encoder-decoder"),
    ("t5", "encoder-decoder (unpadded)"),
])
@pytest.mark.parametrize("batch_size", [1, 3, "auto"])
def test_every_path_is_exact_and_reports_every_row(family, path, batch_size):
    from nbllm.engine.scoring.scorer import use_path

    model = copy.deepcopy(family_model(family, VOCAB))  # its own registry entry
    loaded = models.wrap_model(model, get_tiny_tokenizer())
    use_path(loaded, path)
    scorer = LabelScorer(loaded)
    assert scorer.choice.name == path
    prefix, prompts = token_prompts(7, 6, [1, 3 * WINDOW, 5, 2, WINDOW])
    seen = []
    got = scorer.score(prompts, LABELS, batch_size=batch_size, prefix_hint=prefix,
                       on_batch=lambda rows, values: seen.extend(rows))
    assert sorted(seen) == list(range(len(prompts)))
    np.testing.assert_allclose(got, oracle(family, model, prompts, LABELS), atol=1e-4)


def test_use_path_names_the_choices():
    from nbllm.engine.scoring.scorer import use_path

    loaded = models.wrap_model(family_model("t5", VOCAB), get_tiny_tokenizer())
    msg = ("path must be one of encoder-decoder, encoder-decoder (unpadded); "
           "got 'tree-mask'")
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        use_path(loaded, "tree-mask")


def test_exact_path_shares_rows_between_labels_with_one_stem():
    """Single-token labels need one row per prompt: the plain path is not
    slower than it must be."""
    from nbllm.engine.scoring.exact import ExactBackend, LabelRows

    rows = LabelRows([[5], [6], [7, 8], [7, 9], [10, 11, 12]], "cpu")
    assert rows.stems == [[], [7], [10, 11]]
    loaded = models.wrap_model(get_tiny_model(), get_tiny_tokenizer())
    backend = ExactBackend(loaded, use_prefix=False)
    backend.score([[3, 4, 5], [3, 4, 6, 7]], [[5], [6], [9]], batch_size="auto")
    assert backend.forward_passes == 1
