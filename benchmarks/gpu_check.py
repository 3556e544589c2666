"""One-run correctness and speed check on a CUDA machine (a few minutes).

    HF_HUB_OFFLINE=1 python benchmarks/gpu_check.py [-n 256]

On the embedded model and real tweets it:

0. runs the self-check on CUDA (float32 and bfloat16: the embedded model must
   keep the tree-mask path; the probe's time and difference are printed) and
   scores tiny random Mistral (sliding window), Gemma 3, BLOOM and T5 models on
   CUDA against the plain path on the CPU;
1. checks nbllm's float32 and bfloat16 log-probabilities on CUDA against a
   float64 CPU oracle (a plain full forward pass) and reports the max error;
2. checks that ``dtype='auto'`` is bfloat16 on the GPU and that bf16
   predictions agree with float32 on >= 95 % of tweets;
3. times nbllm against skorch.llm on the same GPU (nbllm in float32 on the
   same weights object, and nbllm's defaults, bfloat16, against skorch in
   float32);
4. sweeps batch sizes 8 to 256;
5. times few-shot (the default selection and a fixed 'stratified' set, 5 of 50
   labelled tweets) against zero-shot per text, with the positions fed to
   the model against the ideal, and checks the default's float32
   log-probabilities on CUDA against the same classifier on the CPU (the
   prefix tree's shared spans on the GPU), and times one attention layer over
   a shared prefix as the backend does it (per-row copies) against Hydragen's
   split (``benchmarks/bench_prefix_attention.py``: not adopted on the CPU,
   where it was slower);
6. prints one small table, and exits non-zero if a check fails.

Step 0's tiny prompts share nested prefixes (a block shared by some prompts
inside the head shared by all), so the prefix tree runs on CUDA too.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
LABELS = ["negative", "positive", "very negative", "very positive"]


def timed(fn, *args):
    import torch

    torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn(*args)
    torch.cuda.synchronize()
    return out, time.perf_counter() - start


def oracle_logprobs(model64, tokenizer, clf, texts):
    """float64 CPU log P(label | prompt) by one full forward pass per label."""
    import torch

    rows = []
    for text in texts:
        ids = tokenizer(clf.get_prompt(text), add_special_tokens=not clf.use_chat_template_)
        ids = ids["input_ids"]
        row = []
        for label_ids in clf.label_ids_:
            with torch.no_grad():
                lp = model64(torch.tensor([ids + label_ids])).logits[0].log_softmax(-1)
            row.append(sum(lp[len(ids) - 1 + i, t].item() for i, t in enumerate(label_ids)))
        rows.append(row)
    return rows


def check_paths(table, failures):
    """Self-check on the embedded model, and tiny families against the CPU plain path."""
    import copy

    import numpy as np

    from nbllm.engine.loading import models
    from nbllm.engine.scoring.exact import ExactBackend
    from nbllm.engine.scoring.scorer import LabelScorer, backend_choice
    from nbllm.engine.scoring.seq2seq import Seq2SeqBackend

    for dtype in ("float32", "bfloat16"):
        loaded = models.get_model(device="cuda", dtype=dtype)
        start = time.perf_counter()
        choice = backend_choice(loaded)
        seconds = time.perf_counter() - start
        table.append((f"self-check, {dtype}", f"{choice.name}, {seconds * 1000:.0f} ms, "
                      f"max |dlogp| {choice.probe.difference if choice.probe else 0:.1e}"))
        if choice.name != "tree-mask":
            failures.append(f"the embedded model fell back to {choice.name} in {dtype}")
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from families import family_model
    from tiny import get_tiny_tokenizer

    tok = get_tiny_tokenizer()
    shared = [11, 12, 13, 14]
    block = [20 + (j * 13) % 250 for j in range(24)]  # a nested span of its own
    prompts = [shared + [5 + (i * 7 + j) % 300 for j in range(n)]
               for i, n in enumerate((3, 40, 17))]
    prompts += [shared + block + [7 + (i * 5 + j) % 300 for j in range(n)]
                for i, n in enumerate((2, 9, 30))]
    labels = [[40], [40, 41], [44, 45, 46]]
    for name in ("mistral", "gemma3", "bloom", "t5"):
        cpu_model = family_model(name, len(tok))
        plain_cls = Seq2SeqBackend if cpu_model.config.is_encoder_decoder else ExactBackend
        expected = plain_cls(models.wrap_model(cpu_model, tok), pad_free=True).score(
            prompts, labels)
        gpu_model = copy.deepcopy(cpu_model).to("cuda")
        scorer = LabelScorer(models.wrap_model(gpu_model, tok))
        got = scorer.score(prompts, labels, prefix_hint=shared)
        err = float(np.abs(got - expected).max())
        table.append((f"{name} on cuda ({scorer.choice.name})", f"max |dlogp| {err:.1e}"))
        if err > 1e-3:
            failures.append(f"{name} on cuda is off by {err:.1e}")


def check_few_shot(table, failures, texts):
    """Few-shot's cost per text against zero-shot on CUDA, and its exactness."""
    import numpy as np

    from nbllm import FewShotClassifier, ZeroShotClassifier
    from nbllm.engine.scoring.prompt_tree import unique_positions
    from nbllm.engine.scoring.trie import LabelTrie
    from nbllm.tools.tweets import load_tweets

    pool = load_tweets(50, split="dev", random_state=2)
    common = dict(device="cuda", use_caching=False, progress=False)
    runs = {"zero-shot": ZeroShotClassifier(**common).fit(None, ["negative", "positive"]),
            "few-shot default": FewShotClassifier(**common).fit(pool["text"], pool["label"]),
            "few-shot stratified": FewShotClassifier(
                example_selection="stratified", **common).fit(pool["text"], pool["label"])}
    seconds = {}
    for name, clf in runs.items():
        clf.predict_proba(texts[:8])  # warm-up: the self-check, the head's KV
        state = clf.loaded_.state
        fed = state.get("positions_fed", 0)
        _, seconds[name] = timed(clf.predict_proba, texts)
        fed = state.get("positions_fed", 0) - fed
        trie = len(LabelTrie(clf.label_ids_).internal)
        ideal = unique_positions(clf.prompt_token_ids(texts)) + len(texts) * trie
        table.append((f"{name} on cuda", f"{seconds[name] / len(texts) * 1000:.2f} ms/text, "
                      f"{seconds[name] / seconds['zero-shot']:.2f}x zero-shot, positions "
                      f"{fed / ideal:.2f}x the ideal"))
    gpu = FewShotClassifier(device="cuda", dtype="float32", use_caching=False,
                            progress=False).fit(pool["text"], pool["label"])
    cpu = FewShotClassifier(device="cpu", dtype="float32", use_caching=False,
                            progress=False).fit(pool["text"], pool["label"])
    err = float(np.abs(np.log(gpu.predict_proba(texts[:32]))
                       - np.log(cpu.predict_proba(texts[:32]))).max())
    table.append(("few-shot default, cuda vs cpu float32", f"max |dlogp| {err:.1e}"))
    if err > 1e-3:
        failures.append(f"few-shot on cuda is off the CPU by {err:.1e}")
    table.append(("prefix attention, split / concat time", prefix_attention_ratio()))


def prefix_attention_ratio():
    """Hydragen's split against the per-row copies, one layer on CUDA (bfloat16)."""
    import statistics

    import torch

    from bench_prefix_attention import concat, make_inputs, split_gemm

    inputs = make_inputs(64, 50, 300, torch.device("cuda"), torch.bfloat16)
    seconds = {concat: [], split_gemm: []}
    with torch.inference_mode():
        for _ in range(30):
            for way in seconds:
                seconds[way].append(timed(way, *inputs.values())[1])
    ratio = statistics.median(seconds[split_gemm]) / statistics.median(seconds[concat])
    return f"{ratio:.2f}x (median of 30; below 1 means the split pays on this GPU)"


def main():
    import numpy as np
    import torch
    from skorch.llm import ZeroShotClassifier as SkorchZeroShot
    from skorch.llm.prompts import DEFAULT_PROMPT_ZERO_SHOT

    from nbllm import ZeroShotClassifier
    from nbllm.engine.loading import devices, models
    from nbllm.engine.scoring.result_cache import result_cache
    from nbllm.tools.tweets import load_tweets

    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=256)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this script checks the GPU path")
    texts = load_tweets(args.n, split="eval")["text"].tolist()
    table, failures = [], []

    # 0: the self-check and the other model families on CUDA.
    check_paths(table, failures)

    # 1-2: exactness against a float64 oracle.
    cpu = models.get_model(device="cpu", dtype="float32")
    model64 = cpu.model.to(torch.float64)
    probe = texts[:6]
    for dtype, tolerance in (("float32", 1e-3), ("bfloat16", 0.25)):
        clf = ZeroShotClassifier(device="cuda", dtype=dtype, probas_sum_to_1=False,
                                 use_caching=False, progress=False).fit(None, LABELS)
        got = np.log(clf.predict_proba(probe))
        ref = np.array(oracle_logprobs(model64, cpu.tokenizer, clf, probe))
        err = float(np.abs(got - ref).max())
        table.append((f"max |dlogp| vs float64, {dtype}", f"{err:.2e}"))
        if err > tolerance:
            failures.append(f"{dtype} log-probabilities off by {err:.2e}")
    cpu.model.to(torch.float32)

    auto = devices.resolve_dtype("auto", torch.device("cuda"))
    table.append(("dtype='auto' on cuda", str(auto).replace("torch.", "")))
    if torch.cuda.is_bf16_supported() and auto is not torch.bfloat16:
        failures.append(f"dtype='auto' is {auto} on a bf16-capable GPU")
    f32 = ZeroShotClassifier(device="cuda", dtype="float32", use_caching=False,
                             progress=False).fit(None, LABELS)
    bf16 = ZeroShotClassifier(device="cuda", dtype="bfloat16", use_caching=False,
                              progress=False).fit(None, LABELS)
    p32, p16 = f32.predict_proba(texts), bf16.predict_proba(texts)
    agree = float((p32.argmax(1) == p16.argmax(1)).mean())
    table.append(("bf16 vs fp32 prediction agreement", f"{agree:.3f}"))
    if agree < 0.95:
        failures.append("bfloat16 predictions drift from float32")

    # 3: against skorch on the same GPU and weights.
    gpu = models.get_model(device="cuda", dtype="float32")
    subset = texts[:64]
    for name, labels in (("zero-shot 2 labels", ["negative", "positive"]),
                         ("zero-shot 4 labels", LABELS)):
        ours = ZeroShotClassifier(model=gpu.model, tokenizer=gpu.tokenizer,
                                  prompt=DEFAULT_PROMPT_ZERO_SHOT, use_chat_template=False,
                                  use_caching=False, progress=False).fit(None, labels)
        theirs = SkorchZeroShot(model=gpu.model, tokenizer=gpu.tokenizer,
                                prompt=DEFAULT_PROMPT_ZERO_SHOT).fit(None, labels)
        p_theirs, t_theirs = timed(theirs.predict_proba, subset)
        p_ours, t_ours = timed(ours.predict_proba, subset)
        diff = float(np.abs(p_ours - p_theirs).max())
        table.append((f"{name}: skorch / nbllm time", f"{t_theirs / t_ours:.1f}x, "
                      f"max |dp| {diff:.1e}"))
        if diff > 1e-3:
            failures.append(f"{name}: probabilities differ from skorch by {diff:.1e}")
        defaults = ZeroShotClassifier(device="cuda", prompt=DEFAULT_PROMPT_ZERO_SHOT,
                                      use_chat_template=False, use_caching=False,
                                      progress=False).fit(None, labels)
        p_default, t_default = timed(defaults.predict_proba, subset)
        table.append((f"{name}: skorch fp32 / nbllm defaults "
                      f"({str(defaults.loaded_.dtype).replace('torch.', '')})",
                      f"{t_theirs / t_default:.1f}x, max |dp| "
                      f"{float(np.abs(p_default - p_theirs).max()):.1e}"))

    # 4: batch-size sweep (bf16, the cuda default).
    for batch_size in (8, 16, 32, 64, 128, 256, "auto"):
        result_cache.clear()
        clf = ZeroShotClassifier(device="cuda", batch_size=batch_size, use_caching=False,
                                 progress=False).fit(None, LABELS)
        _, seconds = timed(clf.predict_proba, texts)
        table.append((f"batch_size={batch_size}", f"{len(texts) / seconds:.0f} tweets/s"))

    # 5: few-shot against zero-shot, and the default few-shot against the CPU.
    check_few_shot(table, failures, texts[:128])

    width = max(len(k) for k, _ in table)
    print("\n" + "\n".join(f"{k:<{width}}  {v}" for k, v in table))
    if failures:
        sys.exit("FAILED: " + "; ".join(failures))
    print("all GPU checks passed")


if __name__ == "__main__":
    main()
