"""The in-memory result cache: an LRU bounded in bytes, each result stored once (issue 36).

Synthetic rows, no model: a row is what a first run stores for one text, its
result under a token-id key and a text-level key pointing at it.
"""

import os
import tracemalloc

import numpy as np
import pytest

from nbllm.engine.scoring.result_cache import (DEFAULT_MAX_BYTES, ENTRY_BYTES, INDEX_BYTES,
                                       DiskCache, ResultCache, result_cache)
from nbllm.notebook.session import session

MiB = 2**20
ROW_BYTES = ENTRY_BYTES + 2 * 8 + INDEX_BYTES  # a two-label result and its text key


def rows(n, start=0):
    """``n`` rows' (keys, text keys, log-probabilities), distinct per ``start``."""
    keys = [b"k%019d" % i for i in range(start, start + n)]
    text_keys = [b"t%019d" % i for i in range(start, start + n)]
    values = np.log(np.full((n, 2), 0.5)) - np.arange(start, start + n)[:, None]
    return keys, text_keys, values


def fill(cache, n, chunk=1000):
    for start in range(0, n, chunk):
        keys, text_keys, values = rows(min(chunk, n - start), start)
        cache.put_many(keys, values)
        cache.put_text_many(zip(text_keys, keys))


def test_a_million_rows_stay_under_the_bound():
    cache = ResultCache(max_bytes=16 * MiB)
    fill(cache, 1_000_000)
    assert cache.nbytes <= cache.max_bytes == 16 * MiB
    # Full to within one row; the last rows are kept, the first were dropped
    # (a batch's results go in before its text keys, so some of the oldest
    # kept rows have only their text key left).
    assert cache.nbytes > cache.max_bytes - ROW_BYTES
    assert 16 * MiB // ROW_BYTES - 1000 <= len(cache) < 16 * MiB // (ENTRY_BYTES + 16)
    keys, text_keys, values = rows(1000, 1_000_000 - 1000)
    np.testing.assert_array_equal(np.stack(cache.get_many(keys)), values)
    np.testing.assert_array_equal(np.stack(cache.peek_many(text_keys)), values)
    keys, text_keys, _ = rows(1000)
    assert cache.get_many(keys) == [None] * 1000
    assert cache.peek_many(text_keys) == [None] * 1000


def test_the_counted_bytes_cover_what_python_allocates():
    """The bound holds for the memory Python really holds, churn included:
    the LRU's tables grow by doubling and keep deleted slots until rebuilt."""
    cache = ResultCache(max_bytes=2 * MiB)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for start in range(0, 30_000, 1000):  # about ten times what fits
            keys = [os.urandom(20) for _ in range(1000)]
            cache.put_many(keys, np.zeros((1000, 2)))
            cache.put_text_many((os.urandom(20), k) for k in keys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(cache) < 30_000
    assert peak - base <= cache.max_bytes


def test_each_result_is_stored_once():
    cache = ResultCache()
    keys, text_keys, values = rows(3)
    cache.put_many(keys, values)
    cache.put_text_many(zip(text_keys, keys))
    by_text, by_ids = cache.peek_many(text_keys), cache.get_many(keys)
    assert all(a is b for a, b in zip(by_text, by_ids))
    assert len(cache) == 3  # results, not text keys
    assert cache.nbytes == 3 * ROW_BYTES
    assert (cache.hits, cache.misses) == (6, 0)


def test_the_least_recently_used_result_goes_first():
    cache = ResultCache(max_bytes=3 * (ENTRY_BYTES + 16))
    keys, _, values = rows(4)
    cache.put_many(keys[:3], values[:3])
    cache.get_many(keys[:1])  # the first is now used more recently than the second
    cache.put_many(keys[3:], values[3:])
    assert [v is not None for v in cache.get_many(keys)] == [True, False, True, True]
    assert len(cache) == 3


def test_a_text_key_whose_result_was_dropped_is_a_miss():
    cache = ResultCache(max_bytes=ENTRY_BYTES + 16 + INDEX_BYTES)
    keys, text_keys, values = rows(2)
    cache.put_many(keys[:1], values[:1])
    cache.put_text_many(zip(text_keys[:1], keys[:1]))
    cache.put_many(keys[1:], values[1:])
    assert cache.peek_many(text_keys[:1]) == [None]
    assert cache.hits == 0
    assert len(cache) == 1


def test_shrinking_keeps_the_most_recent_and_zero_keeps_none():
    cache = ResultCache()
    keys, text_keys, values = rows(10)
    cache.put_many(keys, values)
    cache.get_many(keys[:2])  # the two most recently used
    cache.set_max_bytes(2 * (ENTRY_BYTES + 16))
    assert cache.max_bytes == 2 * (ENTRY_BYTES + 16)
    assert len(cache) == 2
    assert [v is not None for v in cache.get_many(keys[:3])] == [True, True, False]
    cache.set_max_bytes(0)
    assert len(cache) == 0 and cache.nbytes == 0
    cache.put_many(keys, values)
    cache.put_text_many(zip(text_keys, keys))
    assert len(cache) == 0 and cache.nbytes == 0
    assert cache.get_many(keys) == [None] * 10


def test_replacing_a_result_counts_it_once():
    cache = ResultCache()
    keys, _, values = rows(2)
    cache.put_many(keys, values)
    cache.put_many(keys, values + 1)
    assert len(cache) == 2 and cache.nbytes == 2 * (ENTRY_BYTES + 16)
    np.testing.assert_array_equal(np.stack(cache.get_many(keys)), values + 1)


def test_clear_keeps_the_bound():
    cache = ResultCache(max_bytes=MiB)
    fill(cache, 100)
    cache.clear()
    assert (len(cache), cache.nbytes, cache.max_bytes) == (0, 0, MiB)


def test_the_disk_cache_keeps_every_result(tmp_path):
    disk = DiskCache(tmp_path / "results.sqlite")
    try:
        cache = ResultCache(max_bytes=10 * (ENTRY_BYTES + 16))
        keys, _, values = rows(100)
        cache.put_many(keys, values, disk=disk)
        assert len(cache) == 10 and len(disk) == 100
        found = cache.get_many(keys[:5], disk=disk)  # dropped from memory, read back
        np.testing.assert_array_equal(np.stack(found), values[:5])
        assert len(cache) == 10
    finally:
        disk.close()


def test_the_session_sets_the_process_wide_bound():
    try:
        assert session.result_cache_mb == DEFAULT_MAX_BYTES // MiB == 512
        assert result_cache.max_bytes == DEFAULT_MAX_BYTES
        session.result_cache_mb = 1.5
        assert result_cache.max_bytes == int(1.5 * MiB)
        session.reset()
        assert result_cache.max_bytes == DEFAULT_MAX_BYTES
    finally:
        session.reset()


@pytest.mark.parametrize("value", [-1, float("nan"), "64", True, None])
def test_the_session_refuses_what_is_not_a_size(value):
    from nbllm.exceptions import OptionError

    with pytest.raises(OptionError, match="^result_cache_mb must be a number of MiB >= 0; "
                                          f"got {value!r}$".replace("(", r"\(")) as info:
        session.result_cache_mb = value
    assert info.value.option == "result_cache_mb"
    assert result_cache.max_bytes == DEFAULT_MAX_BYTES
