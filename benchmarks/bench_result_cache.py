"""The in-memory result cache's memory per row, and its bound on a 1M-row fill.

    python benchmarks/bench_result_cache.py [--rows 1000000] [--labels 2]

No model: each synthetic row is what a first run stores for one text, a
result (``put_many``: a random 20-byte key and one float64 per label) and
its text-level key pointing at it (``put_text_many``).  Memory is Python's
own allocation count (``tracemalloc``), so it covers the keys, the arrays and
the LRU's tables, and nothing else in the process.

* ``per row``: the bytes one row takes, with no bound reached, at several
  fills (a dict's table grows by doubling, so the cost per row steps);
* ``fill``: ``--rows`` rows into a cache with the default bound (512 MiB)
  and into one with a 64 MiB bound; the peak traced memory of the fill must
  stay under the bound.
"""

import argparse
import os
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nbllm.engine.scoring.result_cache import DEFAULT_MAX_BYTES, ResultCache  # noqa: E402

MiB = 2**20
CHUNK = 1000  # rows per put_many, as a batch of scoring stores them


def fill(cache, rows, labels):
    """Store ``rows`` synthetic rows; return the traced peak and the memory
    held afterwards, both above what was held before, in bytes."""
    import numpy as np

    rng = np.random.default_rng(0)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        raw = os.urandom(40 * n)
        keys = [raw[i:i + 20] for i in range(0, 20 * n, 20)]
        text_keys = [raw[i:i + 20] for i in range(20 * n, 40 * n, 20)]
        cache.put_many(keys, np.log(rng.dirichlet(np.ones(labels), size=n)))
        cache.put_text_many(zip(text_keys, keys))
        del raw, keys, text_keys
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - base, held - base


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--labels", type=int, default=2)
    args = parser.parse_args()

    print(f"per row ({args.labels} labels; a result and its text key):")
    for rows in (10_000, 50_000, 100_000, 200_000):
        cache = ResultCache(max_bytes=2**40)
        _, held = fill(cache, rows, args.labels)
        print(f"  {rows:>9,} rows: {held / rows:6.0f} bytes measured, "
              f"{cache.nbytes / rows:6.0f} counted")

    for bound in (DEFAULT_MAX_BYTES, 64 * MiB):
        cache = ResultCache(max_bytes=bound)
        t0 = time.perf_counter()
        peak, held = fill(cache, args.rows, args.labels)
        seconds = time.perf_counter() - t0
        ok = "under" if peak <= bound else "OVER"
        print(f"fill of {args.rows:,} rows, bound {bound / MiB:.0f} MiB: "
              f"{len(cache):,} results kept, {cache.nbytes / MiB:.1f} MiB counted, "
              f"{held / MiB:.1f} MiB held, peak {peak / MiB:.1f} MiB ({ok} the bound), "
              f"{seconds:.1f} s with tracemalloc")


if __name__ == "__main__":
    main()
