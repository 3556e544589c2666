"""The plain backend: ordinary forward passes over prompt + label, batched as rows.

Nothing here depends on how a model implements attention or positions: each
row is one prompt followed by a label's tokens, right-padded, with the usual
2D padding mask and the model's own position ids.  Right padding never
changes the logits of the real tokens in a causal model, so this is exact for
any decoder-only model, ALiBi ones included.

* Labels share rows: one row per distinct "stem" (a label's tokens but its
  last), since the last token is read from the row's final distribution.  Two
  single-token labels cost one row; "very negative" and "very positive" one.
* ``use_prefix=True`` computes the prefix that all of a call's prompts share
  once and passes it as the model's own KV cache (the usual generation
  path).  Only that one prefix: nested ones (few-shot blocks shared by some
  prompts) are the tree-mask backend's (:mod:`nbllm.engine.scoring.prompt_tree`);
  this path is the fallback for models a tree mask cannot serve, and stays
  plain.
* ``pad_free=True`` is the plain path itself: rows of equal length only, no
  mask, no cache.  The self-check compares every faster path with it.
"""

import numpy as np
import torch

from .batching import deliver, longest_first
from .head import float32_label_logits
from .prefix import (PrefixCaches, accepts, cache_kwarg, count_positions, expand_cache,
                     shared_prefix_length)
from .trie import LabelTrie

# Rows and tokens per forward pass, and float32 logits held at once.
_TOKEN_BUDGET = {"cpu": 2048, "cuda": 65536}
_LOGIT_BUDGET = {"cpu": 2**26, "cuda": 2**29}
_MAX_ROWS = {"cpu": 64, "cuda": 1024}


def plan_groups(widths, rows_each, kept_each, vocab_size, device_type, batch_size):
    """Group prompt indices (longest first) so each forward pass fits the budgets.

    Parameters
    ----------
    widths : list of int
        Tokens per row for each prompt.
    rows_each : int
        Rows each prompt adds to a pass.
    kept_each : int
        Logit positions kept per row.
    batch_size : int or 'auto'
        Prompts per pass, or 'auto' to fill the budgets.

    Returns
    -------
    list of list of int
    """
    kind = "cuda" if device_type == "cuda" else "cpu"

    def fits(count, widest, newest):
        rows = count * rows_each
        # Kept logits run from the newest row's first label position to the end.
        return (rows * widest <= _TOKEN_BUDGET[kind]
                and rows * (kept_each + widest - newest) * vocab_size <= _LOGIT_BUDGET[kind]
                and rows <= _MAX_ROWS[kind])

    return longest_first(widths, batch_size, fits)


class LabelRows:
    """The labels as rows: distinct stems, and each label's tokens as tensors.

    Attributes
    ----------
    stems : list of list of int
        The distinct label stems (all tokens but the last).
    stem_of_label : torch.Tensor of shape (n_labels,)
    tokens : torch.Tensor of shape (n_labels, depth)
        Each label's tokens, padded with 0.
    valid : torch.Tensor of shape (n_labels, depth)
        Where ``tokens`` holds a real token.
    columns : torch.Tensor
        The distinct label tokens (the logits that decide the labels).
    """

    def __init__(self, label_ids, device):
        depth = LabelTrie(label_ids).max_depth  # also rejects empty labels
        index = {}
        for ids in label_ids:
            index.setdefault(tuple(ids[:-1]), len(index))
        self.stems = [list(stem) for stem in index]
        self.stem_of_label = torch.tensor([index[tuple(ids[:-1])] for ids in label_ids],
                                          device=device)
        self.depth = depth
        self.tokens = torch.tensor([list(ids) + [0] * (depth - len(ids)) for ids in label_ids],
                                   device=device)
        self.valid = torch.tensor([[j < len(ids) for j in range(depth)] for ids in label_ids],
                                  device=device)
        # From the lists, not the device tensor: torch.unique waits for a GPU.
        self.columns = torch.tensor(sorted({t for ids in label_ids for t in ids}), device=device)

    def picked(self, logprobs, starts):
        """Each row's log-probability of each label token, by position.

        Parameters
        ----------
        logprobs : torch.Tensor of shape (rows, columns, vocab)
        starts : torch.Tensor of shape (rows,)
            The column that predicts the first label token in each row.

        Returns
        -------
        torch.Tensor of shape (rows, n_labels, depth)
        """
        rows = logprobs.shape[0]
        cols = starts[:, None] + torch.arange(self.depth, device=starts.device)[None, :]
        cols = cols.clamp(max=logprobs.shape[1] - 1)
        at = logprobs[torch.arange(rows, device=starts.device)[:, None], cols]
        # at: (rows, depth, vocab); pick each label's j-th token at depth j.
        index = self.tokens.T[None, :, :].expand(rows, -1, -1)
        return at.gather(2, index).transpose(1, 2)

    def totals(self, picked, n_prompts):
        """log P(label | prompt): sum each label's tokens along its own stem's row."""
        n_stems = len(self.stems)
        base = torch.arange(n_prompts, device=picked.device)[:, None] * n_stems
        rows = base + self.stem_of_label[None, :]  # (n_prompts, n_labels)
        labels = torch.arange(len(self.stem_of_label), device=picked.device)[None, :]
        values = picked[rows, labels]  # (n_prompts, n_labels, depth)
        return (values * self.valid[None, :, :]).sum(dim=2)


def padded(rows, device, pad_id=0):
    """Right-padded ids and their 0/1 attention mask, as device tensors."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, :len(row)] = 1
    return ids.to(device), mask.to(device)


class RowBackend:
    """Shared loop of the row backends: plan, score a group, report it.

    Subclasses implement ``_width(prompt, depth)`` and
    ``_score_group(prompts, rows)``, returning a tensor of shape
    (len(prompts), n_labels).
    """

    def __init__(self, loaded, pad_free=False):
        self.loaded = loaded
        self.model = loaded.model
        self.device = loaded.device
        self.pad_free = pad_free
        self.forward_passes = 0

    def score(self, prompt_ids, label_ids, batch_size="auto", prefix_hint=None,
              on_batch=None, progress=None, min_saving=None):
        """Return log P(label | prompt) for every prompt and label.

        Same contract as :meth:`nbllm.engine.scoring.scorer.LabelScorer.score`.
        """
        rows = LabelRows(label_ids, self.device)
        out = np.empty((len(prompt_ids), len(label_ids)), dtype=np.float64)
        if not prompt_ids:
            return out
        with torch.inference_mode():
            prompts = self._prepare(prompt_ids, prefix_hint)
            groups = plan_groups(
                [self._width(p, rows.depth) for p in prompts], len(rows.stems), rows.depth,
                getattr(self.model.config, "vocab_size", 32000), self.device.type,
                batch_size,
            )
            bar = progress(len(groups), len(prompt_ids)) if progress is not None else None
            try:
                for group in groups:
                    deliver(out, group, self._score_group([prompts[i] for i in group], rows),
                            on_batch, bar)
            finally:
                if bar is not None:
                    bar.close()
        return out

    def _prepare(self, prompt_ids, prefix_hint):
        """The prompts as this backend scores them (the exact one cuts the prefix)."""
        return prompt_ids

    def _in_passes(self, rows, run):
        """``run(indices)`` over all rows at once, or per row length when ``pad_free``.

        Returns the per-row results in row order.
        """
        if not self.pad_free:
            return run(list(range(len(rows))))
        by_length = {}
        for i, row in enumerate(rows):
            by_length.setdefault(len(row), []).append(i)
        parts, order = [], []
        for indices in by_length.values():
            parts.append(run(indices))
            order.extend(indices)
        merged = torch.cat(parts)
        inverse = torch.empty(len(order), dtype=torch.long, device=merged.device)
        inverse[torch.tensor(order, device=merged.device)] = torch.arange(
            len(order), device=merged.device)
        return merged[inverse]


class ExactBackend(RowBackend):
    """Decoder-only models: ordinary forward passes, one row per (prompt, stem).

    Parameters
    ----------
    loaded : nbllm.engine.loading.models.LoadedModel
    pad_free : bool
        The plain path: rows of equal length only, no mask and no cache.
    use_prefix : bool
        Compute the shared prefix once and pass it as the model's KV cache
        (ignored with ``pad_free``).
    """

    def __init__(self, loaded, pad_free=False, use_prefix=True):
        super().__init__(loaded, pad_free)
        self.use_prefix = use_prefix and not pad_free
        self.prefix_kv, self.prefix_len = None, 0
        # The model's prefix LRU, shared with the tree-mask backend.
        self.prefix_caches = loaded.state.setdefault("prefix_kv", {})
        # Read once: inspecting the forward signature per pass costs time.
        self._cache_kwarg = cache_kwarg(self.model)
        self._keeps_logits = accepts(self.model, "logits_to_keep")

    def _prepare(self, prompt_ids, prefix_hint):
        if not self.use_prefix:
            return prompt_ids
        self.prefix_len = shared_prefix_length(prompt_ids, prefix_hint)
        self.prefix_kv, passes = PrefixCaches(self.prefix_caches).get(
            self.model, prompt_ids[0][:self.prefix_len], self._cache_kwarg)
        self.forward_passes += passes
        count_positions(self.loaded, passes * self.prefix_len)
        return [p[self.prefix_len:] for p in prompt_ids]

    def _width(self, prompt, depth):
        return len(prompt) + depth - 1

    def _score_group(self, prompts, rows):
        pairs = [(p, s) for p in range(len(prompts)) for s in range(len(rows.stems))]
        row_ids = [prompts[p] + rows.stems[s] for p, s in pairs]
        starts = [len(prompts[p]) - 1 for p, _ in pairs]

        def run(indices):
            ids, mask = padded([row_ids[i] for i in indices], self.device)
            first = min(starts[i] for i in indices)
            kept = torch.arange(first, ids.shape[1], device=self.device)
            extra = {}
            if self.prefix_kv is not None:
                ones = torch.ones((len(indices), self.prefix_len), dtype=mask.dtype,
                                  device=self.device)
                extra["attention_mask"] = torch.cat([ones, mask], 1)
                extra[self._cache_kwarg] = expand_cache(self.prefix_kv, len(indices))
                extra["use_cache"] = True
            else:
                extra["use_cache"] = False
                if not self.pad_free:
                    extra["attention_mask"] = mask
            with float32_label_logits(self.model, rows.columns):
                if self._keeps_logits:
                    logits = self.model(input_ids=ids, logits_to_keep=kept, **extra).logits
                else:
                    logits = self.model(input_ids=ids, **extra).logits[:, kept]
            self.forward_passes += 1
            count_positions(self.loaded, ids.numel())
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            local = torch.tensor([starts[i] - first for i in indices], device=self.device)
            return rows.picked(logprobs, local)

        return rows.totals(self._in_passes(row_ids, run), len(prompts))
