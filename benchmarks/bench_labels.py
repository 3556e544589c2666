"""Time and memory against the number of labels (2 to 200), on the embedded model.

Run::

    HF_HUB_OFFLINE=1 python benchmarks/bench_labels.py [-n 50] [--counts 2,20,50,200]

Each label count runs in a fresh process (model loaded before the clock) on the
same real tweets; labels are two-word product categories ("outdoor furniture",
"kids shoes", ...), so the label trie shares first words as real label sets do.
Peak memory is the process's VmHWM.
"""

import argparse
import subprocess
import sys

ADJECTIVES = ["outdoor", "kids", "women's", "men's", "kitchen", "garden", "office",
              "travel", "sports", "vintage", "smart", "baby", "pet", "car", "home"]
NOUNS = ["furniture", "shoes", "clothing", "lighting", "storage", "electronics",
         "toys", "tools", "accessories", "books", "decor", "bags", "supplies", "care"]

CHILD = """
import re, sys, time
from nbllm import ZeroShotClassifier
from nbllm.tools.tweets import load_tweets
labels = sys.argv[2].split("|")
texts = load_tweets(int(sys.argv[1]), split="eval", random_state=5)["text"].tolist()
clf = ZeroShotClassifier(progress=False, use_caching=False).fit(None, labels)
clf.predict_proba(texts[:2])  # warm up: model load, prefix cache
t = time.perf_counter()
probas = clf.predict_proba(texts)
seconds = time.perf_counter() - t
hwm = re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)
assert probas.shape == (len(texts), len(labels))
print(seconds, hwm, sum(len(i) for i in clf.label_ids_))
"""


def label_names(count):
    """``count`` distinct two-word category names."""
    names = [f"{a} {n}" for a in ADJECTIVES for n in NOUNS]
    if count > len(names):
        raise ValueError(f"at most {len(names)} labels")
    return names[:count]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=50)
    parser.add_argument("--counts", default="2,20,50,200")
    args = parser.parse_args()
    print(f"{args.n} tweets; each label count in a fresh process\n")
    print(f"{'labels':>6} {'label tokens':>12} {'seconds':>8} {'ms/text':>8} "
          f"{'ms/text/label':>13} {'peak MB':>8}")
    for count in (int(c) for c in args.counts.split(",")):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(args.n), "|".join(label_names(count))],
            check=True, capture_output=True, text=True).stdout.split()
        seconds, peak_kb, n_tokens = float(out[0]), int(out[1]), int(out[2])
        per_text = 1000 * seconds / args.n
        print(f"{count:>6} {n_tokens:>12} {seconds:>8.1f} {per_text:>8.1f} "
              f"{per_text / count:>13.2f} {peak_kb / 1024:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
