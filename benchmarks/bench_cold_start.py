"""Cold start: a fresh process's wait for its first probabilities, and its memory.

    HF_HUB_OFFLINE=1 python benchmarks/bench_cold_start.py [--repeat 5] [--dtype auto]

Each measure runs in a new Python process, with the converted copy of the
embedded model already in the cache (a first, untimed run makes it):

* ``baseline``: ``import torch, transformers`` and nothing else;
* ``nbllm``: ``import nbllm``, then ``ZeroShotClassifier().fit(None, labels)``
  and ``predict_proba`` of two texts, the first cell of a notebook.

Times are taken inside the child, from its first line to the last
statement, so the interpreter's own start (the same for both) is left out;
the child's peak resident memory is its ``VmHWM``.  It prints the medians,
the ratio nbllm / baseline (target <= 2.5x) and the peak RSS (target
<= 700 MB), and with ``--phases`` where nbllm's time goes.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HWM = ("import re; hwm = int(re.search(r'VmHWM:\\s+(\\d+)', "
       "open('/proc/self/status').read()).group(1)) / 1024")

BASELINE = """
import time
t0 = time.perf_counter()
import torch, transformers
seconds = time.perf_counter() - t0
{hwm}
print(__import__('json').dumps({{'seconds': seconds, 'rss_mb': hwm}}))
"""

NBLLM = """
import time
t0 = time.perf_counter()
marks = {{}}
import nbllm
from nbllm.engine.loading import models
from nbllm.engine.scoring import scorer, selfcheck
marks['import nbllm'] = time.perf_counter() - t0
if {phases}:
    # Wrap the engine's steps to see where the time goes (same work).
    def timed(owner, name, label):
        real = getattr(owner, name)
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                marks[label] = marks.get(label, 0) + time.perf_counter() - start
        setattr(owner, name, wrapper)
    timed(models, '_load', 'load (config, tokenizer, weights)')
    timed(models, '_attends_ahead', 'causality check')
    timed(models, 'fingerprint', 'fingerprint')
    timed(selfcheck, 'run_probe', 'self-check probe')
# No result cache: the cache folder's results.sqlite would answer every run after
# the first without scoring.
clf = nbllm.ZeroShotClassifier(dtype={dtype!r}, progress=False, use_caching=False).fit(None, ['negative', 'positive'])
proba = clf.predict_proba(['I love this airline', 'lost my bag again'])
seconds = time.perf_counter() - t0
{hwm}
print(__import__('json').dumps({{'seconds': seconds, 'rss_mb': hwm, 'marks': marks,
                                 'dtype': str(clf.loaded_.dtype), 'proba': proba.tolist()}}))
"""


def run_child(code, env):
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--phases", action="store_true",
                        help="also time the engine's steps inside the nbllm runs")
    parser.add_argument("--cache-dir", default=None,
                        help="nbllm cache folder (default: a private temporary one)")
    args = parser.parse_args()

    cache = args.cache_dir or os.environ.get("NBLLM_BENCH_CACHE") or tempfile.mkdtemp(
        prefix="nbllm-cold-")
    env = dict(os.environ, NBLLM_CACHE_DIR=cache, HF_HUB_OFFLINE="1")
    nbllm_code = NBLLM.format(hwm=HWM, dtype=args.dtype, phases=args.phases)
    first = run_child(nbllm_code, env)  # makes the converted copy; not timed
    print(f"cache {cache}; warm-up run {first['seconds']:.1f} s (dtype {first['dtype']})")

    base, ours = [], []
    for _ in range(args.repeat):
        # Interleaved, so that the machine's drift hits both alike.
        base.append(run_child(BASELINE.format(hwm=HWM), env))
        ours.append(run_child(nbllm_code, env))
    t_base = statistics.median(r["seconds"] for r in base)
    t_ours = statistics.median(r["seconds"] for r in ours)
    rss_base = statistics.median(r["rss_mb"] for r in base)
    rss_ours = max(r["rss_mb"] for r in ours)
    print(f"import torch, transformers: {t_base:.2f} s (median of {args.repeat}), "
          f"peak RSS {rss_base:.0f} MB")
    runs = ", ".join(f"{r['seconds']:.2f}" for r in ours)
    print(f"nbllm first probabilities:  {t_ours:.2f} s (median; runs {runs}), "
          f"peak RSS {rss_ours:.0f} MB "
          f"(largest), dtype {ours[0]['dtype']}")
    print(f"ratio: {t_ours / t_base:.2f}x the import (target <= 2.5x); "
          f"peak RSS target <= 700 MB")
    if args.phases:
        print("phases (median seconds):")
        for name in ours[0]["marks"]:
            values = [r["marks"].get(name, 0.0) for r in ours]
            print(f"  {name:<36} {statistics.median(values):.3f}")


if __name__ == "__main__":
    main()
