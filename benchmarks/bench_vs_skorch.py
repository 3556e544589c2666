"""nbllm against skorch.llm, side by side in one process, on the same model and tweets.

    HF_HUB_OFFLINE=1 python benchmarks/bench_vs_skorch.py [-n 128] [--scale 100,1000]
        [--model gemma3-270m]

Both use the embedded SmolLM2-135M (or ``--model``) on cpu, the same real
tweets and the same prompt text (skorch's templates, sent raw).  skorch runs
the float32 model; nbllm runs its default dtype (``--dtype auto``: bfloat16 on
a CPU with native bf16) from the same GGUF weights, and with
``--also-float32`` also the float32 weights object skorch uses.  For each
case it prints skorch's and nbllm's time, the speed ratio, and the largest
probability difference (which must stay under 1e-4 in float32; in bfloat16 it
is the rounding's drift, with the share of equal predictions).  It also
measures the rerun from the result cache, a "floor" (a bare batched forward
pass over only the tokens that must be computed), the model load cold and
from the converted copy, and the cost and peak memory of ``df.llm.classify``
as the row count grows.  This machine is noisy: read the ratios, not the
seconds.  Leave NBLLM_CACHE_DIR unset: it would also turn on the disk result
cache, which serves repeated runs.

skorch tokenizes its labels with the tokenizer's special tokens; on a
tokenizer that adds a BOS token to every text (Gemma's), each label would
start with BOS and skorch would score ``BOS label`` after the prompt.  Its
label ids are set to the labels' own tokens after ``fit``
(:func:`skorch_label_ids`), so both libraries score the same question.
"""

import argparse
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MULTI_TOKEN = ["very negative", "somewhat negative", "neutral or mixed", "positive"]


def skorch_label_ids(theirs):
    """Give a fitted skorch classifier its labels' tokens without special tokens.

    For a tokenizer that adds no special tokens (SmolLM2's) this changes nothing.
    """
    classes = [str(c) for c in theirs.classes_]
    theirs.label_ids_ = theirs.tokenizer_(classes, add_special_tokens=False)["input_ids"]
    return theirs


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def skorch_examples_block(examples):
    """skorch's few-shot example text, so both libraries see the same prompt."""
    from skorch.llm.prompts import DELIM

    return "\n".join(f"{DELIM}\n{x}\n{DELIM}\n\nYour response:\n{y}\n" for x, y in examples)


def floor_seconds(loaded, clf, texts):
    """A bare batched forward pass over each sample's own tokens plus the label
    trie's internal nodes (a leaf's token is predicted, never read), with the
    shared prefix run once: the work nbllm cannot avoid."""
    import torch

    from nbllm.engine.scoring.prefix import shared_prefix_length
    from nbllm.engine.scoring.tree_mask import plan_batches
    from nbllm.engine.scoring.trie import LabelTrie

    ids = clf.prompt_token_ids(texts)
    # What every prompt shares (the engine uses the same, from the template).
    prefix_len = shared_prefix_length(ids, None)
    trie = LabelTrie(clf.label_ids_)
    suffixes = [row[prefix_len:] + [trie.tokens[n] for n in trie.internal] for row in ids]
    batches = plan_batches([len(row) - prefix_len for row in ids], len(trie.internal),
                           loaded.model.config.vocab_size, "cpu", "auto")
    n_tokens = sum(len(s) for s in suffixes) + prefix_len
    start = time.perf_counter()
    with torch.inference_mode():
        loaded.model(torch.tensor([ids[0][:prefix_len]]))
        for batch in batches:
            width = max(len(suffixes[i]) for i in batch)
            rows = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                rows[r, :len(suffixes[i])] = torch.tensor(suffixes[i])
            loaded.model(rows, logits_to_keep=1 + len(trie.internal))
    return time.perf_counter() - start, n_tokens


def load_times(model=None):
    """Cold GGUF load and load from the converted copy, each in a fresh process."""
    import tempfile

    # torch and transformers are imported before the clock starts: the import
    # costs the same either way and is not part of loading the model.
    code = ("import time, torch, transformers, transformers.models.llama; "
            "from nbllm.engine.loading.models import get_model; t = time.perf_counter(); "
            f"get_model({model!r}, device='cpu', dtype='float32'); "
            "print(time.perf_counter() - t)")
    folder = tempfile.mkdtemp(prefix="nbllm-bench-")
    env = dict(os.environ, NBLLM_CACHE_DIR=folder)
    run = lambda: float(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                       capture_output=True, text=True).stdout.split()[-1])
    return run(), run()


def scale_rows(counts, labels, model=None):
    """df.llm.classify time and peak RSS per row count, each in a fresh process."""
    # Peak memory is the child's VmHWM: ru_maxrss would carry over the
    # parent's peak through fork and exec.  The model is loaded before the clock.
    code = """
import re, sys, time
import nbllm
from nbllm.tools.tweets import load_tweets
from nbllm.engine.loading.models import get_model
get_model(%r)
df = load_tweets(None, labels=('negative', 'positive'), min_confidence=0.0)
df = df.sample(n=min(int(sys.argv[1]), len(df)), random_state=0)
t = time.perf_counter()
out = df.llm.classify('text', labels=%r%s, progress=False)
hwm = re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)
print(len(out), time.perf_counter() - t, hwm)
""" % (model, labels, "" if model is None else f", model={model!r}")
    rows = []
    for n in counts:
        out = subprocess.run([sys.executable, "-c", code, str(n)], check=True,
                             capture_output=True, text=True).stdout.split()
        rows.append((int(out[0]), float(out[1]), int(out[2])))
    return rows


def main():
    import numpy as np
    import torch
    from skorch.llm import ZeroShotClassifier as SkorchZeroShot
    from skorch.llm.prompts import DEFAULT_PROMPT_FEW_SHOT, DEFAULT_PROMPT_ZERO_SHOT

    from nbllm import ZeroShotClassifier
    from nbllm.engine.loading import models
    from nbllm.engine.scoring.result_cache import result_cache
    from nbllm.tools.tweets import load_tweets

    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=128)
    parser.add_argument("--scale", default="100,1000", help="row counts for df.llm.classify")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--extras-only", action="store_true",
                        help="only the load and scale measures, no skorch cases")
    parser.add_argument("--floor-only", action="store_true",
                        help="only the floor and the cached rerun, no skorch cases")
    parser.add_argument("--dtype", default="auto", help="nbllm's dtype (skorch: float32)")
    parser.add_argument("--also-float32", action="store_true",
                        help="also time nbllm on skorch's float32 model object")
    parser.add_argument("--model", default=None,
                        help="model spec for both (default: the embedded smollm2-135m)")
    args = parser.parse_args()

    if os.environ.get("NBLLM_CACHE_DIR"):
        print("NOTE: NBLLM_CACHE_DIR is set, so nbllm's disk result cache serves texts "
              "scored in earlier runs: its times below are not comparable\n", flush=True)
    loaded = models.get_model(args.model, device="cpu", dtype="float32")
    mine = models.get_model(args.model, device="cpu", dtype=args.dtype)
    model_name = args.model or models.DEFAULT_MODEL
    # The once-per-model self-check runs before the clock: on a model with a
    # sliding window (Gemma 3) it scores prompts past the window by the plain
    # path, minutes on this machine, which is no part of either library's speed.
    # The estimators below get model objects, whose entries (wrap_model) have
    # their own self-check.
    from nbllm.engine.scoring.scorer import backend_choice

    for entry in {id(m): m for m in (mine, loaded)}.values():
        wrapped = models.wrap_model(entry.model, entry.tokenizer)
        print(f"scoring path ({str(entry.dtype).replace('torch.', '')}): "
              f"{backend_choice(wrapped).name}", flush=True)
    exact = mine.dtype == loaded.dtype
    dtype_name = str(mine.dtype).replace("torch.", "")
    texts = load_tweets(args.n, split="eval", random_state=11)["text"].tolist()
    train = load_tweets(20, split="dev", random_state=12)
    examples = list(zip(train["text"][:5], train["label"][:5]))
    # The few-shot case: skorch's template with the examples written in by
    # skorch's own format, so that both see the same prompt text.
    few_template = DEFAULT_PROMPT_FEW_SHOT.replace(
        "{examples}", skorch_examples_block(examples).replace("{", "{{").replace("}", "}}"))
    cases_zero = DEFAULT_PROMPT_ZERO_SHOT
    cases = [
        ("zero-shot, 2 single-token labels", DEFAULT_PROMPT_ZERO_SHOT,
         ["negative", "positive"]),
        ("zero-shot, 4 multi-token labels", DEFAULT_PROMPT_ZERO_SHOT, MULTI_TOKEN),
        ("few-shot, 5 examples", few_template, ["negative", "positive"]),
    ]
    if args.extras_only or args.floor_only:
        cases = []
    print(f"{len(texts)} tweets, {model_name} on cpu (skorch float32, nbllm {dtype_name}), "
          f"{os.cpu_count()} cores, {torch.get_num_threads()} torch threads\n")
    header = (f"{'case':<34} {'skorch s':>9} {'nbllm s':>8} {'speed-up':>9} {'max |dp|':>9}"
              + ("" if exact else f" {'same pred':>9}")
              + (f" {'fp32 s':>7} {'fp32 x':>7}" if args.also_float32 else ""))
    print(header)
    print("-" * len(header))
    results = {}
    for name, template, labels in cases:
        result_cache.clear()
        ours = ZeroShotClassifier(model=mine.model, tokenizer=mine.tokenizer,
                                  prompt=template, use_chat_template=False,
                                  progress=False).fit(None, labels)
        theirs = skorch_label_ids(SkorchZeroShot(model=loaded.model, tokenizer=loaded.tokenizer,
                                                 prompt=template).fit(None, labels))
        p_theirs, t_theirs = timed(theirs.predict_proba, texts)
        p_ours, t_ours = timed(ours.predict_proba, texts)
        diff = float(np.abs(p_ours - p_theirs).max())
        results[name] = (ours, t_ours)
        line = f"{name:<34} {t_theirs:9.1f} {t_ours:8.1f} {t_theirs / t_ours:8.1f}x {diff:9.1e}"
        if exact:
            line += "" if diff < 1e-4 else "  PARITY FAILED"
        else:
            same = float((p_ours.argmax(1) == p_theirs.argmax(1)).mean())
            line += f" {same:9.3f}"
        if args.also_float32:
            result_cache.clear()
            f32 = ZeroShotClassifier(model=loaded.model, tokenizer=loaded.tokenizer,
                                     prompt=template, use_chat_template=False,
                                     progress=False).fit(None, labels)
            p_f32, t_f32 = timed(f32.predict_proba, texts)
            line += f" {t_f32:7.1f} {t_theirs / t_f32:6.1f}x"
            if float(np.abs(p_f32 - p_theirs).max()) >= 1e-4:
                line += "  FLOAT32 PARITY FAILED"
        print(line, flush=True)

    if args.floor_only:
        results["zero-shot, 2 single-token labels"] = (ZeroShotClassifier(
            model=mine.model, tokenizer=mine.tokenizer, prompt=cases_zero,
            use_chat_template=False, progress=False).fit(None, ["negative", "positive"]), 0)
    if results:
        ours, _ = results["zero-shot, 2 single-token labels"]
        t_floor, n_tokens = floor_seconds(mine, ours, texts)
        result_cache.clear()
        _, t_nbllm = timed(ours.predict_proba, texts)
        _, t_again = timed(ours.predict_proba, texts)
        print(f"\nrerun from the result cache: {t_nbllm:.2f} s -> {t_again * 1000:.1f} ms "
              f"({t_nbllm / t_again:.0f}x faster)")
        print(f"floor ({dtype_name}; bare forward over the {n_tokens} tokens that must be "
              "computed): "
              f"{t_floor:.1f} s = {n_tokens / t_floor:.0f} tokens/s; nbllm {t_nbllm:.1f} s "
              f"= {t_nbllm / t_floor:.2f}x the floor")

    if not args.skip_load:
        cold, warm = load_times(args.model)
        print(f"model load: cold GGUF {cold:.1f} s, from the converted copy {warm:.1f} s "
              f"({cold / warm:.1f}x faster)")
    counts = [int(c) for c in args.scale.split(",") if c]
    if counts:
        print("\ndf.llm.classify scale (fresh process each):")
        for n, seconds, peak_kb in scale_rows(counts, ["negative", "positive"], args.model):
            peak_mb = peak_kb / 1024
            print(f"  {n:>6} rows: {seconds:7.1f} s, {1000 * seconds / n:6.1f} ms/row, "
                  f"peak RSS {peak_mb:.0f} MB")
    print(f"\nthis process peak RSS: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
