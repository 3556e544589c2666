"""The fast backend: every label of a prompt in one forward pass, by a tree mask.

For a prompt ``p`` and a label with tokens ``t_1..t_k``::

    log P(label | p) = sum_i log softmax(logits at the position before t_i)[t_i]

The engine computes this exactly, for many prompts and all labels at once:

* the prompts' shared prefixes are run once each: the call's prompts form a
  prefix tree (:mod:`nbllm.engine.scoring.prompt_tree`), each shared span's keys
  and values are computed from its parent's and kept on the device (and
  between calls, in the model's prefix LRU), and the tree is walked depth
  first, the prompts below a span batched over its KV;
* each batch row holds one prompt's remaining tokens followed by the label
  trie's internal nodes (a leaf is predicted at its parent's column and never
  read, so it is not run).  A 4D attention mask makes each trie node see the
  prompt and its own trie ancestors only, so one forward pass scores every
  label;
* rows are left-padded, so the positions whose logits are needed are the same
  in every row, and the LM head only runs there (``logits_to_keep``);
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
from .batching import deliver, longest_first
from .head import float32_label_logits
from .gqa import native_gqa
from .prefix import (PrefixCaches, cache_kwarg, cache_tensors, count_positions,
                     expand_cache, shared_prefix_length)
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
              on_batch=None, progress=None):
        """Return log P(label | prompt) for every prompt and label.

        Same contract as :meth:`nbllm.engine.scoring.scorer.LabelScorer.score`.
        """
        n = len(prompt_ids)
        trie = LabelTrie(label_ids)
        out = np.empty((n, len(label_ids)), dtype=np.float64)
        if n == 0:
            return out
        root = plan_spans(prompt_ids, shared_prefix_length(prompt_ids, prefix_hint))
        vocab = getattr(self.model.config, "vocab_size", 32000)
        batches = {}
        for span in root.walk():
            batches[span] = [[span.rows[i] for i in batch] for batch in plan_batches(
                [len(prompt_ids[r]) - span.end for r in span.rows], len(trie.internal),
                vocab, self.device.type, batch_size,
                token_budget=self._token_budget(span.end),
            )]
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

    def _score_with_backoff(self, indices, suffixes, prefix_len, prefix_kv, tree):
        """Score rows, halving the batch on out-of-memory errors instead of failing.

        After an OOM, later batches are cut to the size that worked, so the
        error is paid once per run rather than once per batch.
        """
        if self.row_cap is not None and len(indices) > self.row_cap:
            half = self.row_cap
            return (self._score_with_backoff(indices[:half], suffixes, prefix_len,
                                             prefix_kv, tree)
                    + self._score_with_backoff(indices[half:], suffixes, prefix_len,
                                               prefix_kv, tree))
        try:
            rows = [suffixes[i] for i in indices]
            return [(indices, self._score_batch(rows, prefix_len, prefix_kv, tree))]
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if len(indices) == 1 or not _is_out_of_memory(exc):
                raise
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.oom_retries += 1
        self.row_cap = max(1, len(indices) // 2)
        return self._score_with_backoff(indices, suffixes, prefix_len, prefix_kv, tree)

    def _span_kv(self, span, parent, parent_kv):
        """A span's KV: kept from an earlier call, or its own tokens run over
        its parent's KV (None for an empty span)."""
        if not span.tokens:
            return None
        caches = PrefixCaches(self.prefix_caches)
        kv = caches.lookup(span.tokens)
        if kv is None:
            start = parent.end if parent is not None else 0
            kv = self._extend(parent_kv, span.tokens[:start], span.tokens[start:])
            caches.keep(span.tokens, kv)
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

    def _score_batch(self, suffixes, prefix_len, prefix_kv, tree):
        rows, longest = len(suffixes), max(len(s) for s in suffixes)
        width = longest + tree.size
        device = self.device
        lengths = torch.tensor([len(s) for s in suffixes], device=device)
        # Left-pad each suffix so that every row's last prompt token sits at
        # column ``longest - 1`` and the trie starts at column ``longest``.
        pad_id = 0
        input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
        for r, s in enumerate(suffixes):
            input_ids[r, longest - len(s):longest] = torch.tensor(s)
        input_ids = input_ids.to(device)
        input_ids[:, longest:] = tree.inputs

        cols = torch.arange(width, device=device)
        start = (longest - lengths)[:, None]  # first real column per row
        is_prompt_col = (cols[None, :] >= start) & (cols[None, :] < longest)
        positions = prefix_len + (cols[None, :] - start).clamp(min=0)
        positions[:, longest:] = prefix_len + lengths[:, None] + tree.depths[None, :] - 1

        # allowed[b, q, k]: may query column q attend to key column k?
        causal = cols[:, None] >= cols[None, :]
        allowed = is_prompt_col[:, None, :] & causal[None, :, :]
        allowed[:, longest:, longest:] = tree.ancestors_or_self
        is_pad = ~is_prompt_col[:, :longest]
        # Padding rows attend to themselves only, so softmax stays finite.
        allowed[:, :longest, :longest] |= (
            is_pad[:, :, None] & torch.eye(longest, dtype=torch.bool, device=device)
        )
        prefix_visible = torch.cat(
            [~is_pad, torch.ones(rows, tree.size, dtype=torch.bool, device=device)], 1
        )
        allowed = torch.cat(
            [prefix_visible[:, :, None].expand(rows, width, prefix_len), allowed], 2
        )
        key_positions = torch.cat([
            torch.arange(prefix_len, device=device)[None, :].expand(rows, prefix_len),
            positions,
        ], 1)
        mask = self._masks(allowed, positions, key_positions)

        with native_gqa(self.model, device), float32_label_logits(self.model, tree.columns):
            logits = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                use_cache=prefix_kv is not None,
                **{self._cache_kwarg: expand_cache(prefix_kv, rows)},
                # The prompt's last column and every trie column.
                logits_to_keep=tree.size + 1,
            ).logits
        self.forward_passes += 1
        count_positions(self.loaded, rows * width)
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
    inputs, depths : torch.Tensor of shape (size,)
        Each internal node's token and depth in the trie (1-based).
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
        self.depths = torch.tensor([trie.depths[n] for n in internal], dtype=torch.long,
                                   device=device)
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
