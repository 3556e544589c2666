"""Prediction quality on held-out real tweets: nbllm's settings against peers.

Run::

    HF_HUB_OFFLINE=1 python benchmarks/eval_quality.py [-n 400] [--shots-n 200]

Test tweets come from the corpus' *eval* half (balanced, annotator confidence
>= 0.9), which was never used to choose prompts; labelled training tweets
(few-shot examples, the supervised baseline) come from the *dev* half.  For
the two-class task (negative / positive) and the three-class task (with
neutral) it prints accuracy, macro-F1, log-loss and expected calibration
error (ECE) for:

- nbllm's zero-shot default, with each calibration;
- few-shot with 1, 3, 5 and 8 examples and each example selection, from a
  pool of 50 labelled tweets (on ``--shots-n`` test tweets, as it is slower);
- skorch.llm's zero-shot defaults on the same model;
- TF-IDF + logistic regression trained on the same 50 tweets, and on 500.

``--dtype`` runs nbllm in that dtype ('auto' by default: bfloat16 on a CPU
with native bf16); ``--defaults-only`` scores just the zero-shot and few-shot
defaults (the dtype comparison: run it once per dtype), and with
``--task-prompt`` also the zero-shot default with a prompt that names the task.
``--model`` picks the model (an embedded alias such as ``gemma3-270m``, a GGUF
file or a Hugging Face folder; the embedded SmolLM2-135M by default).
"""

import argparse
import json
import time

import numpy as np

SHOTS = (1, 3, 5, 8)
SELECTIONS = ("stratified", "random", "similar", "grouped")  # nbllm.options.EXAMPLE_SELECTION.choices
TASKS = {"2-class": ("negative", "positive"),
         "3-class": ("negative", "neutral", "positive")}


def tfidf_baseline(train, test, classes):
    """TF-IDF + logistic regression probabilities, columns in ``classes`` order."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipe = make_pipeline(TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2)),
                         LogisticRegression(max_iter=1000))
    pipe.fit(train["text"], train["label"])
    order = [list(pipe.classes_).index(c) for c in classes]
    return pipe.predict_proba(test["text"])[:, order]


def defaults_only(labels, n, shots_n, dtype, model=None, task_prompt=None):
    """Rows for nbllm's zero-shot and few-shot defaults only, in ``dtype``.

    With ``task_prompt``, also a zero-shot row with that prompt.
    """
    from nbllm import FewShotClassifier, ZeroShotClassifier
    from nbllm.evaluation import evaluate
    from nbllm.tools.tweets import load_tweets

    test = load_tweets(n, labels=labels, split="eval", random_state=0)
    pool = load_tweets(50, labels=labels, split="dev", random_state=2)
    classes, rows = list(labels), []
    sub = test.head(shots_n)
    common = dict(model_name=model, dtype=dtype, progress=False)
    runs = [("nbllm zero-shot default", ZeroShotClassifier(**common), (None, classes), test)]
    if task_prompt:
        runs.append(("nbllm zero-shot, task prompt",
                     ZeroShotClassifier(**common, prompt=task_prompt), (None, classes), test))
    runs.append(("nbllm few-shot default (5 grouped)", FewShotClassifier(**common),
                 (pool["text"], pool["label"]), sub))
    for name, clf, train, data in runs:
        t = time.perf_counter()
        proba = clf.fit(*train).predict_proba(data["text"])
        seconds = time.perf_counter() - t
        label = f"{name}, {str(clf.loaded_.dtype).replace('torch.', '')}"
        rows.append((label, len(data), evaluate(data["label"], proba, classes), seconds))
        m = rows[-1][2]
        print(f"  {label:<44} acc={m['accuracy']:.3f} f1={m['macro_f1']:.3f} "
              f"logloss={m['log_loss']:.3f} ece={m['ece']:.3f} ({seconds:.0f} s)", flush=True)
    return rows


def run_task(labels, n, shots_n, skip_skorch=False, selections=SELECTIONS,
             only_few_shot=False, model=None):
    """Rows of (method, n test tweets, metrics dict, seconds) for one task."""
    from nbllm import FewShotClassifier, ZeroShotClassifier
    from nbllm.estimators.calibration import calibrate
    from nbllm.tools.tweets import load_tweets
    from nbllm.evaluation import evaluate

    test = load_tweets(n, labels=labels, split="eval", random_state=0)
    pool = load_tweets(50, labels=labels, split="dev", random_state=2)
    big = load_tweets(500, labels=labels, split="dev", random_state=3)
    classes = list(labels)
    rows = []

    def add(name, y, proba, seconds):
        rows.append((name, len(y), evaluate(y, proba, classes), seconds))
        m = rows[-1][2]
        print(f"  {name:<44} acc={m['accuracy']:.3f} f1={m['macro_f1']:.3f} "
              f"logloss={m['log_loss']:.3f} ece={m['ece']:.3f} ({seconds:.0f} s)", flush=True)

    t = time.perf_counter()
    clf = ZeroShotClassifier(model_name=model, progress=False).fit(None, classes)
    logprobs = clf.label_logprobs(test["text"].tolist())
    seconds = time.perf_counter() - t
    for mode in () if only_few_shot else (None, "content_free", "batch"):
        clf.set_params(calibration=mode).fit(None, classes)
        add(f"nbllm zero-shot default, calibration={mode}", test["label"],
            clf.probas_from_logprobs(logprobs), seconds)

    sub = test.head(shots_n)
    for selection in selections:
        for k in SHOTS:
            t = time.perf_counter()
            few = FewShotClassifier(model_name=model, max_samples=k,
                                    example_selection=selection, random_state=0,
                                    progress=False)
            few.fit(pool["text"], pool["label"])
            proba = few.predict_proba(sub["text"])
            add(f"nbllm few-shot k={k}, {selection}", sub["label"], proba,
                time.perf_counter() - t)
            if k == 5 and selection == "stratified":
                few_logprobs = few.label_logprobs(sub["text"].tolist())
                for mode in ("content_free", "batch"):
                    few.set_params(calibration=mode).fit(pool["text"], pool["label"])
                    add(f"nbllm few-shot k=5, stratified, calibration={mode}",
                        sub["label"], calibrate(few_logprobs, mode,
                                                few.calibration_reference_), 0)

    if only_few_shot:
        return rows
    if not skip_skorch:
        from skorch.llm import ZeroShotClassifier as SkorchZeroShot

        from nbllm.engine.loading.models import get_model

        loaded = get_model(model)
        t = time.perf_counter()
        theirs = SkorchZeroShot(model=loaded.model, tokenizer=loaded.tokenizer)
        proba = theirs.fit(None, classes).predict_proba(test["text"].tolist())
        order = [list(theirs.classes_).index(c) for c in classes]
        add("skorch.llm zero-shot defaults", test["label"], proba[:, order],
            time.perf_counter() - t)

    for name, train in (("TF-IDF + logistic regression, 50 labelled", pool),
                        ("TF-IDF + logistic regression, 500 labelled", big)):
        t = time.perf_counter()
        add(name, test["label"], tfidf_baseline(train, test, classes),
            time.perf_counter() - t)
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=400, help="test tweets per task")
    parser.add_argument("--shots-n", type=int, default=200,
                        help="test tweets for the few-shot sweep")
    parser.add_argument("--tasks", default="2-class,3-class")
    parser.add_argument("--skip-skorch", action="store_true")
    parser.add_argument("--json", default=None, help="also write the rows here")
    parser.add_argument("--selections", default=",".join(SELECTIONS))
    parser.add_argument("--only-few-shot", action="store_true")
    parser.add_argument("--dtype", default="auto",
                        help="nbllm's dtype (auto, float32, bfloat16)")
    parser.add_argument("--defaults-only", action="store_true",
                        help="only the zero-shot and few-shot defaults")
    parser.add_argument("--model", default=None,
                        help="model spec (default: the embedded smollm2-135m)")
    parser.add_argument("--task-prompt", default=None,
                        help="with --defaults-only: also zero-shot with this prompt "
                             "(\\n for a newline)")
    args = parser.parse_args()
    if args.task_prompt and not args.defaults_only:
        parser.error("--task-prompt goes with --defaults-only")
    task_prompt = args.task_prompt and args.task_prompt.replace("\\n", "\n")
    if args.dtype != "auto" and not args.defaults_only:
        parser.error("--dtype goes with --defaults-only (the full sweep runs at 'auto')")

    everything = {}
    for task in args.tasks.split(","):
        print(f"\n{task}: {', '.join(TASKS[task])}", flush=True)
        if args.defaults_only:
            everything[task] = defaults_only(TASKS[task], args.n, args.shots_n, args.dtype,
                                             args.model, task_prompt)
            continue
        everything[task] = run_task(TASKS[task], args.n, args.shots_n, args.skip_skorch,
                                    args.selections.split(","), args.only_few_shot,
                                    args.model)
    print()
    for task, rows in everything.items():
        print(f"\n### {task}\n")
        print("| method | test tweets | accuracy | macro-F1 | log-loss | ECE |")
        print("|---|---|---|---|---|---|")
        for name, n, m, _ in rows:
            print(f"| {name} | {n} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | "
                  f"{m['log_loss']:.3f} | {m['ece']:.3f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(everything, fh, indent=1)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
