"""Choosing the few-shot examples that go into a prompt.

``'stratified'`` (skorch's rule, through ``FewShotClassifier.get_examples``)
and ``'random'`` pick one set of examples at fit time, shared
by every prompt (so the prompt prefix, examples included, is computed once
and reused from the KV cache).  ``'similar'`` picks, for each text, the
training examples nearest to it by TF-IDF cosine similarity: better examples,
but every prompt differs from the examples on, so only the part of the
template before ``{examples}`` is shared.
"""

import numpy as np


def _rng(random_state):
    # scikit-learn's rule for None / int / RandomState.
    from sklearn.utils import check_random_state

    return check_random_state(random_state)


def draw_stratified(texts, labels, n, random_state):
    """Indices of up to ``n`` examples with every label represented, skorch's way.

    skorch.llm's ``get_examples`` rule, so that the same data and
    ``random_state`` give the same examples in the same order: walk one
    random permutation, first taking one example of each label not yet seen
    (until every label is in or ``n`` are taken), then filling up with other
    examples whose text was not taken yet; return them reversed, so the
    one-per-label examples come last, nearest the text.  When the first walk
    alone reaches ``n``, they come back in the order drawn, not reversed (as
    in skorch); ``FewShotClassifier.fit`` asks for at most as many examples as
    there are, as skorch's ``fit`` does, so that this holds for small data too.
    """
    rng = _rng(random_state)
    order = rng.permutation(np.arange(len(labels)))
    n_labels = len(_unique(labels))
    chosen, seen_texts, seen_labels = [], set(), set()
    for i in order:
        if labels[i] not in seen_labels:
            chosen.append(int(i))
            seen_texts.add(str(texts[i]))
            seen_labels.add(labels[i])
        if len(seen_labels) == n_labels or len(chosen) == n:
            break
    if len(chosen) == n:
        return chosen
    for i in order:
        if str(texts[i]) in seen_texts:
            continue
        chosen.append(int(i))
        if len(chosen) == n:
            break
    return chosen[::-1]


def draw_random(n_examples, n, random_state):
    """Indices of ``min(n, n_examples)`` examples drawn without replacement."""
    rng = _rng(random_state)
    return [int(i) for i in rng.choice(n_examples, size=min(n, n_examples), replace=False)]


class SimilarExamples:
    """Nearest training examples per query, by TF-IDF cosine similarity.

    The ``n`` examples are taken from the classes in turn (nearest of each
    class first, like scikit-llm's dynamic few-shot; the class with the
    nearest example leads), so that a query whose
    neighbours all share one label still shows the model every label.  In
    the prompt they are ordered from least to most similar: the closest
    example sits right before the query.

    Parameters
    ----------
    texts, labels : sequences
        The training pool.
    n : int
        Examples per query.
    """

    def __init__(self, texts, labels, n):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.texts, self.labels = list(texts), np.asarray(labels, dtype=object)
        self.n = min(n, len(self.texts))
        self.vectorizer = TfidfVectorizer(sublinear_tf=True)
        try:
            self.matrix = self.vectorizer.fit_transform(self.texts)
        except ValueError:  # every text empty or stop words: no vocabulary
            self.vectorizer, self.matrix = None, None
        self.by_class = [np.flatnonzero(self.labels == c) for c in _unique(self.labels)]

    def nearest(self, queries):
        """A tuple of pool indices for each query."""
        if self.vectorizer is None:
            sims = np.zeros((len(queries), len(self.texts)))
        else:
            # TF-IDF rows are L2-normalised, so the dot product is the cosine.
            sims = (self.vectorizer.transform(queries) @ self.matrix.T).toarray()
        out = []
        for row in sims:
            # Stable sorts: ties keep pool order, so selection is deterministic.
            ranked = [members[np.argsort(-row[members], kind="stable")]
                      for members in self.by_class]
            # Classes in order of their nearest member, so that with fewer
            # examples than classes the query's likely class is not left out.
            ranked.sort(key=lambda members: -row[members[0]])
            picked = []
            for depth in range(max(len(r) for r in ranked)):
                for members in ranked:
                    if depth < len(members) and len(picked) < self.n:
                        picked.append(int(members[depth]))
            picked.sort(key=lambda i: (row[i], -i))
            out.append(tuple(picked))
        return out


def _unique(values):
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


class PerTextRenderer:
    """Renders each text with its own examples (``'similar'`` selection).

    Parameters
    ----------
    selector : SimilarExamples
    make_renderer : callable
        ``make_renderer(pairs)`` returns a PromptRenderer showing those
        (text, label) examples.
    """

    # Renderers kept for reuse; beyond this many the memo starts afresh, so a
    # 100k-row job does not hold one renderer per row.
    MAX_RENDERERS = 4096

    def __init__(self, selector, make_renderer):
        self.selector, self.make_renderer = selector, make_renderer
        self._renderers = {}

    def examples_for(self, texts):
        """The (text, label) examples shown with each text."""
        return [[(self.selector.texts[i], self.selector.labels[i]) for i in picked]
                for picked in self.selector.nearest(list(texts))]

    def for_texts(self, texts):
        out = []
        for picked in self.selector.nearest(list(texts)):
            if picked not in self._renderers:
                if len(self._renderers) >= self.MAX_RENDERERS:
                    self._renderers.clear()
                pairs = [(self.selector.texts[i], self.selector.labels[i]) for i in picked]
                self._renderers[picked] = self.make_renderer(pairs)
            out.append(self._renderers[picked])
        return out

    def render(self, text):
        return self.for_texts([text])[0].render(text)

    def head(self):
        """A prompt without examples; the scorer shares only the part of it
        that every prompt starts with (the text before the examples)."""
        return self.make_renderer([]).head()
