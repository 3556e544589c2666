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
    # name: (template, use_chat_template).  Round 1.
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
    # Round 2: task-agnostic wordings (the default must not name the task).
    "raw: labels last, Category: + space": (
        "Text: {text}\nCategories: {labels}\nCategory: ", False),
    "raw: The text is + space": (
        "Text: {text}\nOptions: {labels}\nThe text is ", False),
    "raw: Label: + space": (
        "Labels: {labels}\n\nText: {text}\nLabel: ", False),
    "raw: Answer: + space": (
        "Classify the text as one of {labels}.\n\nText: {text}\nAnswer: ", False),
    "raw: classify, The text is + space": (
        "Classify the text as one of {labels}.\n\nText: {text}\nThe text is ", False),
    "chat: one-word answer": (
        "Text: {text}\n\nWhich of {labels} describes this text best? "
        "Answer with one word.", True),
    # Round 3: around the best task-agnostic one ("Label: ").
    "raw: possible labels, Label: + space": (
        "Possible labels: {labels}\n\nText: {text}\nLabel: ", False),
    "raw: labels after text, Label: + space": (
        "Text: {text}\nLabels: {labels}\nLabel: ", False),
    "raw: instruction, Label: + space": (
        "Give the text one of these labels: {labels}\n\nText: {text}\nLabel: ", False),
    "chat: labels, text, Label: + space": (
        "Labels: {labels}\n\nText: {text}\nLabel: ", True),
}

# Few-shot: where the examples go (dev pool disjoint from the dev test sample).
FEW_SHOT = {
    "raw: examples in the prompt": (
        "Labels: {labels}\n\n{examples}\n\nText: {text}\nLabel: ", False, "prompt"),
    "chat: examples in the prompt": (
        "Labels: {labels}\n\n{examples}\n\nText: {text}\nLabel: ", True, "prompt"),
    "chat: examples as earlier turns": (
        "Labels: {labels}\n\n{examples}\n\nText: {text}\nLabel: ", True, "turns"),
    "chat: examples as turns, question": (
        "Text: {text}\nLabels: {labels}\n{examples}\nWhat is the label of the text?",
        True, "turns"),
}


def metrics(logprobs, y, classes):
    """Accuracy for each calibration, and AUC for two classes."""
    from sklearn.metrics import roc_auc_score

    from nbllm.estimators.calibration import calibrate

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
    parser.add_argument("--only", default="", help="comma-separated substrings of candidate names")
    parser.add_argument("--tasks", default="2,3", help="2 and/or 3 classes")
    parser.add_argument("--few-shot", action="store_true", help="also few-shot placements")
    args = parser.parse_args()

    from nbllm import ZeroShotClassifier
    from nbllm.estimators.calibration import calibrate, content_free_reference
    from nbllm.tools.tweets import load_tweets

    tasks = {"2": ("negative", "positive"), "3": ("negative", "neutral", "positive")}
    for labels in (tasks[t] for t in args.tasks.split(",")):
        df = load_tweets(args.n, labels=labels, split="dev", random_state=1)
        y = df["label"].to_numpy()
        print(f"\n{len(labels)} classes, {len(df)} dev tweets")
        for name, (prompt, chat) in CANDIDATES.items():
            if not any(part in name for part in args.only.split(",")):
                continue
            t = time.perf_counter()
            clf = ZeroShotClassifier(prompt=prompt, use_chat_template=chat,
                                     progress=False).fit(None, list(labels))
            logprobs = clf.label_logprobs(df["text"].tolist())
            cf = content_free_reference(clf.calibration_logprobs())
            m = metrics(logprobs, y, clf.classes_)
            m["content_free"] = float(np.mean(
                clf.classes_[calibrate(logprobs, "content_free", cf).argmax(1)] == y))
            print(f"{name:40s} " + "  ".join(f"{k}={v:.3f}" for k, v in m.items())
                  + f"  ({time.perf_counter() - t:.0f} s)", flush=True)
        if args.few_shot:
            few_shot(args, labels, df, metrics)


def few_shot(args, labels, df, metrics):
    """Accuracy with 5 examples placed in the prompt or as chat turns."""
    import pandas as pd

    from nbllm import FewShotClassifier
    from nbllm.tools.tweets import load_tweets

    pool = load_tweets(None, labels=labels, split="dev")
    pool = pool[~pool["text"].isin(df["text"])]
    pool = pd.concat([g.sample(25, random_state=2) for _, g in pool.groupby("label")])
    y = df["label"].to_numpy()
    for name, (prompt, chat, placement) in FEW_SHOT.items():
        t = time.perf_counter()
        clf = FewShotClassifier(prompt=prompt, use_chat_template=chat, max_samples=5,
                                example_placement=placement, random_state=0,
                                progress=False).fit(pool["text"], pool["label"])
        m = metrics(clf.label_logprobs(df["text"].tolist()), y, clf.classes_)
        print(f"few-shot {name:31s} " + "  ".join(f"{k}={v:.3f}" for k, v in m.items())
              + f"  ({time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
