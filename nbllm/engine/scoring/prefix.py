"""Shared prompt prefixes: their KV caches computed once and kept between calls.

Every prompt of a call starts with the same template text; few-shot prompts
often share their examples too (:mod:`nbllm.engine.scoring.prompt_tree` finds the
shared spans of a call).  A prefix's keys and values are kept on the device
in an LRU bounded in bytes, in the loaded model's ``state`` (shared by every
estimator on that model and by both decoder backends), and expanded, without
a copy, to the rows of each batch.
"""

import inspect
import threading

_LOCK = threading.Lock()
# The prefix KV kept per loaded model between calls, in bytes (the session's
# ``prefix_cache_bytes`` sets it; see set_max_bytes).
DEFAULT_MAX_BYTES = 256 * 2**20
max_bytes = DEFAULT_MAX_BYTES


def set_max_bytes(n):
    """Bound the prefix KV kept per model between calls to ``n`` bytes (0 keeps none)."""
    global max_bytes
    max_bytes = int(n)


def common_prefix_length(a, b):
    """Length of the longest common prefix of two sequences."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def shared_prefix_length(prompt_ids, prefix_hint):
    """Tokens shared by every prompt, leaving at least one token per prompt.

    Each prompt needs one own token so that its last position predicts the
    first label token.  ``prefix_hint`` (the template before the text) is
    where to look; only the part every prompt really has is used.
    """
    reference = list(prefix_hint) if prefix_hint is not None else prompt_ids[0]
    length = len(reference)
    for ids in prompt_ids:
        length = min(length, common_prefix_length(reference, ids), len(ids) - 1)
        if length <= 0:
            return 0
    return length


def cache_kwarg(model):
    """The forward argument that takes a KV cache.

    transformers 5.x renamed ``past_key_values`` to ``cache``.  The first class
    in the model's MRO that names either decides, so a subclass whose forward
    takes ``**kwargs`` is read right.
    """
    for cls in type(model).__mro__:
        forward = cls.__dict__.get("forward")
        if forward is None:
            continue
        params = inspect.signature(forward).parameters
        if "cache" in params:
            return "cache"
        if "past_key_values" in params:
            return "past_key_values"
    return "past_key_values"


def cache_tensors(past):
    """Per-layer (keys, values) of a transformers cache, across API versions."""
    if hasattr(past, "layers"):
        return [(layer.keys, layer.values) for layer in past.layers]
    if hasattr(past, "key_cache"):
        return list(zip(past.key_cache, past.value_cache))
    return [(k, v) for k, v in past]


def expand_cache(prefix_kv, rows):
    """A fresh cache holding the prefix for ``rows`` rows.

    ``expand`` makes no copy; the model's own update concatenates the new
    tokens onto it, and the shared prefix tensors stay untouched for the next
    batch.  It is built without the model's config, so sliding-window layers
    keep every key: the tree mask applies windows itself, and for the exact
    path the model masks by position from the full cache.
    """
    if prefix_kv is None:
        return None
    from transformers import DynamicCache

    cache = DynamicCache()
    for layer, (keys, values) in enumerate(prefix_kv):
        cache.update(
            keys.expand(rows, *keys.shape[1:]),
            values.expand(rows, *values.shape[1:]),
            layer,
        )
    return cache


def count_positions(loaded, n):
    """Add ``n`` to the positions fed to ``loaded``'s model (prompt, label and
    padding columns of every pass), kept in ``loaded.state["positions_fed"]``
    for benchmarks and tests."""
    with _LOCK:
        loaded.state["positions_fed"] = loaded.state.get("positions_fed", 0) + n


def accepts(model, name):
    """Whether the model's forward takes a parameter of this name."""
    return name in inspect.signature(model.forward).parameters


def kv_bytes(kv):
    """Bytes held by one prefix's per-layer (keys, values)."""
    return sum(t.numel() * t.element_size() for layer in kv for t in layer)


def span_key(tokens, start):
    """The LRU key of a span's KV: its tokens, and where its own part starts.

    A span below another keeps only its own tokens' keys and values (the
    parent's are kept under the parent's key, once), so the key says from
    where; a whole prefix (``start`` 0) is keyed by its tokens alone, as the
    exact path's common prefix is.
    """
    return tuple(tokens) if start == 0 else ("after", start, tuple(tokens))


def kv_after(kv, start):
    """The keys and values of the positions from ``start`` on, in storage of
    their own (a view would keep the whole prefix alive in the LRU)."""
    return [(keys[:, :, start:].clone(), values[:, :, start:].clone()) for keys, values in kv]


def kv_joined(first, second):
    """The keys and values of ``first``'s positions followed by ``second``'s."""
    import torch

    return [(torch.cat([k1, k2], 2), torch.cat([v1, v2], 2))
            for (k1, v1), (k2, v2) in zip(first, second)]


class PrefixCaches:
    """An LRU of prefix KV caches, keyed by the prefix's token ids, within a byte bound.

    One per loaded model (its ``state["prefix_kv"]``), shared by every
    estimator on that model, both decoder backends and the threads of one
    kernel (the panel and the Labeler score in threads): a lock keeps its
    bookkeeping consistent.  The cached tensors are only read, never changed.

    Parameters
    ----------
    store : dict
        The LRU's storage (insertion order is recency): prefix -> (kv, bytes).
    """

    def __init__(self, store):
        self.store = store

    def lookup(self, prefix):
        """The KV of ``prefix`` if kept (now the most recently used), else None."""
        with _LOCK:
            entry = self.store.pop(tuple(prefix), None)
            if entry is None:
                return None
            self.store[tuple(prefix)] = entry
            return entry[0]

    def keep(self, prefix, kv):
        """Keep ``kv`` as the most recent entry, dropping the least recent ones
        beyond :data:`max_bytes` (a prefix larger than the bound is not kept)."""
        size = kv_bytes(kv)
        with _LOCK:
            self.store.pop(tuple(prefix), None)
            if size > max_bytes:
                return
            self.store[tuple(prefix)] = (kv, size)
            total = sum(entry[1] for entry in self.store.values())
            while total > max_bytes:
                total -= self.store.pop(next(iter(self.store)))[1]

    def get(self, model, prefix, kwarg):
        """The KV tensors of ``prefix`` under ``model``, computing them if needed.

        Returns
        -------
        (list of (keys, values)) or None, int
            The tensors (None for an empty prefix) and the number of forward
            passes spent (0 or 1).
        """
        import torch
        from transformers import DynamicCache

        prefix = tuple(prefix)
        if not prefix:
            return None, 0
        cached = self.lookup(prefix)
        if cached is not None:
            return cached, 0
        device = next(model.parameters()).device
        ids = torch.tensor([prefix], device=device)
        # Only the keys and values are wanted: the head's logits over a long
        # few-shot prefix would cost a pass of their own (and 100 MB per
        # 500 tokens of float32 logits for a 49k vocabulary).
        fewer = {"logits_to_keep": 1} if accepts(model, "logits_to_keep") else {}
        with torch.inference_mode():
            # A cache without the config keeps every key (see expand_cache).
            out = model(input_ids=ids, use_cache=True, **{kwarg: DynamicCache()}, **fewer)
        past = out["cache"] if "cache" in out else out["past_key_values"]
        kv = cache_tensors(past)
        self.keep(prefix, kv)
        return kv, 1
