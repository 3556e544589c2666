"""Choose a few-shot example selection that shares prompt prefixes (issue #35).

Run::

    HF_HUB_OFFLINE=1 python benchmarks/choose_selection.py [-n 800] [--csv /tmp/dev.csv]
    HF_HUB_OFFLINE=1 python benchmarks/choose_selection.py --confirm \\
        [--models smollm2-135m,gemma3-270m] [--csv /tmp/confirm.csv]

The default mode measures candidate settings of ``example_selection='grouped'``
(neighbourhoods ``k``, examples per text after the shared block, the block's
order) on the corpus' *dev* half only: ``-n`` dev tweets (positive / negative,
annotator confidence >= 0.9) that are not in the 50-tweet pool of examples
(``load_tweets(50, split='dev', random_state=2)``, as ``eval_quality.py``).
For each setting it prints accuracy with its binomial standard error, and the
positions per text a prefix-sharing scorer feeds for the whole call: the
nodes of the prefix tree of all prompts' token ids plus each prompt's label-trie
columns, divided by the number of texts (from ``prompt_token_ids``; no model
pass is needed for it).  Zero-shot's default and ``'similar'`` (the default
before issue #35) are the references.  Settings already in ``--csv`` are read
back, not scored again; ``--only REGEX`` scores a subset.  Grouped settings are
scored one call per distinct set of examples (the same prompts, checked), so
that an engine sharing only a call's common prefix computes each set once.

``--confirm`` compares ``'similar'`` with ``'grouped'`` (its defaults) on the
1,600-tweet *eval* draw (``load_tweets(1600, split='eval', random_state=0)``),
5 examples, on each model of ``--models`` (the embedded SmolLM2-135M and Gemma
3 270M): accuracy of each, the paired mean difference of per-row correctness
with a 95% CI (normal approximation and a paired bootstrap), and the exact
McNemar test (a binomial test on the discordant pairs).  Per-row predictions
are appended to ``--csv`` chunk by chunk, and a rerun with the same file
skips what is in it, so an interrupted run resumes.
"""

import argparse
import csv
import os
import re
import time

import numpy as np

LABELS = ("negative", "positive")
SHOTS = 5
CHUNK = 100


def pool_and_dev(n):
    """The 50-tweet example pool and ``n`` dev tweets outside it."""
    from nbllm.tools.tweets import load_tweets

    pool = load_tweets(50, labels=LABELS, split="dev", random_state=2)
    dev = load_tweets(n + len(pool), labels=LABELS, split="dev", random_state=1)
    dev = dev[~dev["text"].isin(set(pool["text"]))].head(n).reset_index(drop=True)
    return pool, dev


def grouped_variant(groups, per_text, order="similarity"):
    """A selector factory for one setting of the 'grouped' selection."""
    from nbllm.estimators.example_selection import GroupedExamples

    class Variant(GroupedExamples):
        def _order_block(self, picked, row):
            # 'classes': as picked (the classes in turn, nearest the centre
            # first); 'similarity': the selection's own order.
            if order == "classes":
                return list(picked)
            return super()._order_block(picked, row)

    return lambda texts, labels, n: Variant(texts, labels, n, groups=groups,
                                            per_text=per_text)


# name: (example_selection, selector factory or None for the selection's own)
SETTINGS = {
    "zero-shot default": (None, None),
    "similar (the earlier default)": ("similar", None),
    "stratified (one fixed set)": ("stratified", None),
    "grouped k=1, block 5": ("grouped", grouped_variant(1, 0)),
    "grouped k=2, block 5": ("grouped", grouped_variant(2, 0)),
    "grouped k=4, block 5": ("grouped", grouped_variant(4, 0)),
    "grouped k=8, block 5": ("grouped", grouped_variant(8, 0)),
    "grouped k=1, block 4 + 1 nearest": ("grouped", grouped_variant(1, 1)),
    "grouped k=2, block 4 + 1 nearest": ("grouped", grouped_variant(2, 1)),
    "grouped k=4, block 4 + 1 nearest": ("grouped", grouped_variant(4, 1)),
    "grouped k=8, block 4 + 1 nearest": ("grouped", grouped_variant(8, 1)),
    "grouped k=4, block 4 + 1 nearest, block in class order":
        ("grouped", grouped_variant(4, 1, "classes")),
    "grouped k=4, block 3 + 2 nearest": ("grouped", grouped_variant(4, 2)),
    "grouped k=2, block 4 + 1 nearest, block in class order":
        ("grouped", grouped_variant(2, 1, "classes")),
    "grouped k=2, block 3 + 2 nearest": ("grouped", grouped_variant(2, 2)),
}


def build(selection, factory, pool, model=None):
    """A fitted classifier for one setting."""
    from nbllm import FewShotClassifier, ZeroShotClassifier

    common = dict(model_name=model, use_caching=False, progress=False)
    if selection is None:
        return ZeroShotClassifier(**common).fit(None, list(LABELS))
    clf = FewShotClassifier(**common, max_samples=SHOTS, example_selection=selection,
                            random_state=0).fit(pool["text"], pool["label"])
    if factory is not None:
        clf.selector_ = factory(list(pool["text"]), list(pool["label"]), SHOTS)
    return clf


def positions_per_text(clf, texts):
    """Positions a prefix-sharing scorer feeds per text for one call.

    The prefix tree of all prompts' token ids has one node per distinct
    token prefix; each prompt adds its label trie's internal nodes.
    """
    from nbllm.engine.scoring.prompt_tree import unique_positions
    from nbllm.engine.scoring.trie import LabelTrie

    nodes = unique_positions(clf.prompt_token_ids(texts))
    columns = len(LabelTrie(clf.label_ids_).internal)
    return (nodes + columns * len(texts)) / len(texts)


def predict(clf, texts):
    """Predicted class index per text, scored ``CHUNK`` texts at a time."""
    out = []
    for start in range(0, len(texts), CHUNK):
        out.extend(np.argmax(clf.label_logprobs(texts[start:start + CHUNK]), axis=1))
    return np.asarray(out)


def predict_by_examples(clf, texts, pool):
    """:func:`predict` for a per-text selection, one call per distinct set of
    examples: each call's prompts share the examples, so an engine that shares
    only a call's common prefix computes them once (as a prefix-sharing engine would).  The prompts are
    the same strings (checked)."""
    from nbllm import FewShotClassifier

    fixed = FewShotClassifier(use_caching=False, progress=False, max_samples=SHOTS,
                              example_selection="stratified").fit(pool["text"],
                                                                  pool["label"])
    rows = {}
    for i, examples in enumerate(clf.examples_for(texts)):
        rows.setdefault(tuple(examples), []).append(i)
    out = np.zeros(len(texts), dtype=int)
    for examples, index in rows.items():
        fixed.examples_ = list(examples)
        group = [texts[i] for i in index]
        assert fixed.get_prompt(group[0]) == clf.get_prompt(group[0])
        out[index] = np.argmax(fixed.label_logprobs(group), axis=1)
    return out


def choose(args):
    import pandas as pd

    done = pd.read_csv(args.csv) if args.csv and os.path.exists(args.csv) else None
    pool, dev = pool_and_dev(args.n)
    texts, truth = dev["text"].tolist(), dev["label"].map(LABELS.index).to_numpy()
    print(f"dev: {len(dev)} tweets ({dev['label'].value_counts().to_dict()}), "
          f"pool {len(pool)}, {SHOTS} examples", flush=True)
    rows, correct = [], {}
    for name, (selection, factory) in SETTINGS.items():
        if args.only and not re.search(args.only, name) and name not in REFERENCES:
            continue
        if done is not None and name in set(done["setting"]):
            # Scored by an earlier run into the same file.
            pred = done[done["setting"] == name].sort_values("row")["pred"]
            rows.append(summary(name, build(selection, factory, pool), texts,
                                pred.map(LABELS.index).to_numpy(), truth, None, correct))
            continue
        clf = build(selection, factory, pool)
        t = time.perf_counter()
        pred = (predict_by_examples(clf, texts, pool) if selection == "grouped"
                else predict(clf, texts))
        rows.append(summary(name, clf, texts, pred, truth, time.perf_counter() - t,
                            correct))
        if args.csv:
            write_rows(args.csv, [{"setting": name, "row": i, "label": dev["label"][i],
                                   "pred": LABELS[p]} for i, p in enumerate(pred)])
    base = rows[0][3]
    reference = correct["similar (the earlier default)"]
    print(f"\n| setting | accuracy ± SE | paired diff vs similar ± SE | positions per "
          f"text | × zero-shot | s/text |")
    print("|---|---|---|---|---|---|")
    for name, acc, se, cost, seconds in rows:
        diff = correct[name].astype(float) - reference
        print(f"| {name} | {acc:.3f} ± {se:.3f} | {diff.mean():+.3f} ± "
              f"{diff.std(ddof=1) / np.sqrt(len(diff)):.3f} | {cost:.1f} | "
              f"{cost / base:.2f} | "
              f"{'' if seconds is None else f'{seconds / len(texts):.3f}'} |")


REFERENCES = ("zero-shot default", "similar (the earlier default)")


def summary(name, clf, texts, pred, truth, seconds, correct):
    """One row of the table: accuracy, its binomial SE, positions per text."""
    correct[name] = pred == truth
    acc = correct[name].mean()
    se = np.sqrt(acc * (1 - acc) / len(texts))
    cost = positions_per_text(clf, texts)
    print(f"  {name:<58} acc={acc:.3f} ± {se:.3f}  positions/text={cost:6.1f}"
          + ("" if seconds is None else f"  ({seconds / len(texts):.3f} s/text)"),
          flush=True)
    return name, acc, se, cost, seconds


def write_rows(path, rows):
    new = not os.path.exists(path)
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)


def paired_test(a, b, seed=0, rounds=10000):
    """Mean of b - a with 95% CIs (normal, bootstrap) and McNemar's exact p."""
    from scipy.stats import binomtest

    diff = b.astype(float) - a.astype(float)
    mean, se = diff.mean(), diff.std(ddof=1) / np.sqrt(len(diff))
    rng = np.random.RandomState(seed)
    boot = np.array([diff[rng.randint(0, len(diff), len(diff))].mean()
                     for _ in range(rounds)])
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    p = binomtest(only_b, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"mean": mean, "normal": (mean - 1.96 * se, mean + 1.96 * se),
            "bootstrap": tuple(np.percentile(boot, [2.5, 97.5])),
            "only_a": only_a, "only_b": only_b, "p": p}


def confirm(args):
    import pandas as pd

    from nbllm.tools.tweets import load_tweets

    test = load_tweets(1600, labels=LABELS, split="eval", random_state=0)
    pool = load_tweets(50, labels=LABELS, split="dev", random_state=2)
    texts = test["text"].tolist()
    done = pd.read_csv(args.csv) if args.csv and os.path.exists(args.csv) else None
    print(f"eval: {len(test)} tweets ({test['label'].value_counts().to_dict()}), "
          f"pool {len(pool)}, {SHOTS} examples", flush=True)
    for model in args.models.split(","):
        correct = {}
        for selection in ("similar", "grouped"):
            clf = build(selection, None, pool, None if model == "smollm2-135m" else model)
            have = (done[(done["model"] == model) & (done["selection"] == selection)]
                    if done is not None else pd.DataFrame(columns=["row", "pred"]))
            pred = dict(zip(have["row"], have["pred"]))
            t = time.perf_counter()
            scored = 0
            for start in range(0, len(texts), CHUNK):
                rows = range(start, min(start + CHUNK, len(texts)))
                if all(i in pred for i in rows):
                    continue
                out = np.argmax(clf.label_logprobs(texts[rows.start:rows.stop]), axis=1)
                new = [{"model": model, "selection": selection, "row": i,
                        "label": test["label"][i], "pred": LABELS[p]}
                       for i, p in zip(rows, out)]
                pred.update((r["row"], r["pred"]) for r in new)
                scored += len(new)
                if args.csv:
                    write_rows(args.csv, new)
                print(f"  {model} {selection}: {len(pred)}/{len(texts)} "
                      f"({(time.perf_counter() - t) / scored:.3f} s/text)", flush=True)
            seconds = time.perf_counter() - t
            correct[selection] = np.array([pred[i] == test["label"][i]
                                           for i in range(len(texts))])
            print(f"{model} {selection}: acc={correct[selection].mean():.4f} "
                  f"(n={len(texts)}; scored {scored} now in {seconds:.0f} s, "
                  f"positions/text={positions_per_text(clf, texts):.1f})", flush=True)
        r = paired_test(correct["similar"], correct["grouped"])
        print(f"{model}: grouped - similar = {r['mean']:+.4f}, 95% CI normal "
              f"[{r['normal'][0]:+.4f}, {r['normal'][1]:+.4f}], bootstrap "
              f"[{r['bootstrap'][0]:+.4f}, {r['bootstrap'][1]:+.4f}]; discordant: "
              f"only similar right {r['only_a']}, only grouped right {r['only_b']}; "
              f"McNemar exact p={r['p']:.4g}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=800, help="dev tweets")
    parser.add_argument("--confirm", action="store_true",
                        help="'similar' against 'grouped' on the eval draw")
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--csv", default=None,
                        help="append per-row predictions here; settings already in "
                             "the file are read back, not scored again")
    parser.add_argument("--only", default=None,
                        help="score only the settings matching this regular expression "
                             "(and the two references)")
    args = parser.parse_args()
    confirm(args) if args.confirm else choose(args)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
