"""A simulated user of nbllm.Labeler on held-out tweets.

Run (alone on the machine)::

    HF_HUB_OFFLINE=1 python benchmarks/bench_labeling.py [-n 400] [--seeds 0 1]

For each seed, ``n`` two-class tweets from the corpus' *eval* half (never used to
choose anything) are put in a Labeler.  The simulated user answers the queued
rows with the human label, ``batch`` (10) at a time, calling ``improve()`` after
each batch.  After 0, 10, 20 and 40 answers it prints, on the rows never
answered: the accuracy of the Labeler's predictions, the estimate that
``report()`` gives, and the accuracy of TF-IDF + logistic regression trained on
the same answers.  Strategies: margin (the default), entropy and random.
``--model`` picks the model (default: the embedded SmolLM2-135M), for
instance ``--model gemma3-270m``.
"""

import argparse
import json
import tempfile
import time

import numpy as np

CHECKPOINTS = (0, 10, 20, 40)


def tfidf_accuracy(answers, test, classes):
    """Accuracy of TF-IDF + logistic regression trained on the answers (None
    while they hold one label only)."""
    from eval_quality import tfidf_baseline  # the same baseline as the quality table

    if answers["label"].nunique() < 2:
        return None
    predicted = np.asarray(classes)[tfidf_baseline(answers, test, classes).argmax(axis=1)]
    return float((predicted == test["label"].to_numpy()).mean())


def simulate(df, strategy, folder, seed, model=None):
    """Rows of (answers, accuracy, estimate, tf-idf accuracy) for one run."""
    from nbllm import Labeler

    lab = Labeler(df, "text", ["negative", "positive"], batch=10, strategy=strategy,
                  path=f"{folder}/{strategy}-{seed}.json", random_state=seed,
                  **({} if model is None else {"model": model}))
    rows = []
    for target in CHECKPOINTS:
        while len(lab.answers) < target:
            for idx in lab.queue().index:
                lab.answer(idx, df.at[idx, "label"])
            lab.improve()
        answered = set(lab.answers.index)
        rest = [i for i in df.index if i not in answered]
        predicted = lab.predictions.loc[rest, "label"]
        accuracy = float((predicted == df.loc[rest, "label"]).mean())
        report = lab.report()
        baseline = (tfidf_accuracy(lab.answers, df.loc[rest], ["negative", "positive"])
                    if target else None)
        rows.append({"answers": target, "accuracy": accuracy,
                     "estimate": report.estimated_accuracy, "tfidf": baseline,
                     "answered_rows": report.answered_accuracy})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--strategies", nargs="+", default=["margin", "entropy", "random"])
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--model", default=None,
                        help="model spec (default: the embedded smollm2-135m)")
    args = parser.parse_args()

    from nbllm.tools.tweets import load_tweets

    results = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            df = load_tweets(args.n, labels=("negative", "positive"), split="eval",
                             random_state=seed).reset_index(drop=True)
            for strategy in args.strategies:
                started = time.perf_counter()
                for row in simulate(df, strategy, folder, seed, args.model):
                    results.append({"seed": seed, "strategy": strategy, **row})
                print(f"seed {seed}, {strategy}: {time.perf_counter() - started:.1f} s",
                      flush=True)

    def fmt(value):
        return "-" if value is None else f"{value:.3f}"

    print("\n| seed | queue | answers | accuracy (unanswered rows) | report() estimate "
          "| TF-IDF + LR on the same answers |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['seed']} | {r['strategy']} | {r['answers']} | {fmt(r['accuracy'])} | "
              f"{fmt(r['estimate'])} | {fmt(r['tfidf'])} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
