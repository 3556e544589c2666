"""Integration tests on the real embedded model (SmolLM2-135M-Instruct) and real tweets.

skorch.llm is the independent oracle for probabilities: it scores each label
with one ``generate`` call per sample and label, with no batching and no KV
reuse, so agreement with it checks the whole batched engine.
"""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nbllm import DEFAULT_PROMPT_ZERO_SHOT, FewShotClassifier, ZeroShotClassifier
from nbllm.engine.loading import devices, models
from test_golden import assert_equals_a_plain_forward_pass

pytestmark = pytest.mark.slow

SKORCH_DEFAULT_PROMPT = pytest.importorskip("skorch.llm.prompts").DEFAULT_PROMPT_ZERO_SHOT
REAL = dict(model_name="smollm2-135m", device="cpu", dtype="float32", progress=False)
# An instruction prompt (the former default); it does not end with a space, so
# use_chat_template='auto' sends it through the chat template.
CHAT_PROMPT = "Text: {text}\nCategories: {labels}\nWhat is the category of the text?"


def embedded_copies(real_model):
    """The session's converted copies of the embedded model (Gemma's, from
    tests/test_gemma.py, may share the folder)."""
    kind = real_model.model.config.model_type
    return [p for p in (Path(real_model.cache_dir) / "converted").iterdir()
            if (p / "config.json").is_file()
            and json.loads((p / "config.json").read_text())["model_type"] == kind]


def test_gguf_is_converted_once_and_reloads_fast(real_model, monkeypatch):
    monkeypatch.setenv("NBLLM_CACHE_DIR", real_model.cache_dir)
    # One float32 copy (other tests of the session may add the bf16 one).
    converted = [p for p in embedded_copies(real_model) if p.name.startswith("gguf-f32-")]
    assert len(converted) == 1
    assert list(converted[0].glob("*.safetensors"))  # one file or shards
    key = ("smollm2-135m", "cpu", "torch.float32")
    try:
        del models._registry[key]
        started = time.perf_counter()
        again = models.get_model("smollm2-135m", device="cpu", dtype="float32")
        warm_seconds = time.perf_counter() - started
        assert again is not real_model
        assert again.fingerprint == real_model.fingerprint
        print(f"cold GGUF load {real_model.cold_load_seconds:.1f} s, "
              f"from converted cache {warm_seconds:.1f} s")
        assert warm_seconds < real_model.cold_load_seconds
    finally:
        models._registry[key] = real_model


def test_default_alias_and_registry_are_shared(real_model):
    a = ZeroShotClassifier(**REAL).fit(None, ["negative", "positive"])
    b = FewShotClassifier(**REAL).fit(["good", "bad"], ["positive", "negative"])
    assert a.model_ is real_model.model is b.model_
    assert a.device_ == torch.device("cpu")


@pytest.mark.parametrize(
    "labels",
    [
        ["negative", "positive"],
        ["Science and Technology", "World", "Sports", "Business"],
        ["very negative", "very positive", "negative", "positive"],
    ],
    ids=["single-token", "multi-token", "shared-prefix"],
)
def test_probability_parity_with_skorch(real_model, real_tweets, labels):
    from skorch.llm import ZeroShotClassifier as SkorchZeroShot

    texts = real_tweets["text"].tolist()[:50]
    ours = ZeroShotClassifier(
        **REAL, prompt=SKORCH_DEFAULT_PROMPT, use_chat_template=False
    ).fit(None, labels)
    theirs = SkorchZeroShot(
        model=real_model.model, tokenizer=real_model.tokenizer
    ).fit(None, labels)
    if labels[0].startswith("very"):
        # The case is only meaningful if the labels really share token prefixes.
        assert ours.label_ids_[ours.classes_.tolist().index("very negative")][0] == \
            ours.label_ids_[ours.classes_.tolist().index("very positive")][0]
    np.testing.assert_allclose(ours.predict_proba(texts), theirs.predict_proba(texts),
                               atol=1e-4, rtol=0)
    assert ours.predict(texts).tolist() == theirs.predict(texts).tolist()


def test_raw_probabilities_match_skorch_multi_token(real_model, real_tweets):
    from skorch.llm import ZeroShotClassifier as SkorchZeroShot

    labels = ["Science and Technology", "World", "Sports", "Business"]
    texts = real_tweets["text"].tolist()[:8]
    ours = ZeroShotClassifier(**REAL, prompt=SKORCH_DEFAULT_PROMPT,
                              use_chat_template=False, probas_sum_to_1=False)
    theirs = SkorchZeroShot(model=real_model.model, tokenizer=real_model.tokenizer,
                            probas_sum_to_1=False)
    p_ours = ours.fit(None, labels).predict_proba(texts)
    p_theirs = theirs.fit(None, labels).predict_proba(texts)
    np.testing.assert_allclose(np.log(p_ours), np.log(p_theirs), atol=1e-3)
    assert (p_ours.sum(1) < 1).all()


def test_default_prompt_is_sent_raw_with_spaced_labels(real_model):
    # The default ends with "Label: ": a completion prompt, sent without the
    # chat template; its final space is scored as part of each label.
    tok = real_model.tokenizer
    assert tok.chat_template
    clf = ZeroShotClassifier(**REAL).fit(None, ["negative", "positive"])
    assert clf.use_chat_template_ is False
    prompt = clf.get_prompt("I love it")
    assert prompt + " " == DEFAULT_PROMPT_ZERO_SHOT.format(
        labels="['negative', 'positive']", text="I love it")
    assert prompt == "Labels: ['negative', 'positive']\n\nText: I love it\nLabel:"
    p_ids = tok(prompt)["input_ids"]
    for label, ids in zip(["negative", "positive"], clf.label_ids_):
        assert tok(prompt + " " + label)["input_ids"] == p_ids + ids
        assert ids != tok(label, add_special_tokens=False)["input_ids"]


def test_chat_template_wraps_an_instruction_prompt(real_model):
    clf = ZeroShotClassifier(**REAL, prompt=CHAT_PROMPT, use_chat_template=True).fit(
        None, ["negative", "positive"])
    prompt = clf.get_prompt("I love it")
    assert clf.use_chat_template_ is True
    mode = clf.prompt_mode()
    assert (mode.mode, mode.reason) == ("chat", "sent as a chat message (use_chat_template=True)")
    assert prompt.startswith("<|im_start|>system\n")
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "Text: I love it" in prompt


def test_default_zero_shot_ranks_real_tweets_better_than_chance(real_model, real_tweets):
    from sklearn.metrics import roc_auc_score

    clf = ZeroShotClassifier(**REAL).fit(None, ["negative", "positive"])
    probas = clf.predict_proba(real_tweets["text"])
    np.testing.assert_allclose(probas.sum(1), 1.0, atol=1e-9)
    positive = real_tweets["label"].to_numpy() == "positive"
    assert roc_auc_score(positive, probas[:, 1]) >= 0.6
    hits = clf.n_cache_hits_
    assert np.array_equal(clf.predict_proba(real_tweets["text"]), probas)
    assert clf.n_cache_hits_ == hits + len(real_tweets)


def test_few_shot_on_real_tweets(real_model, real_tweets):
    from nbllm.tools.tweets import load_tweets

    train = load_tweets(30, split="dev", random_state=5)
    clf = FewShotClassifier(**REAL, max_samples=4, random_state=0)
    clf.fit(train["text"], train["label"])
    # The default 'grouped' selection: each text gets its neighbourhood's
    # block of 3 (both labels) and its own nearest example.
    shown = clf.examples_for(["what a day"])[0]
    assert len(shown) == 4
    assert sorted({label for _, label in shown}) == ["negative", "positive"]
    prompt = clf.get_prompt("what a day")
    assert all(text in prompt for text, _ in shown)
    texts = real_tweets["text"].tolist()[:10]
    probas = clf.predict_proba(texts)
    np.testing.assert_allclose(probas.sum(1), 1.0, atol=1e-9)
    assert_equals_a_plain_forward_pass(clf.set_params(probas_sum_to_1=False), real_model,
                                       texts[:2])


def test_generate_returns_free_text(real_model):
    clf = ZeroShotClassifier(**REAL).fit(None, ["negative", "positive"])
    out = clf.generate("I absolutely love this airline!", max_new_tokens=8)
    assert isinstance(out, str) and out.strip()


def test_real_model_passes_the_self_check_and_every_path_agrees(real_model, real_tweets):
    """The embedded model keeps the fast path; the exact fallback gives the same
    probabilities on real tweets (it is what untested architectures get)."""
    from nbllm.engine.scoring.scorer import backend_choice, use_path

    choice = backend_choice(real_model)
    assert choice.name == "tree-mask" and choice.probe.passed
    assert choice.probe.difference < 1e-4
    assert "scoring='tree-mask'" in repr(real_model)
    texts = real_tweets["text"].tolist()[:12]
    labels = ["negative", "positive", "very positive"]
    fast = ZeroShotClassifier(**REAL, use_caching=False).fit(None, labels)
    expected = fast.predict_proba(texts)
    try:
        use_path(real_model, "exact")
        exact = ZeroShotClassifier(**REAL, use_caching=False).fit(None, labels)
        np.testing.assert_allclose(exact.predict_proba(texts), expected, atol=1e-4)
    finally:
        real_model.state["backend"] = choice


@pytest.mark.parametrize("seed", [0, 5])
@pytest.mark.parametrize("max_samples", [1, 4])
def test_few_shot_parity_with_skorch(real_model, real_tweets, seed, max_samples):
    """skorch's few-shot prompt, character for character, and its probabilities,
    with max_samples below and above the number of labels."""
    import nbllm
    from skorch.llm import FewShotClassifier as SkorchFewShot
    from skorch.llm.prompts import DEFAULT_PROMPT_FEW_SHOT

    train = real_tweets.iloc[:30]
    X, y = train["text"].tolist(), train["label"].tolist()
    texts = real_tweets["text"].tolist()[30:40]
    theirs = SkorchFewShot(model=real_model.model, tokenizer=real_model.tokenizer,
                           max_samples=max_samples, random_state=seed).fit(X, y)
    ours = FewShotClassifier(**REAL, prompt=DEFAULT_PROMPT_FEW_SHOT,
                             example_template=nbllm.SKORCH_EXAMPLE_TEMPLATE,
                             example_selection="stratified", use_chat_template=False,
                             max_samples=max_samples, random_state=seed).fit(X, y)
    assert ours.get_examples(X, y, max_samples) == theirs.get_examples(X, y, max_samples)
    assert all(ours.get_prompt(t) == theirs.get_prompt(t) for t in texts)
    np.testing.assert_allclose(ours.predict_proba(texts), theirs.predict_proba(texts),
                               atol=1e-4, rtol=0)


def test_bfloat16_default_stays_close_to_float32_on_real_tweets(real_model, real_tweets,
                                                               monkeypatch):
    """What dtype='auto' gives on a CPU with native bf16: the same predictions
    as float32 for nearly every tweet, probabilities within a few hundredths,
    the fast path kept, and a bf16 copy cast from the float32 one."""
    from nbllm.engine.scoring.scorer import backend_choice

    monkeypatch.setenv("NBLLM_CACHE_DIR", real_model.cache_dir)
    monkeypatch.setattr(devices, "_NATIVE_BF16", True)
    texts = real_tweets["text"].tolist()
    labels = ["negative", "positive"]
    bf16 = ZeroShotClassifier(progress=False, use_caching=False).fit(None, labels)
    assert bf16.loaded_.dtype is torch.bfloat16
    assert backend_choice(bf16.loaded_).name == "tree-mask"
    f32 = ZeroShotClassifier(**REAL, use_caching=False).fit(None, labels)
    p16, p32 = bf16.predict_proba(texts), f32.predict_proba(texts)
    assert float((p16.argmax(1) == p32.argmax(1)).mean()) >= 0.9
    assert float(np.abs(p16 - p32).max()) < 0.1
    folders = sorted(p.name.split("-")[-2] for p in embedded_copies(real_model))
    assert folders == ["bf16", "f32"]


def test_explain_on_real_tweets_is_exact_and_deletes_what_matters(real_model, real_tweets):
    """explain with the embedded model: each contribution is the score change of its
    word's removal, and removing the top 3 words lowers the predicted label's
    probability at least as much as removing 3 random words, on average."""
    from nbllm.estimators.explain import without

    clf = ZeroShotClassifier(**REAL, use_caching=False).fit(None, ["negative", "positive"])
    texts = [t for t in real_tweets["text"].tolist() if len(t.split()) >= 6][:6]
    ex = clf.explain(texts)
    rng = np.random.default_rng(0)
    top_drops, random_drops = [], []
    for row in ex.rows:
        n = len(row.spans)
        c = clf.classes_.tolist().index(row.predicted)
        occluded = [without(row.text, row.spans, np.arange(n) != k) for k in range(n)]
        keep_top = np.ones(n, dtype=bool)
        keep_top[np.argsort(-row.contributions)[:3]] = False
        keep_random = np.ones(n, dtype=bool)
        keep_random[rng.choice(n, 3, replace=False)] = False
        probas = clf.predict_proba([row.text, *occluded,
                                    without(row.text, row.spans, keep_top),
                                    without(row.text, row.spans, keep_random)])
        log_odds = np.log(probas[:, c]) - np.log(1 - probas[:, c])
        np.testing.assert_allclose(row.contributions, log_odds[0] - log_odds[1:n + 1],
                                   atol=1e-4)
        top_drops.append(probas[0, c] - probas[-2, c])
        random_drops.append(probas[0, c] - probas[-1, c])
    assert np.mean(top_drops) >= np.mean(random_drops)
