"""Measure candidate default prompts on the *dev* half of the tweet corpus.

This is how nbllm's default prompts and chat handling were chosen; the
held-out *eval* half is only used by ``eval_quality.py``.  Run::

    HF_HUB_OFFLINE=1 python benchmarks/choose_prompts.py [-n 300]

For each candidate it prints accuracy (no calibration, content-free and batch
calibration) and the ranking AUC, on positive-vs-negative and on the
three-class task.
"""

import argparse
import time

import numpy as np

CANDIDATES = {
    # name: (template, use_chat_template)
    "chat: text, categories, question": (
        "Text: {text}\nCategories: {labels}\nWhat is the category of the text?", True),
    "chat: sentiment question": (
        "Is the sentiment of this tweet {labels}?\n\nTweet: {text}\n\n"
        "Answer with one word.", True),
    "chat: classify instruction": (
        "Classify the text into one of these categories: {labels}.\n\n"
        "Text: {text}", True),
    "raw: classify, Category:": (
        "Classify the text into one of these categories: {labels}.\n\n"
        "Text: {text}\nCategory:", False),
    "raw: classify, Category: + space": (
        "Classify the text into one of these categories: {labels}.\n\n"
        "Text: {text}\nCategory: ", False),
    "raw: text then sentiment + space": (
        "Categories: {labels}\n\nText: {text}\nSentiment: ", False),
    "raw: text then category + space": (
        "Categories: {labels}\n\nText: {text}\nCategory: ", False),
    "raw: question answer + space": (
        "Text: {text}\nQuestion: Is this text {labels}?\nAnswer: ", False),
}


def metrics(logprobs, y, classes):
    """Accuracy for each calibration, and AUC for two classes."""
    from sklearn.metrics import roc_auc_score

    from nbllm.calibration import calibrate

    out = {}
    for mode in (None, "batch"):
        p = calibrate(logprobs, mode)
        out[str(mode)] = float(np.mean(classes[p.argmax(1)] == y))
    if len(classes) == 2:
        out["auc"] = float(roc_auc_score(y == classes[1], logprobs[:, 1] - logprobs[:, 0]))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--only", default="", help="substring of candidate names")
    args = parser.parse_args()

    from nbllm import ZeroShotClassifier
    from nbllm.calibration import calibrate, content_free_reference
    from nbllm.data import load_tweets

    for labels in (("negative", "positive"), ("negative", "neutral", "positive")):
        df = load_tweets(args.n, labels=labels, split="dev", random_state=1)
        y = df["label"].to_numpy()
        print(f"\n{len(labels)} classes, {len(df)} dev tweets")
        for name, (prompt, chat) in CANDIDATES.items():
            if args.only not in name:
                continue
            t = time.perf_counter()
            clf = ZeroShotClassifier(prompt=prompt, use_chat_template=chat,
                                     progress=False).fit(None, list(labels))
            logprobs = clf._label_logprobs(df["text"].tolist())
            cf = content_free_reference(clf.calibration_logprobs())
            m = metrics(logprobs, y, clf.classes_)
            m["content_free"] = float(np.mean(
                clf.classes_[calibrate(logprobs, "content_free", cf).argmax(1)] == y))
            print(f"{name:40s} " + "  ".join(f"{k}={v:.3f}" for k, v in m.items())
                  + f"  ({time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
