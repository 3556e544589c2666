"""How much a text's probabilities depend on the batch it is scored in, per dtype.

    HF_HUB_OFFLINE=1 python benchmarks/bench_batch_drift.py [-n 64]

Scores the same tweets once in one call (batched, padded, sorted by length)
and once one text per call, with the result cache off, in float32 and in
bfloat16, and prints the largest probability difference between the two and
how many predictions change.  In float32 the difference is rounding (~1e-6);
in bfloat16 the matmuls of different shapes round differently.
"""

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main():
    import numpy as np

    from nbllm import ZeroShotClassifier
    from nbllm.tools.tweets import load_tweets

    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=64)
    args = parser.parse_args()
    texts = load_tweets(args.n, split="eval", random_state=5)["text"].tolist()
    for dtype in ("float32", "bfloat16"):
        clf = ZeroShotClassifier(dtype=dtype, use_caching=False, progress=False).fit(
            None, ["negative", "positive"])
        together = clf.predict_proba(texts)
        alone = np.vstack([clf.predict_proba([t]) for t in texts])
        diff = float(np.abs(together - alone).max())
        changed = int((together.argmax(1) != alone.argmax(1)).sum())
        print(f"{dtype:<9} max |dp| batched vs alone {diff:.1e}, "
              f"{changed} of {len(texts)} predictions change")


if __name__ == "__main__":
    main()
