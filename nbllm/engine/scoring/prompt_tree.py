"""The prompts of one call as a tree over their token ids: what to compute once.

Prompts that start with the same tokens need those tokens' keys and values
only once.  The call's prompts are merged into a radix tree (SGLang's
RadixAttention and BatchLLM do the same for a serving batch); a node of the
tree that enough prompts go through becomes a :class:`Span`, whose KV is
computed once, from its parent span's KV, and reused by every prompt below
it.  The scorer walks the spans depth first, so only the KV of the current
path is alive, and batches the prompts of a span (siblings) over that KV.

Nothing is approximated: a prompt's row sees exactly the tokens before it,
whether they come from a span's KV or from the row itself.  A shared run of
tokens too short to pay for a forward pass of its own (see
:data:`MIN_SAVING`) stays in each prompt's row.
"""

# A shared run of tokens becomes a span of its own (one extra forward pass,
# one row wide) only when it spares at least this many positions in the rows
# below it: on 2 CPU cores a pass costs about as much as this many positions.
MIN_SAVING = 16


class Span:
    """A prefix whose keys and values are computed once for the prompts below it.

    Attributes
    ----------
    tokens : tuple of int
        The prefix, from the prompts' first token.
    rows : list of int
        Prompts scored directly over this span's KV: their row holds what
        follows ``tokens``.
    children : list of Span
        Longer spans starting with ``tokens``.
    """

    def __init__(self, tokens):
        self.tokens, self.rows, self.children = tuple(tokens), [], []

    @property
    def end(self):
        """The span's length in tokens (where its rows' own tokens start)."""
        return len(self.tokens)

    def walk(self):
        """This span and every span below it, depth first (parents first)."""
        stack = [self]
        while stack:
            span = stack.pop()
            yield span
            stack.extend(reversed(span.children))

    def __repr__(self):
        return f"Span({self.end} tokens, {len(self.rows)} rows, {len(self.children)} below)"


def plan_spans(prompt_ids, root_length, min_saving=None):
    """The spans to compute for one call's prompts.

    Parameters
    ----------
    prompt_ids : list of list of int
        The prompts, each at least one token long.
    root_length : int
        Tokens every prompt shares that form the root span (the template's
        head, cached across calls); at most each prompt's length minus one.
    min_saving : int or None
        Positions a shared run must spare to become a span of its own
        (None: :data:`MIN_SAVING`).

    Returns
    -------
    Span
        The root; every prompt index is in exactly one span's ``rows``, and
        every prompt keeps at least its last token in its row (that token's
        logits predict the first label token).
    """
    min_saving = MIN_SAVING if min_saving is None else min_saving
    root = Span(prompt_ids[0][:root_length]) if prompt_ids else Span(())
    # Each entry: the span the prompts hang from, the prompts, and the tokens
    # they are known to share.
    todo = [(root, list(range(len(prompt_ids))), root_length)]
    while todo:
        anchor, members, depth = todo.pop()
        if len(members) == 1:
            anchor.rows.append(members[0])
            continue
        end = _shared_end(prompt_ids, members, depth)
        if end > anchor.end and (len(members) - 1) * (end - anchor.end) >= min_saving:
            span = Span(prompt_ids[members[0]][:end])
            anchor.children.append(span)
            anchor = span
        branches = {}
        for i in members:
            if len(prompt_ids[i]) - 1 == end:
                anchor.rows.append(i)
            else:
                branches.setdefault(prompt_ids[i][end], []).append(i)
        # Reversed, so that the stack takes the branches in first-seen order.
        todo.extend((anchor, group, end + 1) for group in reversed(list(branches.values())))
    for span in root.walk():
        span.rows.sort()
    return root


def _shared_end(prompt_ids, members, depth):
    """How far past ``depth`` the members' prompts agree (each keeping one
    token of its own)."""
    first = prompt_ids[members[0]]
    limit = min(len(prompt_ids[i]) for i in members) - 1
    end = depth
    while end < limit:
        token = first[end]
        if any(prompt_ids[i][end] != token for i in members):
            break
        end += 1
    return end


def unique_positions(prompt_ids):
    """The distinct token prefixes of the prompts: the positions a perfect
    prefix sharing computes, each once (the ideal the benchmarks compare with)."""
    root, count = {}, 0
    for ids in prompt_ids:
        node = root
        for token in ids:
            child = node.get(token)
            if child is None:
                child = node[token] = {}
                count += 1
            node = child
    return count
