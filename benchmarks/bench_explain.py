"""explain: faithfulness (deletion test) and cost, on held-out tweets.

Run::

    NBLLM_CACHE_DIR=... HF_HUB_OFFLINE=1 python benchmarks/bench_explain.py
        [--n 60] [--cost-n 1 100] [--dtype bfloat16] [--shapley-samples 5]
        [--skip-cost] [--skip-faithfulness]

Two-class tweets (negative / positive), ``load_tweets(n, split="eval",
random_state=11)``: a seed no prompt or setting was chosen on.  The
classifier is ZeroShotClassifier's default (the embedded model, its default
prompt) with ``use_caching=False``, so every call scores unseen prompts.

**Deletion test.** For each tweet with at least 6 words, the predicted
label's probability drop when its top-k words (by contribution to the
predicted label's log-odds, largest first) are removed, against removing k
words drawn at random (the mean of 5 draws), for k = 3 and 5, with the same
removal rule (``nbllm.estimators.explain.without``).  Reported: the mean
drops, the share of tweets where top-k drops at least as much as random, and
AOPC (the mean drop over k = 1..5, Samek et al.) for occlusion and Shapley
sampling, and for random removal.

**Cost.** Seconds per tweet (wall clock, and the process's CPU seconds) to
explain 1 and 100 tweets by occlusion: with explain's prefix sharing
(``explain.MIN_SAVING``: a shared run becomes a span when it spares that many
positions), with it off beyond the template's head (the threshold out of
reach, so no span is shared below the root), and with the engine's default
threshold (``prompt_tree.MIN_SAVING``); Shapley sampling beside them.  The model loads and is
warmed up before the clock.  The CPU, the dtype, the thread count and the
load average are printed; the machine is shared: read the ratios.
"""

import argparse
import os
import platform
import sys
import time
from unittest import mock

import numpy as np


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def classifier(dtype):
    from nbllm import ZeroShotClassifier

    return ZeroShotClassifier(use_caching=False, progress=False, dtype=dtype,
                              device="cpu").fit(None, ["negative", "positive"])


def deletion(clf, texts, method, n_samples, rng, ks=(1, 2, 3, 4, 5), draws=5):
    """Per text: probability drops for top-k and random-k removals."""
    from nbllm.estimators.explain import without

    ex = clf.explain(texts, method=method, n_samples=n_samples)
    jobs, meta = [], []
    for r, row in enumerate(ex.rows):
        n = len(row.spans)
        order = np.argsort(-row.contributions, kind="stable")
        jobs.append(row.text)
        meta.append((r, "full", 0))
        for k in ks:
            keep = np.ones(n, dtype=bool)
            keep[order[:k]] = False
            jobs.append(without(row.text, row.spans, keep))
            meta.append((r, "top", k))
            for _ in range(draws):
                keep = np.ones(n, dtype=bool)
                keep[rng.choice(n, k, replace=False)] = False
                jobs.append(without(row.text, row.spans, keep))
                meta.append((r, "random", k))
    probas = clf.predict_proba(jobs)
    index = {str(c): j for j, c in enumerate(clf.classes_)}
    full, drops = {}, {}
    for (r, kind, k), p in zip(meta, probas):
        c = index[ex.rows[r].predicted]
        if kind == "full":
            full[r] = p[c]
        else:
            drops.setdefault((kind, k), {}).setdefault(r, []).append(full[r] - p[c])
    out = {key: np.array([np.mean(v[r]) for r in sorted(v)]) for key, v in drops.items()}
    return out


def report_deletion(name, drops, ks=(3, 5)):
    lines = []
    for k in ks:
        top, rand = drops[("top", k)], drops[("random", k)]
        lines.append(f"| {name} | {k} | {top.mean():.3f} | {rand.mean():.3f} | "
                     f"{np.mean(top >= rand):.0%} |")
    aopc_top = np.mean([drops[("top", k)].mean() for k in range(1, 6)])
    aopc_rand = np.mean([drops[("random", k)].mean() for k in range(1, 6)])
    return lines, aopc_top, aopc_rand


def timed(fn):
    """Wall and process CPU seconds of ``fn()`` (CPU: all threads; on a shared
    machine it moves far less than the wall clock)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cost-n", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--shapley-samples", type=int, default=5)
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--skip-faithfulness", action="store_true")
    args = parser.parse_args()

    import torch

    from nbllm.engine.scoring import prompt_tree
    from nbllm.estimators import explain as explaining
    from nbllm.tools.tweets import load_tweets

    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"CPU: {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} "
          f"thread(s); dtype {args.dtype}; load average at start {os.getloadavg()}")
    clf = classifier(args.dtype)
    warm = load_tweets(4, split="dev", random_state=5)["text"].tolist()
    clf.explain(warm)  # model load, self-check, first passes: outside the clock
    tweets = load_tweets(max(args.n, max(args.cost_n)) + 60, split="eval",
                         random_state=11)["text"].tolist()

    if not args.skip_faithfulness:
        texts = [t for t in tweets if len(t.split()) >= 6][:args.n]
        rng = np.random.default_rng(0)
        rows = ["| method | k | mean drop, top-k | mean drop, random k | top-k >= random |",
                "|---|---|---|---|---|"]
        aopc = []
        for method, n_samples in (("occlusion", 1), ("shapley", args.shapley_samples)):
            drops = deletion(clf, texts, method, n_samples, rng)
            lines, top, rand = report_deletion(
                method if method == "occlusion" else f"shapley ({n_samples} orders)", drops)
            rows += lines
            aopc.append((method, top, rand))
            print("\n".join(lines), flush=True)
        print(f"\nDeletion test, {len(texts)} held-out tweets (>= 6 words):\n")
        print("\n".join(rows))
        print("\n| method | AOPC (k = 1..5), top-k | AOPC, random |\n|---|---|---|")
        for method, top, rand in aopc:
            print(f"| {method} | {top:.3f} | {rand:.3f} |")

    if not args.skip_cost:
        print("\n| explaining | tweets | wall s per tweet | CPU s per tweet |\n"
              "|---|---|---|---|")
        for n in args.cost_n:
            texts = tweets[-n:]
            shared = timed(lambda: clf.explain(texts))
            with mock.patch.object(explaining, "MIN_SAVING", 10**9):
                alone = timed(lambda: clf.explain(texts))
            with mock.patch.object(explaining, "MIN_SAVING", None):
                fine = timed(lambda: clf.explain(texts))
            shapley = timed(lambda: clf.explain(texts, method="shapley",
                                                n_samples=args.shapley_samples))
            for name, (wall, cpu) in (
                    (f"occlusion, explain's sharing (spans sparing >= "
                     f"{explaining.MIN_SAVING} positions)", shared),
                    ("occlusion, no sharing below the template", alone),
                    (f"occlusion, the engine's default sharing (>= "
                     f"{prompt_tree.MIN_SAVING})", fine),
                    (f"shapley ({args.shapley_samples} orders)", shapley)):
                print(f"| {name} | {n} | {wall / n:.3f} | {cpu / n:.3f} |")
            sys.stdout.flush()
    print(f"\nload average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
