"""The plain backend: ordinary forward passes over prompt + label, batched as rows.

Nothing here depends on how a model implements attention or positions: each
row is one prompt followed by one label, right-padded, with the usual 2D
padding mask and the model's own position ids.  Right padding never changes
the logits of the real tokens in a causal model, so this is exact for any
decoder-only model, ALiBi ones included.  ``pad_free=True`` goes one step
further (rows of equal length only, no mask at all) for a model that would
mishandle even padding.

Labels that are a prefix of another label are read off the longer label's row
(the trie's leaves), so shared label prefixes cost nothing extra.

:func:`plain_logprobs` is the reference the self-check compares with: one
forward pass per (prompt, label), nothing batched or shared.
"""

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
    order = sorted(range(len(widths)), key=lambda i: -widths[i])
    groups, current = [], []
    for i in order:
        rows = (len(current) + 1) * rows_each
        widest = widths[current[0]] if current else widths[i]
        if batch_size == "auto":
            too_big = current and (
                rows * widest > _TOKEN_BUDGET[kind]
                or rows * (kept_each + widest - widths[i]) * vocab_size > _LOGIT_BUDGET[kind]
                or rows > _MAX_ROWS[kind]
            )
        else:
            too_big = len(current) + 1 > batch_size
        if too_big:
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups


def leaf_logprobs(logprobs, starts, leaf_tokens):
    """Cumulative log-probabilities along each row's label tokens.

    Parameters
    ----------
    logprobs : torch.Tensor of shape (rows, columns, vocab)
    starts : torch.Tensor of shape (rows,)
        The column whose distribution predicts each row's first label token.
    leaf_tokens : torch.Tensor of shape (rows, depth)
        Each row's label tokens, padded with any id.

    Returns
    -------
    torch.Tensor of shape (rows, depth)
        Entry ``j`` is log P(first j + 1 label tokens | prompt).
    """
    import torch

    rows, depth = leaf_tokens.shape
    cols = starts[:, None] + torch.arange(depth, device=starts.device)[None, :]
    cols = cols.clamp(max=logprobs.shape[1] - 1)
    picked = logprobs[torch.arange(rows, device=starts.device)[:, None], cols, leaf_tokens]
    return picked.cumsum(dim=1)


class RowBackend:
    """Shared loop of the row backends: plan, score a group, report it.

    Subclasses implement ``_score_group(prompts, trie)``, returning a float
    tensor of shape (len(prompts), n_labels).
    """

    name = "rows"

    def __init__(self, loaded, pad_free=False):
        self.loaded = loaded
        self.model = loaded.model
        self.device = loaded.device
        self.pad_free = pad_free
        self.forward_passes = 0

    def score(self, prompt_ids, label_ids, batch_size="auto", prefix_hint=None,
              on_batch=None, progress=None):
        """Return log P(label | prompt) for every prompt and label.

        Same contract as :meth:`nbllm.engine.tree_mask.TreeMaskBackend.score`;
        ``prefix_hint`` is not needed here.
        """
        import numpy as np
        import torch

        trie = LabelTrie(label_ids)
        out = np.empty((len(prompt_ids), len(label_ids)), dtype=np.float64)
        if not prompt_ids:
            return out
        depth = trie.max_depth
        groups = plan_groups(
            [self._width(p, depth) for p in prompt_ids], len(trie.leaves), depth,
            getattr(self.model.config, "vocab_size", 32000), self.device.type,
            1 if self.pad_free else batch_size,
        )
        bar = progress(len(groups), len(prompt_ids)) if progress is not None else None
        try:
            with torch.inference_mode():
                for group in groups:
                    values = self._score_group([prompt_ids[i] for i in group], trie)
                    values = values.double().cpu().numpy()
                    out[group] = values
                    if on_batch is not None:
                        on_batch(group, values)
                    if bar is not None:
                        bar.update(len(group))
        finally:
            if bar is not None:
                bar.close()
        return out

    def _rows(self, n_prompts, trie):
        """(prompt, leaf) per row, the leaves' tokens, and their lengths."""
        leaves = [trie.path_tokens(leaf) for leaf in trie.leaves]
        pairs = [(p, j) for p in range(n_prompts) for j in range(len(leaves))]
        return pairs, leaves

    def _labels_from_rows(self, cums, n_prompts, trie):
        """Per prompt and label: the cumulative log-probability at the label's end."""
        import torch

        n_leaves = len(trie.leaves)
        rows = torch.tensor(trie.leaf_of_label, device=cums.device)
        ends = torch.tensor([len(p) - 1 for p in trie.paths], device=cums.device)
        base = torch.arange(n_prompts, device=cums.device)[:, None] * n_leaves
        return cums[base + rows[None, :], ends[None, :]]

    def _in_passes(self, rows, run):
        """``run`` over the rows at once, or per length when ``pad_free``.

        ``run(indices)`` returns per-row results; they come back in row order.
        """
        import torch

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


def padded(rows, device, pad_id=0):
    """Right-padded ids and their 0/1 attention mask, as device tensors."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, :len(row)] = 1
    return ids.to(device), mask.to(device)


def accepts(model, name):
    """Whether the model's forward takes a parameter of this name."""
    import inspect

    return name in inspect.signature(model.forward).parameters


class ExactBackend(RowBackend):
    """Decoder-only models: one row per (prompt, label), ordinary forward passes.

    Parameters
    ----------
    loaded : nbllm.models.LoadedModel
    pad_free : bool
        Only rows of equal length share a pass, with no attention mask.
    """

    name = "exact"

    def _width(self, prompt, depth):
        return len(prompt) + depth - 1

    def _score_group(self, prompts, trie):
        import torch

        pairs, leaves = self._rows(len(prompts), trie)
        rows = [prompts[p] + leaves[j][:-1] for p, j in pairs]
        starts = [len(prompts[p]) - 1 for p, _ in pairs]
        depth = trie.max_depth
        tokens = torch.tensor([leaves[j] + [0] * (depth - len(leaves[j])) for _, j in pairs],
                              device=self.device)

        def run(indices):
            ids, mask = padded([rows[i] for i in indices], self.device)
            first = min(starts[i] for i in indices)
            kept = torch.arange(first, ids.shape[1], device=self.device)
            extra = {}
            if not self.pad_free:
                extra["attention_mask"] = mask
            if accepts(self.model, "logits_to_keep"):
                extra["logits_to_keep"] = kept
                logits = self.model(input_ids=ids, use_cache=False, **extra).logits
            else:
                logits = self.model(input_ids=ids, use_cache=False, **extra).logits[:, kept]
            self.forward_passes += 1
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            local = torch.tensor([starts[i] - first for i in indices], device=self.device)
            return leaf_logprobs(logprobs, local, tokens[indices])

        cums = self._in_passes(rows, run)
        return self._labels_from_rows(cums, len(prompts), trie)


def plain_logprobs(model, prompt_ids, label_ids, decoder_start=None):
    """log P(label | prompt) by one plain forward pass per (prompt, label).

    No batching, padding, custom mask or cache: the reference every faster
    path is checked against.  ``decoder_start`` marks an encoder-decoder
    model, whose label is scored as the decoder's sequence after it.

    Returns
    -------
    numpy.ndarray of shape (n_prompts, n_labels), float64
    """
    import numpy as np
    import torch

    device = next(model.parameters()).device
    out = np.empty((len(prompt_ids), len(label_ids)), dtype=np.float64)
    with torch.inference_mode():
        for i, prompt in enumerate(prompt_ids):
            for j, label in enumerate(label_ids):
                if decoder_start is None:
                    ids = torch.tensor([list(prompt) + list(label)], device=device)
                    logits = model(input_ids=ids, use_cache=False).logits[0]
                    first = len(prompt) - 1
                else:
                    logits = model(
                        input_ids=torch.tensor([list(prompt)], device=device),
                        decoder_input_ids=torch.tensor([[decoder_start, *label[:-1]]],
                                                       device=device),
                        use_cache=False,
                    ).logits[0]
                    first = 0
                logprobs = torch.log_softmax(logits.double(), dim=-1)
                out[i, j] = float(sum(logprobs[first + k, t] for k, t in enumerate(label)))
    return out
