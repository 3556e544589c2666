"""One-run correctness and speed check on a CUDA machine.

    HF_HUB_OFFLINE=1 python benchmarks/gpu_check.py [-n 512]

Checks, on the embedded model and real tweets:

1. CUDA float32 probabilities equal CPU float32 ones (atol 1e-3);
2. CUDA bfloat16 (the 'auto' dtype) predictions agree with float32 on >= 95 %
   of the tweets, and its probabilities stay within 0.05;
3. the engine's log-probabilities equal a plain full forward pass on CUDA;
4. throughput (tweets/s) on CPU and CUDA, cold and from the result cache.

Exits non-zero if a check fails.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main():
    import numpy as np
    import torch

    from nbllm import ZeroShotClassifier
    from nbllm.data import load_tweets

    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=512)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this script checks the GPU path")

    texts = load_tweets(args.n, split="eval")["text"].tolist()
    cpu_texts = texts[:64]
    labels = ["negative", "positive", "very negative", "very positive"]
    failures = []

    def make(**kw):
        return ZeroShotClassifier(progress=False, use_caching=False, **kw).fit(None, labels)

    cpu = make(device="cpu", dtype="float32")
    gpu32 = make(device="cuda", dtype="float32")
    gpu_auto = make(device="cuda")
    print(f"auto dtype on cuda: {gpu_auto.loaded_.dtype}")

    p_cpu, t_cpu = timed(cpu.predict_proba, cpu_texts)
    p_gpu32, _ = timed(gpu32.predict_proba, cpu_texts)
    diff = np.abs(p_cpu - p_gpu32).max()
    print(f"[1] cpu vs cuda float32 max |dp| = {diff:.2e}")
    if diff > 1e-3:
        failures.append("cuda float32 differs from cpu")

    p32, t32 = timed(gpu32.predict_proba, texts)
    pbf, tbf = timed(gpu_auto.predict_proba, texts)
    agree = (p32.argmax(1) == pbf.argmax(1)).mean()
    print(f"[2] bf16 vs fp32 agreement {agree:.3f}, max |dp| {np.abs(p32 - pbf).max():.3f}")
    if agree < 0.95 or np.abs(p32 - pbf).max() > 0.05:
        failures.append("bfloat16 drifts from float32")

    raw = ZeroShotClassifier(device="cuda", dtype="float32", probas_sum_to_1=False,
                             use_caching=False, progress=False).fit(None, labels)
    got = np.log(raw.predict_proba(texts[:4]))
    model, tok = raw.model_, raw.tokenizer_
    worst = 0.0
    for row, text in zip(got, texts[:4]):
        ids = tok(raw.get_prompt(text), add_special_tokens=False)["input_ids"]
        for value, label_ids in zip(row, raw.label_ids_):
            full = torch.tensor([ids + label_ids], device="cuda")
            with torch.no_grad():
                lp = model(full).logits[0].float().log_softmax(-1)
            ref = sum(lp[len(ids) - 1 + i, t].item() for i, t in enumerate(label_ids))
            worst = max(worst, abs(ref - value))
    print(f"[3] engine vs full forward on cuda: max |dlogp| = {worst:.2e}")
    if worst > 1e-3:
        failures.append("engine differs from full forward on cuda")

    cached = ZeroShotClassifier(device="cuda", progress=False).fit(None, labels)
    _, t_first = timed(cached.predict_proba, texts)
    _, t_again = timed(cached.predict_proba, texts)
    print(f"[4] cpu fp32 {len(cpu_texts) / t_cpu:.0f} tweets/s | cuda fp32 "
          f"{len(texts) / t32:.0f} | cuda bf16 {len(texts) / tbf:.0f} | "
          f"cached rerun {t_first / max(t_again, 1e-9):.0f}x faster")
    if failures:
        sys.exit("FAILED: " + "; ".join(failures))
    print("all GPU checks passed")


if __name__ == "__main__":
    main()
