"""The fast backend: every label of a prompt in one forward pass, by a tree mask.

For a prompt ``p`` and a label with tokens ``t_1..t_k``::

    log P(label | p) = sum_i log softmax(logits at the position before t_i)[t_i]

The engine computes this exactly, for many prompts and all labels at once:

* the prompts' shared prefixes are run once each: the call's prompts form a
  prefix tree (:mod:`nbllm.engine.scoring.prompt_tree`), each shared span's keys
  and values are computed from its parent's and kept on the device (and
  between calls, in the model's prefix LRU), and the tree is walked depth
  first, the prompts below a span batched over its KV;
* each prompt is followed by the label trie's internal nodes (a leaf is
  predicted at its parent's column and never read, so it is not run).  A 4D
  attention mask makes each trie node see the prompt and its own trie
  ancestors only, so one forward pass scores every label;
* prompts are packed several to a row, as wide as the call's widest prompt
  (best fit decreasing), each seeing only its own columns and the prefix, so
  padding is left only at the ends of rows; the LM head runs only at the
  positions whose logits are needed (:func:`nbllm.engine.head.head_reads_only`);
* layers with a sliding window get a mask with the same window, measured in
  positions (a dict of masks keyed by layer type where the model mixes
  sliding and full layers; see :mod:`nbllm.engine.scoring.attention`).

Models whose attention a mask cannot reproduce (ALiBi, chunked or linear
attention) never reach this backend; :mod:`nbllm.engine.scoring.scorer` routes them to
the exact one, and checks this backend once per model before trusting it.
"""

import numpy as np
import torch
from transformers import DynamicCache

from .attention import attention_layout
from .batching import PASS_COST, deliver, longest_first
from .head import float32_label_logits, head_reads_only
from .gqa import native_gqa
from .prefix import (PrefixCaches, cache_kwarg, cache_tensors, count_positions,
                     expand_cache, kv_after, kv_joined, shared_prefix_length, span_key)
from .prompt_tree import plan_spans
from .trie import LabelTrie

# Default work per batch on each device type, in new tokens per forward pass
# and in float32 logits.  On 2 CPU cores about 1k tokens per pass measured a few
# percent faster than 2k and more (cache effects); on CUDA the token budget is
# sized from free memory (TreeMaskBackend._token_budget), this is its floor.
_TOKEN_BUDGET = {"cpu": 1024, "cuda": 65536}
_LOGIT_BUDGET = {"cpu": 2**26, "cuda": 2**29}
_MAX_ROWS = {"cpu": 64, "cuda": 512}
def plan_batches(lengths, n_internal, vocab_size, device_type, batch_size,
                 token_budget=None):
    """Group sample indices into batches, longest first, to keep padding small.

    Parameters
    ----------
    lengths : list of int
        Tokens per sample after the shared prefix.
    n_internal : int
        The label trie's internal nodes: each is a column of every row (its
        token is fed) and a kept logit row besides the prompt's last.
    batch_size : int or 'auto'
        Fixed rows per batch, or ``'auto'`` to fill a token and logit budget.
    token_budget : int or None
        Tokens per forward pass with 'auto'; None uses the device default.

    Returns
    -------
    list of list of int
    """
    kind = "cuda" if device_type == "cuda" else "cpu"
    token_budget = token_budget or _TOKEN_BUDGET[kind]

    def fits(rows, widest, newest):
        return (rows * widest <= token_budget
                and rows * (1 + n_internal) * vocab_size <= _LOGIT_BUDGET[kind]
                and rows <= _MAX_ROWS[kind])

    return longest_first([n + n_internal for n in lengths], batch_size, fits)


def pack_rows(widths, width, max_items=None):
    """Put items of ``widths`` columns into rows of ``width`` columns, best fit
    decreasing: each item, longest first, goes to the fullest row it fits in
    (a row takes at most ``max_items`` items).

    Returns
    -------
    list of list of int
        The items of each row, in the order they sit in it.
    """
    rows, by_room = [], {}  # by_room[r]: the rows with r columns left
    for i in sorted(range(len(widths)), key=lambda i: -widths[i]):
        room = next((r for r in range(widths[i], width + 1) if by_room.get(r)), None)
        if room is None:
            row, room = len(rows), width
            rows.append([])
        else:
            row = by_room[room].pop()
        rows[row].append(i)
        if max_items is None or len(rows[row]) < max_items:
            by_room.setdefault(room - widths[i], []).append(row)
    return rows


# Row widths tried when packing, in multiples of the widest prompt: a wider
# row fits short prompts together more tightly, at the price of attention
# over the row's other (masked) columns, which stays small below this width.
_PACK_FACTORS = (1, 2, 3, 4)
_PACK_MAX_WIDTH = 512


def plan_packed(lengths, trie_size, vocab_size, device_type, token_budget=None):
    """Pack prompts, several to a row, into forward passes within the budgets.

    Each prompt needs ``length + trie_size`` columns.  For a few row widths
    (multiples of the widest prompt) the prompts are packed by
    :func:`pack_rows` and the rows cut into passes by
    :func:`nbllm.engine.batching.longest_first` (a pass is as wide as its
    fullest row); the width that feeds the fewest positions, counting
    :data:`~nbllm.engine.batching.PASS_COST` per pass, wins.

    Returns
    -------
    list of list of list of int
        Per pass, per row, the prompts' indices.
    """
    kind = "cuda" if device_type == "cuda" else "cpu"
    token_budget = token_budget or _TOKEN_BUDGET[kind]
    widths = [n + trie_size for n in lengths]
    if not widths:
        return []
    per_prompt = (1 + trie_size) * vocab_size
    max_items = max(1, _LOGIT_BUDGET[kind] // per_prompt)
    best = None
    for factor in _PACK_FACTORS:
        width = max(widths) * factor
        if factor > 1 and width > _PACK_MAX_WIDTH:
            break
        rows = pack_rows(widths, width, max_items)
        filled = [sum(widths[i] for i in row) for row in rows]
        counts = [len(row) for row in rows]

        def fits(n_rows, widest, newest):
            return n_rows * widest <= token_budget and n_rows <= _MAX_ROWS[kind]

        passes = longest_first(filled, "auto", fits)
        passes = _within_logit_budget(passes, counts, max_items)
        cost = sum(len(p) * max(filled[r] for r in p) + PASS_COST for p in passes)
        if best is None or cost < best[0]:
            best = (cost, [[rows[r] for r in p] for p in passes])
    return best[1]


def _within_logit_budget(passes, counts, max_items):
    """Split passes whose rows hold more than ``max_items`` prompts in all."""
    out = []
    for rows in passes:
        current, items = [], 0
        for r in rows:
            if current and items + counts[r] > max_items:
                out.append(current)
                current, items = [], 0
            current.append(r)
            items += counts[r]
        out.append(current)
    return out


class TreeMaskBackend:
    """Scores label token sequences after prompts with one tree-masked pass.

    Parameters
    ----------
    loaded : nbllm.engine.loading.models.LoadedModel
        The model to score with; its ``state`` dict holds the prefix KV caches
        so that every estimator on the same model shares them.
    prefix_caches : dict or None
        Another LRU for the prefix KV caches (the self-check uses its own, so
        that its probe prompts never evict a user's prefix).

    Raises
    ------
    nbllm.engine.scoring.attention.UnsupportedAttention
        If a tree mask cannot reproduce the model's attention.
    """

    def __init__(self, loaded, prefix_caches=None):
        self.loaded = loaded
        self.model = loaded.model
        self.device = loaded.device
        self.layout = attention_layout(self.model.config)
        self.prefix_caches = (loaded.state.setdefault("prefix_kv", {})
                              if prefix_caches is None else prefix_caches)
        self.forward_passes = 0
        self.oom_retries = 0
        self.row_cap = None  # set after an out-of-memory error
        self._cache_kwarg = cache_kwarg(self.model)

    def score(self, prompt_ids, label_ids, batch_size="auto", prefix_hint=None,
              on_batch=None, progress=None, min_saving=None):
        """Return log P(label | prompt) for every prompt and label.

        Same contract as :meth:`nbllm.engine.scoring.scorer.LabelScorer.score`.
        """
        n = len(prompt_ids)
        trie = LabelTrie(label_ids)
        out = np.empty((n, len(label_ids)), dtype=np.float64)
        if n == 0:
            return out
        root = plan_spans(prompt_ids, shared_prefix_length(prompt_ids, prefix_hint),
                          min_saving)
        vocab = getattr(self.model.config, "vocab_size", 32000)
        batches = {}
        for span in root.walk():
            lengths = [len(prompt_ids[r]) - span.end for r in span.rows]
            if batch_size == "auto":
                planned = plan_packed(lengths, len(trie.internal), vocab, self.device.type,
                                      token_budget=self._token_budget(span.end))
            else:
                # A fixed batch size counts prompts: one to a row.
                planned = [[[i] for i in batch] for batch in plan_batches(
                    lengths, len(trie.internal), vocab, self.device.type, batch_size)]
            batches[span] = [[[span.rows[i] for i in row] for row in rows]
                             for rows in planned]
        tree = _TrieTensors(trie, self.device)
        bar = (progress(sum(len(b) for b in batches.values()), n)
               if progress is not None else None)
        try:
            with torch.inference_mode():
                # Depth first: only the KV of the spans on the current path
                # (and the parents of siblings still to come) is alive.
                todo = [(root, None, None)]
                while todo:
                    span, parent, parent_kv = todo.pop()
                    kv = self._span_kv(span, parent, parent_kv)
                    suffixes = {r: prompt_ids[r][span.end:] for r in span.rows}
                    for planned in batches.pop(span):
                        for indices, logprobs in self._score_with_backoff(
                            planned, suffixes, span.end, kv, tree
                        ):
                            deliver(out, indices, logprobs, on_batch, bar)
                    todo.extend((child, span, kv) for child in reversed(span.children))
        finally:
            if bar is not None:
                bar.close()
        return out

    def _token_budget(self, prefix_len):
        """Tokens per forward pass: fixed on cpu, sized to free memory on cuda."""
        if self.device.type != "cuda":
            return None
        free, _ = torch.cuda.mem_get_info(self.device)
        cfg = self.model.config
        hidden = getattr(cfg, "hidden_size", 4096)
        layers = getattr(cfg, "num_hidden_layers", 32)
        heads = getattr(cfg, "num_attention_heads", 32)
        kv_dim = getattr(cfg, "num_key_value_heads", heads) * (hidden // heads)
        size = torch.finfo(self.loaded.dtype).bits // 8
        # A new token holds its activations (~16 hidden vectors in flight) and
        # its keys and values in every layer; each row also copies the prefix.
        per_token = size * (16 * hidden + 2 * layers * kv_dim)
        per_token += size * 2 * layers * kv_dim * prefix_len // 32
        budget = int(0.4 * free / per_token)
        return max(_TOKEN_BUDGET["cpu"], min(budget, 8 * _TOKEN_BUDGET["cuda"]))

    def _score_with_backoff(self, rows, suffixes, prefix_len, prefix_kv, tree):
        """Score packed rows, halving the pass on out-of-memory errors instead of failing.

        After an OOM, later passes are cut to the number of rows that worked,
        so the error is paid once per run rather than once per pass.  Yields
        ``(indices, logprobs)`` per pass.
        """
        if self.row_cap is not None and len(rows) > self.row_cap:
            half = self.row_cap
            return (self._score_with_backoff(rows[:half], suffixes, prefix_len,
                                             prefix_kv, tree)
                    + self._score_with_backoff(rows[half:], suffixes, prefix_len,
                                               prefix_kv, tree))
        try:
            indices = [i for row in rows for i in row]
            packed = [[suffixes[i] for i in row] for row in rows]
            return [(indices, self._score_batch(packed, prefix_len, prefix_kv, tree))]
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not _is_out_of_memory(exc):
                raise
            if len(rows) == 1:
                if len(rows[0]) == 1:
                    raise
                # One packed row too many: its prompts go one to a row.
                rows = [[i] for i in rows[0]]
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.oom_retries += 1
        self.row_cap = max(1, len(rows) // 2)
        return self._score_with_backoff(rows, suffixes, prefix_len, prefix_kv, tree)

    def _span_kv(self, span, parent, parent_kv):
        """A span's KV: its own tokens' part kept from an earlier call and
        joined to its parent's KV, or its own tokens run over its parent's KV
        (None for an empty span).  The LRU keeps each span's own part once,
        not a copy of its whole path per span."""
        if not span.tokens:
            return None
        caches = PrefixCaches(self.prefix_caches)
        start = parent.end if parent is not None else 0
        key = span_key(span.tokens, start)
        own = caches.lookup(key)
        if own is not None:
            return own if start == 0 else kv_joined(parent_kv, own)
        kv = self._extend(parent_kv, span.tokens[:start], span.tokens[start:])
        caches.keep(key, kv if start == 0 else kv_after(kv, start))
        return kv

    def _extend(self, kv, before, tokens):
        """The KV of ``before + tokens``, given ``kv`` for ``before`` (or None).

        The new tokens run in one row, in pieces of at most the token budget
        (so the mask stays small for a long prompt), each attending to every
        key before it under the same windows as the scoring rows.
        """
        device, start = self.device, len(before)
        cache = expand_cache(kv, 1) if kv is not None else DynamicCache()
        step = self._token_budget(start) or _TOKEN_BUDGET["cpu"]
        for offset in range(0, len(tokens), step):
            piece = tokens[offset:offset + step]
            first = start + offset
            positions = torch.arange(first, first + len(piece), device=device)[None, :]
            key_positions = torch.arange(first + len(piece), device=device)[None, :]
            allowed = key_positions[:, None, :] <= positions[:, :, None]
            with native_gqa(self.model, device):
                out = self.model(
                    input_ids=torch.tensor([piece], device=device),
                    attention_mask=self._masks(allowed, positions, key_positions),
                    position_ids=positions, use_cache=True, logits_to_keep=1,
                    **{self._cache_kwarg: cache},
                )
            cache = out["cache"] if "cache" in out else out["past_key_values"]
            self.forward_passes += 1
            count_positions(self.loaded, len(piece))
        return cache_tensors(cache)

    def _score_batch(self, rows, prefix_len, prefix_kv, tree):
        """Log-probabilities of every label after each prompt of packed ``rows``.

        ``rows[r]`` lists the suffixes (token ids after the prefix) that row
        ``r`` holds side by side, each followed by the trie's columns; the
        rest of a row is padding.  Returns one row of label log-probabilities
        per suffix, in row order.
        """
        device = self.device
        width = max(sum(len(s) + tree.size for s in row) for row in rows)
        # Per column: which prompt of the row it belongs to (-1: padding),
        # its position after the prefix, and its trie node (-1: a prompt token).
        segment = torch.full((len(rows), width), -1, dtype=torch.long)
        position = torch.zeros((len(rows), width), dtype=torch.long)
        node = torch.full((len(rows), width), -1, dtype=torch.long)
        input_ids = torch.zeros((len(rows), width), dtype=torch.long)
        kept_rows, kept_cols = [], []
        for r, row in enumerate(rows):
            col = 0
            for k, s in enumerate(row):
                n = len(s)
                end = col + n + tree.size
                input_ids[r, col:col + n] = torch.tensor(s)
                segment[r, col:end] = k
                position[r, col:col + n] = torch.arange(n)
                position[r, col + n:end] = n - 1 + tree.depths
                node[r, col + n:end] = torch.arange(tree.size)
                # The prompt's last column predicts the first label token,
                # each trie column the tokens below it.
                kept_rows.append([r] * (1 + tree.size))
                kept_cols.append(list(range(col + n - 1, end)))
                col = end
        input_ids, segment, node = input_ids.to(device), segment.to(device), node.to(device)
        positions = prefix_len + position.to(device)
        if tree.size:
            input_ids = torch.where(node >= 0, tree.inputs[node.clamp(min=0)], input_ids)

        cols = torch.arange(width, device=device)
        real = segment >= 0
        same = (segment[:, :, None] == segment[:, None, :]) & real[:, None, :]
        is_prompt_key = (node < 0) & real
        # allowed[b, q, k]: may query column q attend to key column k?  The
        # prompt's tokens before it, and for a trie column its own ancestors.
        allowed = same & is_prompt_key[:, None, :] & (cols[:, None] >= cols[None, :])
        if tree.size:  # single-token labels have no trie columns
            both_trie = (node[:, :, None] >= 0) & (node[:, None, :] >= 0)
            ancestors = tree.ancestors_or_self[node.clamp(min=0)[:, :, None],
                                               node.clamp(min=0)[:, None, :]]
            allowed |= same & both_trie & ancestors
        # Padding attends to itself only, so softmax stays finite.
        allowed |= ~real[:, :, None] & torch.eye(width, dtype=torch.bool, device=device)
        allowed = torch.cat(
            [real[:, :, None].expand(len(rows), width, prefix_len), allowed], 2
        )
        key_positions = torch.cat([
            torch.arange(prefix_len, device=device)[None, :].expand(len(rows), prefix_len),
            positions,
        ], 1)
        mask = self._masks(allowed, positions, key_positions)
        kept_rows = torch.tensor(kept_rows, device=device)
        kept_cols = torch.tensor(kept_cols, device=device)

        with (native_gqa(self.model, device),
              head_reads_only(self.model, kept_rows, kept_cols),
              float32_label_logits(self.model, tree.columns)):
            logits = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                use_cache=prefix_kv is not None,
                **{self._cache_kwarg: expand_cache(prefix_kv, len(rows))},
                logits_to_keep=0,
            ).logits
        self.forward_passes += 1
        count_positions(self.loaded, len(rows) * width)
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        # Node n's token is predicted at its parent's slot (slot 0: the prompt).
        node_logprobs = logprobs[:, tree.parent_slots, tree.tokens]
        return node_logprobs @ tree.path_matrix

    def _masks(self, allowed, positions, key_positions):
        """Additive 4D masks from ``allowed``, one per attention window.

        Returns one tensor, or a dict keyed by layer type for models that
        declare ``layer_types``.  A sliding window of ``w`` lets a query at
        position ``q`` see keys at positions ``k`` with ``q - k < w``, as in
        transformers' own masks.
        """
        # The weights' dtype now, not the loaded one: the self-check runs a
        # half-precision model in float32 for a while.
        dtype = self.model.dtype
        by_window = {}
        for window in set(self.layout.windows.values()):
            seen = allowed
            if window is not None:
                distance = positions[:, :, None] - key_positions[:, None, :]
                seen = allowed & (distance < window)
            mask = torch.zeros(seen.shape, dtype=dtype, device=seen.device)
            mask.masked_fill_(~seen, torch.finfo(dtype).min)
            by_window[window] = mask[:, None, :, :]
        if not self.layout.per_type:
            return next(iter(by_window.values()))
        return {kind: by_window[w] for kind, w in self.layout.windows.items()}


def _is_out_of_memory(exc):
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class _TrieTensors:
    """The label trie as device tensors, built once per scoring call.

    Only the internal nodes (those with children) are fed to the model: a
    leaf's token is predicted at its parent's column, and no later token
    attends to it, so running it would compute keys, values and a hidden
    state nothing reads.

    Attributes
    ----------
    size : int
        The number of input columns, one per internal node.
    inputs : torch.Tensor of shape (size,)
        Each internal node's token.
    depths : torch.Tensor of shape (size,), on the host
        Each internal node's depth in the trie (1-based).
    ancestors_or_self : torch.Tensor of shape (size, size), bool
        Which internal nodes each one may attend to.
    tokens, parent_slots : torch.Tensor of shape (n_nodes,)
        Every node's token and the kept logit column that predicts it (0:
        the prompt's last token; ``k``: the ``k``-th internal node).
    columns : torch.Tensor
        The distinct label tokens.
    path_matrix : torch.Tensor of shape (n_nodes, n_labels)
        Which nodes make up each label.
    """

    def __init__(self, trie, device):
        internal = trie.internal
        self.size = len(internal)
        self.inputs = torch.tensor([trie.tokens[n] for n in internal], dtype=torch.long,
                                   device=device)
        # On the host: the rows' positions are laid out there.
        self.depths = torch.tensor([trie.depths[n] for n in internal], dtype=torch.long)
        column = {node: i for i, node in enumerate(internal)}
        anc = torch.zeros(self.size, self.size, dtype=torch.bool)
        for node in internal:
            # Every ancestor of a node has a child, so it is internal too.
            anc[column[node], [column[a] for a in trie.ancestors_or_self(node)]] = True
        self.ancestors_or_self = anc.to(device)
        self.tokens = torch.tensor(trie.tokens, device=device)
        # Kept logit row 0 is the prompt's last token; row k + 1 is column k.
        self.parent_slots = torch.tensor(
            [0 if p < 0 else column[p] + 1 for p in trie.parents], device=device
        )
        self.columns = torch.tensor(sorted(set(trie.tokens)), device=device)
        paths = torch.zeros(len(trie), len(trie.paths), dtype=torch.float32)
        for label, path in enumerate(trie.paths):
            paths[path, label] = 1.0
        self.path_matrix = paths.to(device)
