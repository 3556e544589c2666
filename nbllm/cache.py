"""The result cache: label log-probabilities keyed by what determines them.

A result depends only on the model's weights, the prompt's token ids and the
labels' token ids, so that triple is the key.  The cache is process-wide, so
sklearn clones, repeated notebook cells and the panel all share it.
"""

import hashlib
import threading

import numpy as np


def result_key(fingerprint, prompt_ids, label_ids):
    """A compact, collision-resistant key for one (model, prompt, labels) triple."""
    h = hashlib.blake2b(digest_size=20)
    h.update(fingerprint.encode())
    h.update(np.asarray(prompt_ids, dtype=np.int64).tobytes())
    for ids in label_ids:
        h.update(b"|")
        h.update(np.asarray(ids, dtype=np.int64).tobytes())
    return h.digest()


class ResultCache:
    """In-memory map from :func:`result_key` to per-label log-probabilities.

    Attributes
    ----------
    hits, misses : int
        Lookups answered from the cache and lookups that were not.
    """

    def __init__(self):
        self._data = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self):
        return len(self._data)

    def get_many(self, keys):
        """Return a list with the cached array or None for each key."""
        with self._lock:
            found = [self._data.get(k) for k in keys]
            hits = sum(v is not None for v in found)
            self.hits += hits
            self.misses += len(keys) - hits
        return found

    def put_many(self, keys, values):
        """Store one float64 array of log-probabilities per key."""
        with self._lock:
            for k, v in zip(keys, values):
                self._data[k] = np.array(v, dtype=np.float64)

    def clear(self):
        """Drop every entry and reset the counters."""
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0


result_cache = ResultCache()
