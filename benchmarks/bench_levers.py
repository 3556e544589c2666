"""CPU levers, each timed against the default on the same tweets.

    HF_HUB_OFFLINE=1 python benchmarks/bench_levers.py [-n 96] [--repeat 3] [--compile]

For the embedded model, nbllm's default prompt, two labels and the result
cache off, it times ``predict_proba`` with:

* the default (dtype 'auto', the CPU token budget, SDPA attention, all cores);
* float32 instead of bfloat16;
* other token budgets per forward pass (256 to 4096);
* one torch thread instead of all;
* eager attention instead of SDPA;
* with ``--compile``, ``torch.compile`` (inductor) on the model's forward, in
  a child process with a time limit (its compile time is printed apart).

Each row is the best of ``--repeat`` runs and its ratio to the default
(below 1: faster).  The machine is noisy: rows within ~5 % are a tie.
"""

import argparse
import os
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

COMPILE_CHILD = """
import sys, time, torch
sys.path.insert(0, {here!r})
from bench_levers import setup, best
clf, texts = setup({n})
model = clf.loaded_.model
t = time.perf_counter()
model.forward = torch.compile(model.forward, dynamic=True)
clf.predict_proba(texts[:8])  # compiles
compile_seconds = time.perf_counter() - t
print("compile", compile_seconds, flush=True)
print("seconds", best(clf, texts, {repeat}), flush=True)
"""


def setup(n, dtype="auto"):
    from nbllm import ZeroShotClassifier
    from nbllm.tools.tweets import load_tweets

    texts = load_tweets(n, split="eval", random_state=11)["text"].tolist()
    clf = ZeroShotClassifier(dtype=dtype, use_caching=False, progress=False).fit(
        None, ["negative", "positive"])
    clf.predict_proba(texts[:4])  # self-check and warm-up
    return clf, texts


def best(clf, texts, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        clf.predict_proba(texts)
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    import torch

    from nbllm import compat
    from nbllm.engine.scoring import tree_mask

    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=96)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--compile-timeout", type=int, default=420)
    args = parser.parse_args()

    rows = []
    clf, texts = setup(args.n)
    dtype = str(clf.loaded_.dtype).replace("torch.", "")
    base = best(clf, texts, args.repeat)
    rows.append((f"default ({dtype}, budget {tree_mask._TOKEN_BUDGET['cpu']}, "
                 f"{torch.get_num_threads()} threads, "
                 f"{compat.attention_implementation(clf.loaded_.model.config)})", base))

    f32, _ = setup(args.n, "float32")
    rows.append(("float32", best(f32, texts, args.repeat)))

    default_budget = tree_mask._TOKEN_BUDGET["cpu"]
    for budget in (256, 512, 2048, 4096):
        tree_mask._TOKEN_BUDGET["cpu"] = budget
        rows.append((f"token budget {budget}", best(clf, texts, args.repeat)))
    tree_mask._TOKEN_BUDGET["cpu"] = default_budget

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows.append(("1 torch thread", best(clf, texts, args.repeat)))
    torch.set_num_threads(threads)

    model = clf.loaded_.model
    attn = compat.attention_implementation(model.config)
    model.set_attn_implementation("eager")
    rows.append(("eager attention", best(clf, texts, args.repeat)))
    model.set_attn_implementation(attn)

    if args.compile:
        here = os.path.dirname(os.path.abspath(__file__))
        code = COMPILE_CHILD.format(here=here, n=args.n, repeat=args.repeat)
        try:
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 timeout=args.compile_timeout).stdout
            values = dict(line.split() for line in out.splitlines()
                          if line.split()[:1] in (["compile"], ["seconds"]))
            rows.append((f"torch.compile (compile {float(values['compile']):.0f} s)",
                         float(values["seconds"])))
        except subprocess.TimeoutExpired:
            rows.append((f"torch.compile: no result within {args.compile_timeout} s", None))
        except (KeyError, ValueError):
            rows.append(("torch.compile failed", None))

    print(f"{args.n} tweets, best of {args.repeat}\n")
    for name, seconds in rows:
        if seconds is None:
            print(f"  {name}")
        else:
            print(f"  {name:<58} {seconds:6.2f} s  {seconds / base:5.2f}x")


if __name__ == "__main__":
    main()
