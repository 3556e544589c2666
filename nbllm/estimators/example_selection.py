"""Choosing the few-shot examples that go into a prompt.

``'stratified'`` (skorch's rule, through ``FewShotClassifier.get_examples``)
and ``'random'`` pick one set of examples at fit time, shared
by every prompt (so the prompt prefix, examples included, is computed once
and reused from the KV cache).  ``'similar'`` picks, for each text, the
training examples nearest to it by TF-IDF cosine similarity: better examples,
but every prompt differs from the examples on, so only the part of the
template before ``{examples}`` is shared.  ``'grouped'`` splits the pool into
a few neighbourhoods, each with one shared block of examples, and adds the
text's own nearest example after the block: prompts of one neighbourhood
share everything up to that example.
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


class GroupedExamples(SimilarExamples):
    """One shared block of examples per neighbourhood of the pool, plus the
    text's nearest example (``'grouped'`` selection).

    At fit time the pool's TF-IDF rows are split into ``groups``
    neighbourhoods by k-means (a fixed seed, so the same pool always gives
    the same neighbourhoods).  Each neighbourhood gets one block of
    ``n - per_text`` examples, chosen like :class:`SimilarExamples` but for
    the neighbourhood's centre (the classes in turn, nearest the centre
    first) and ordered from least to most similar to it.  A text goes to the
    neighbourhood whose centre is nearest; its prompt shows that block, then
    its ``per_text`` nearest pool examples not already in the block (least to
    most similar, the nearest right before the text).

    A text's examples depend only on the text and the pool, never on the
    other texts of a call (nor on ``random_state``).  A pool text never
    appears twice in one prompt (duplicates are skipped); without any
    vocabulary (every text empty or one letter long) there is one
    neighbourhood and the ties fall to pool order.  The texts of one neighbourhood share the prompt
    up to the end of the block, so a scorer that shares prompt prefixes
    computes the block once per neighbourhood and call; what each text adds
    is its own example and itself.

    Parameters
    ----------
    texts, labels : sequences
        The training pool.
    n : int
        Examples per query (at most the pool's size).
    groups : int or None
        Neighbourhoods; None: :meth:`default_groups`.  At most one per
        distinct pool text.
    per_text : int or None
        Examples chosen per text after the shared block; None: one, or none
        when ``n`` is 1.
    """

    #: The seed of k-means: the grouping must not depend on ``random_state``
    #: (None would give new prompts, and new results, at every fit).
    SEED = 0
    #: The most neighbourhoods :meth:`default_groups` makes: each costs one
    #: block of examples per call.
    MAX_GROUPS = 8

    def __init__(self, texts, labels, n, groups=None, per_text=None):
        # The pool's TF-IDF rows and classes, as 'similar' reads them.
        super().__init__(texts, labels, n)
        self.per_text = (min(1, self.n - 1) if per_text is None
                         else max(0, min(per_text, self.n)))
        distinct = len(set(map(str, self.texts)))
        wanted = self.default_groups(len(self.texts), self.n) if groups is None else groups
        self.groups = max(1, min(int(wanted), distinct))
        self.centres = self._centres()
        self.groups = len(self.centres)
        # Each pool text's similarity to each centre: picks the blocks, and
        # breaks ties in the per-text pick.
        self.centre_sims = self._pool_sims(self.centres)
        self.blocks = [tuple(self._block(row, self.n - self.per_text))
                       for row in self.centre_sims]

    @staticmethod
    def default_groups(pool_size, n):
        """Neighbourhoods for a pool of ``pool_size`` and ``n`` examples each.

        One per ``4 * n`` pool texts, from 1 to :attr:`MAX_GROUPS`.  Chosen
        on the tweet corpus' dev half (``benchmarks/choose_selection.py``):
        with 50 labelled tweets and 5 examples, 2 neighbourhoods were more
        accurate than 1, 4 or 8; smaller neighbourhoods' blocks lean more
        towards one label.
        """
        return max(1, min(GroupedExamples.MAX_GROUPS, pool_size // (4 * max(n, 1))))

    def _pool_sims(self, vectors):
        """Cosine of each row of ``vectors`` (dense, L2-normalised) with each
        pool text."""
        if self.matrix is None:
            return np.zeros((len(vectors), len(self.texts)))
        return np.asarray(self.matrix @ np.asarray(vectors).T).T

    def _centres(self):
        """The neighbourhoods' centres, L2-normalised, largest neighbourhood first."""
        from sklearn.preprocessing import normalize

        if self.matrix is None:
            return np.zeros((1, 0))
        if self.groups == 1:
            return normalize(np.asarray(self.matrix.mean(axis=0)))
        import warnings

        from sklearn.cluster import KMeans
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            # Fewer distinct TF-IDF rows than groups (texts of the same
            # words): the extra centres duplicate others and are dropped below.
            warnings.simplefilter("ignore", ConvergenceWarning)
            km = KMeans(n_clusters=self.groups, n_init=10,
                        random_state=self.SEED).fit(self.matrix)
        centres = normalize(km.cluster_centers_)
        sizes = np.bincount(km.labels_, minlength=self.groups)
        # Largest first (a text with no known word goes to the largest);
        # ties by the first member's position in the pool.
        first = [int(np.flatnonzero(km.labels_ == g)[0]) if sizes[g] else len(self.texts)
                 for g in range(self.groups)]
        order = sorted(range(self.groups), key=lambda g: (-sizes[g], first[g]))
        return centres[[g for g in order if sizes[g]]]

    def _block(self, row, size):
        """Up to ``size`` pool indices for one centre: the classes in turn,
        each nearest the centre first, distinct texts, least similar first."""
        ranked = [members[np.argsort(-row[members], kind="stable")]
                  for members in self.by_class]
        ranked.sort(key=lambda members: -row[members[0]])
        picked, shown = [], set()
        for depth in range(max(len(r) for r in ranked)):
            for members in ranked:
                if depth < len(members) and len(picked) < size:
                    i = int(members[depth])
                    if str(self.texts[i]) not in shown:
                        picked.append(i)
                        shown.add(str(self.texts[i]))
        return self._order_block(picked, row)

    def _order_block(self, picked, row):
        return sorted(picked, key=lambda i: (row[i], -i))

    def group_of(self, queries):
        """The neighbourhood of each query (its nearest centre; ties: the
        larger neighbourhood)."""
        if self.matrix is None or len(self.centres) == 1:
            return [0] * len(queries)
        sims = np.asarray(self.vectorizer.transform(queries) @ self.centres.T)
        return [int(g) for g in np.argmax(sims, axis=1)]

    def nearest(self, queries):
        """A tuple of pool indices for each query: its block, then its own."""
        queries = list(queries)
        groups = self.group_of(queries)
        if self.per_text and self.matrix is not None:
            sims = (self.vectorizer.transform(queries) @ self.matrix.T).toarray()
        else:
            sims = np.zeros((len(queries), len(self.texts)))
        out = []
        for group, row in zip(groups, sims):
            block = self.blocks[group]
            shown = {str(self.texts[i]) for i in block}
            centre = self.centre_sims[group]
            # Nearest the text first; ties: nearer the centre, then pool order.
            candidates = np.lexsort((np.arange(len(self.texts)), -centre, -row))
            own = []
            for i in candidates.tolist():
                if len(own) == self.per_text:
                    break
                if str(self.texts[i]) not in shown:
                    own.append(i)
                    shown.add(str(self.texts[i]))
            out.append(tuple(block) + tuple(own[::-1]))
        return out


def _unique(values):
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


class PerTextRenderer:
    """Renders each text with its own examples (``'similar'`` and
    ``'grouped'`` selection).

    Parameters
    ----------
    selector : SimilarExamples or GroupedExamples
        ``selector.nearest(texts)`` gives each text's pool indices, in
        prompt order; ``selector.texts`` and ``selector.labels`` the pool.
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
