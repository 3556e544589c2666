"""The scoring paths side by side: tree mask, exact fallback and skorch.

    HF_HUB_OFFLINE=1 python benchmarks/bench_paths.py [-n 48] [--repeat 5]

On the embedded SmolLM2-135M (float32, cpu) and real tweets, with skorch's
zero-shot template sent raw:

* the self-check's cost: the probe run the first time a model is scored
  (median of ``--repeat`` fresh runs);
* the exact path (one ordinary forward pass per prompt + label, labels as
  rows), which untested architectures fall back to and ALiBi models use,
  against skorch and against the tree-mask path, for two single-token labels
  and four multi-token labels.  Every path's probabilities must agree with
  skorch's within 1e-4.

Run it alone: skorch's one-sample loop slows more than nbllm's batches when
the machine is busy, which would inflate the ratios.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MULTI_TOKEN = ["very negative", "somewhat negative", "neutral or mixed", "positive"]


def probe_seconds(loaded, repeat):
    from nbllm.engine.scoring.scorer import backend_choice

    times = []
    for _ in range(repeat):
        loaded.state.pop("backend", None)
        start = time.perf_counter()
        choice = backend_choice(loaded)
        times.append(time.perf_counter() - start)
    return statistics.median(times), choice


def main():
    import numpy as np
    from skorch.llm import ZeroShotClassifier as SkorchZeroShot
    from skorch.llm.prompts import DEFAULT_PROMPT_ZERO_SHOT

    from nbllm import ZeroShotClassifier
    from nbllm.engine.loading import models
    from nbllm.engine.scoring.result_cache import result_cache
    from nbllm.tools.tweets import load_tweets
    from nbllm.engine.scoring.scorer import use_path

    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    loaded = models.get_model(device="cpu", dtype="float32")
    wrapped = models.wrap_model(loaded.model, loaded.tokenizer)
    seconds, choice = probe_seconds(wrapped, args.repeat)
    print(f"self-check probe: {seconds * 1000:.0f} ms (median of {args.repeat}); "
          f"path {choice.name!r}, largest difference {choice.probe.difference:.1e}\n")

    texts = load_tweets(args.n, split="eval", random_state=11)["text"].tolist()
    header = (f"{'labels':<24} {'skorch s':>9} {'exact s':>8} {'tree s':>7} "
              f"{'exact/skorch':>13} {'tree/skorch':>12} {'max |dp|':>9}")
    print(header)
    print("-" * len(header))
    for name, labels in (("2 single-token", ["negative", "positive"]),
                         ("4 multi-token", MULTI_TOKEN)):
        theirs = SkorchZeroShot(model=loaded.model, tokenizer=loaded.tokenizer,
                                prompt=DEFAULT_PROMPT_ZERO_SHOT).fit(None, labels)
        start = time.perf_counter()
        p_theirs = theirs.predict_proba(texts)
        t_skorch = time.perf_counter() - start
        timings, diffs = {}, []
        for path in ("exact", "tree-mask"):
            use_path(wrapped, path)
            result_cache.clear()
            ours = ZeroShotClassifier(model=loaded.model, tokenizer=loaded.tokenizer,
                                      prompt=DEFAULT_PROMPT_ZERO_SHOT,
                                      use_chat_template=False, progress=False,
                                      use_caching=False).fit(None, labels)
            start = time.perf_counter()
            p_ours = ours.predict_proba(texts)
            timings[path] = time.perf_counter() - start
            diffs.append(float(np.abs(p_ours - p_theirs).max()))
        print(f"{name:<24} {t_skorch:9.2f} {timings['exact']:8.2f} "
              f"{timings['tree-mask']:7.2f} {t_skorch / timings['exact']:12.1f}x "
              f"{t_skorch / timings['tree-mask']:11.1f}x {max(diffs):9.1e}"
              + ("" if max(diffs) < 1e-4 else "  PARITY FAILED"), flush=True)


if __name__ == "__main__":
    main()
