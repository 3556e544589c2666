"""The result cache: label log-probabilities keyed by what determines them.

A result depends only on the model's weights, the prompt's token ids and the
labels' token ids, so that triple is the key.  The in-memory cache is
process-wide, so sklearn clones, repeated notebook cells and the panel all
share it.  An optional SQLite file under a cache folder keeps results across
processes: reruns are instant and an interrupted job resumes where it stopped.
"""

import hashlib
import os
import sqlite3
import threading
from pathlib import Path

import numpy as np

DISK_CACHE_FILE = "results.sqlite"
_SQL_CHUNK = 500  # keys per SELECT, below SQLite's variable limit


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

    def get_many(self, keys, disk=None):
        """Return a list with the cached array or None for each key.

        Keys missing in memory are looked up in ``disk`` (a :class:`DiskCache`)
        when given; what is found there is kept in memory too.
        """
        with self._lock:
            found = [self._data.get(k) for k in keys]
        if disk is not None:
            missing = [k for k, v in zip(keys, found) if v is None]
            from_disk = disk.get_many(missing) if missing else {}
            if from_disk:
                with self._lock:
                    self._data.update(from_disk)
                found = [from_disk.get(k) if v is None else v for k, v in zip(keys, found)]
        with self._lock:
            hits = sum(v is not None for v in found)
            self.hits += hits
            self.misses += len(keys) - hits
        return found

    def put_many(self, keys, values, disk=None):
        """Store one float64 array of log-probabilities per key (and on disk)."""
        arrays = [np.array(v, dtype=np.float64) for v in values]
        with self._lock:
            self._data.update(zip(keys, arrays))
        if disk is not None:
            disk.put_many(keys, arrays)

    def clear(self):
        """Drop every entry and reset the counters."""
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0


class DiskCache:
    """Results in an SQLite file (WAL mode), shared by processes on one disk.

    Values are the raw float64 log-probabilities, not pickles.  Each
    :meth:`put_many` is one transaction, so a batch is either stored whole or
    not at all, and an interrupted job keeps every batch it finished.

    SQLite's WAL mode is safe for several processes on a local disk; on a
    network file system its locking is not reliable, so give each machine its
    own folder there.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Autocommit mode: transactions are opened explicitly in put_many.
        self._conn = sqlite3.connect(str(self.path), timeout=60, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS results (key BLOB PRIMARY KEY, logprobs BLOB NOT NULL)"
        )

    def __len__(self):
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def get_many(self, keys):
        """Return {key: array} for the keys that are stored."""
        found = {}
        with self._lock:
            for start in range(0, len(keys), _SQL_CHUNK):
                chunk = keys[start:start + _SQL_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, logprobs FROM results WHERE key IN ({marks})", chunk
                )
                for key, blob in rows:
                    found[bytes(key)] = np.frombuffer(blob, dtype=np.float64).copy()
        return found

    def put_many(self, keys, values):
        """Store a batch atomically."""
        rows = [(k, np.asarray(v, dtype=np.float64).tobytes()) for k, v in zip(keys, values)]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO results (key, logprobs) VALUES (?, ?)", rows
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def clear(self):
        """Delete every stored result."""
        with self._lock:
            self._conn.execute("DELETE FROM results")


_disk_caches = {}
_disk_lock = threading.Lock()


def disk_cache(folder=None):
    """The shared :class:`DiskCache` of a folder, or None for memory only.

    Parameters
    ----------
    folder : str, Path or None
        None means ``$NBLLM_CACHE_DIR`` when it is set, else no disk cache.
    """
    if folder is None:
        folder = os.environ.get("NBLLM_CACHE_DIR")
        if not folder:
            return None
    path = (Path(folder).expanduser() / DISK_CACHE_FILE).resolve()
    with _disk_lock:
        if path not in _disk_caches:
            _disk_caches[path] = DiskCache(path)
        return _disk_caches[path]


result_cache = ResultCache()
