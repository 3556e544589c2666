"""Throughput of ``ddf.llm.classify`` on a LocalCluster: 1 worker against 2 workers.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_dask.py [-n 1000] [--partitions 8] [--repeats 1] [--pandas] [--environ dask,untrimmed]

Classifies ``n`` real tweets (``load_tweets(n, split='eval')``, labels negative /
positive, the embedded SmolLM2-135M) on a loopback ``LocalCluster`` of worker
processes with one thread each: first 1 worker, then 2.  Before the clock,
every worker loads the model and classifies a few other tweets, so the times
hold no model load and no first-call overhead.  ``--environ`` picks the workers'
environment: ``dask`` is Dask's default (its nannies set
``MALLOC_TRIM_THRESHOLD_=65536``), ``untrimmed`` unsets that variable the way the
notebook guide shows (``FAST_WORKER_CONFIG``); both by default, each on its own
clusters.  Before each timed run the workers' in-memory result caches are cleared and the run gets a fresh, empty
disk cache folder (shared by its workers), so no result is reused.  Dask's
nannies start workers with ``OMP_NUM_THREADS=1``, so each worker's torch uses
one core; the thread count is printed.

It prints, per cluster, the seconds and tweets/s (best of ``--repeats``), the
throughput ratio of 2 workers to 1 per environment, and the largest probability
difference between any two clusters' results.  ``--pandas`` adds the single-process
``df.llm.classify`` (torch's default threads) for comparison, on the whole frame
and partition by partition.  The machine is noisy: run it when nothing else
does, and read the ratio.
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Importing it also attaches ddf.llm.
from nbllm.notebook.dask_accessor import FAST_WORKER_CONFIG  # noqa: E402

LABELS = ["negative", "positive"]
WARM_UP_TWEETS = 4
# Dask's default worker environment, and the notebook guide's setting
# (nbllm.notebook.dask_accessor.FAST_WORKER_CONFIG, "Faster Dask workers").
ENVIRONS = {"dask": {}, "untrimmed": FAST_WORKER_CONFIG}


def warm_up(texts):
    """Load the model in this worker and classify a few texts (run as a task)."""
    import pandas as pd

    from nbllm.engine.scoring.result_cache import result_cache

    pd.DataFrame({"text": texts}).llm.classify("text", LABELS, progress=False)
    result_cache.clear()


def worker_state():
    """This worker's model loads, torch threads and malloc trim setting (``client.run``)."""
    import torch

    from nbllm.engine.loading import models

    return (dict(models.load_counts), torch.get_num_threads(),
            os.environ.get("MALLOC_TRIM_THRESHOLD_"))


def clear_result_cache():
    """Empty this worker's in-memory result cache (run by ``client.run``)."""
    from nbllm.engine.scoring.result_cache import result_cache

    result_cache.clear()


def warm_every_worker(client, texts):
    """Run :func:`warm_up` once on each worker and check each loaded the model once.

    Returns
    -------
    tuple of (int, str or None)
        The workers' torch thread count and ``MALLOC_TRIM_THRESHOLD_``.
    """
    addresses = list(client.scheduler_info()["workers"])
    futures = [client.submit(warm_up, texts, workers=[addr], allow_other_workers=False,
                             pure=False) for addr in addresses]
    client.gather(futures)
    states = client.run(worker_state)
    for addr, (counts, _, _) in states.items():
        assert sum(counts.values()) == 1, f"{addr} loaded {counts}"
    settings = {(n, trim) for _, n, trim in states.values()}
    assert len(settings) == 1, f"workers differ in threads or malloc trim: {settings}"
    return settings.pop()


def timed_run(client, tweets, partitions):
    """Classify the tweets on the cluster with cold result caches.

    Returns
    -------
    tuple of (pandas.DataFrame, float)
        The result and the seconds it took.
    """
    import dask.dataframe as dd

    client.run(clear_result_cache)
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as cache:
        lazy = dd.from_pandas(tweets, npartitions=partitions).llm.classify(
            "text", LABELS, cache_dir=cache)
        start = time.perf_counter()
        result = client.compute(lazy).result()
        seconds = time.perf_counter() - start
    return result, seconds


def bench_cluster(n_workers, tweets, warm_texts, partitions, repeats, environ):
    """Best-of-``repeats`` time on a fresh LocalCluster of ``n_workers`` × 1 thread.

    ``environ`` names an entry of :data:`ENVIRONS`, the Dask config the workers
    start under.

    Returns
    -------
    tuple of (pandas.DataFrame, float, tuple)
        The result, the best seconds and the workers' torch thread count and
        ``MALLOC_TRIM_THRESHOLD_``.
    """
    import dask
    from distributed import Client, LocalCluster

    # Dask's nannies copy their variables into this process's environment before
    # spawning, so a later cluster would inherit them: restore it afterwards.
    saved = dict(os.environ)
    try:
        with dask.config.set(ENVIRONS[environ]), \
                LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                             host="127.0.0.1", dashboard_address=None) as cluster, \
                Client(cluster) as client:
            client.wait_for_workers(n_workers, timeout=300)
            threads = warm_every_worker(client, warm_texts)
            runs = [timed_run(client, tweets, partitions) for _ in range(repeats)]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    result = runs[0][0]
    return result, min(seconds for _, seconds in runs), threads


def bench_pandas(parts, warm_texts, repeats):
    """Best-of-``repeats`` time of ``df.llm.classify`` in this process.

    ``parts`` are frames classified one call each, one after another: the whole
    frame alone, or Dask's partitions (the cost of many small calls).
    """
    import pandas as pd

    from nbllm.engine.scoring.result_cache import result_cache

    pd.DataFrame({"text": warm_texts}).llm.classify("text", LABELS, progress=False)
    times = []
    for _ in range(repeats):
        result_cache.clear()
        start = time.perf_counter()
        for part in parts:
            part.llm.classify("text", LABELS, progress=False)
        times.append(time.perf_counter() - start)
    result_cache.clear()
    return min(times)


def report(name, n, seconds):
    """Print one line: seconds and tweets/s."""
    print(f"{name:<50} {seconds:8.1f} s  {n / seconds:7.2f} tweets/s", flush=True)


def max_proba_difference(a, b):
    """The largest absolute probability difference between two results."""
    import numpy as np

    columns = [f"proba_{label}" for label in LABELS]
    assert a.index.equals(b.index) and a["label"].tolist() == b["label"].tolist()
    return float(np.abs(a[columns].to_numpy() - b[columns].to_numpy()).max())


def main():
    """Parse the arguments, run the clusters and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="tweets to classify")
    parser.add_argument("--partitions", type=int, default=8,
                        help="Dask partitions (the same for both clusters)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per cluster")
    parser.add_argument("--pandas", action="store_true",
                        help="also time df.llm.classify in this process")
    parser.add_argument("--environ", default="dask,untrimmed",
                        help=f"comma-separated workers' environments, of {sorted(ENVIRONS)} "
                             "('' times no cluster)")
    args = parser.parse_args()
    environs = [e for e in args.environ.split(",") if e]
    unknown = sorted(set(environs) - set(ENVIRONS))
    if unknown:
        parser.error(f"unknown --environ {unknown}; choose from {sorted(ENVIRONS)}")

    import dask.dataframe as dd
    import torch

    from nbllm.tools.tweets import load_tweets

    tweets = load_tweets(args.n, split="eval")[["text"]]
    warm_texts = load_tweets(WARM_UP_TWEETS, split="dev")["text"].tolist()
    print(f"{len(tweets)} eval tweets, {args.partitions} partitions, labels {LABELS}, "
          f"embedded model, best of {args.repeats}", flush=True)

    results, seconds = {}, {}
    for environ in environs:
        for n_workers in (1, 2):
            result, best, (threads, trim) = bench_cluster(
                n_workers, tweets, warm_texts, args.partitions, args.repeats, environ)
            results[environ, n_workers], seconds[environ, n_workers] = result, best
            label = f"{n_workers} worker{'s' if n_workers > 1 else ''} x 1 thread"
            report(f"{environ}: {label} (torch {threads}, trim {trim})", len(tweets), best)
    if args.pandas:
        threads = torch.get_num_threads()
        whole = bench_pandas([tweets], warm_texts, args.repeats)
        report(f"pandas, 1 process (torch {threads})", len(tweets), whole)
        partitions = dd.from_pandas(tweets, npartitions=args.partitions).partitions
        parted = bench_pandas([p.compute() for p in partitions], warm_texts, args.repeats)
        report(f"pandas, partition by partition (torch {threads})", len(tweets), parted)
        print(f"partition by partition / whole frame: {parted / whole:.2f}x")
    for environ in environs:
        print(f"{environ}: throughput ratio, 2 workers / 1 worker: "
              f"{seconds[environ, 1] / seconds[environ, 2]:.2f}x")
    if results:
        first = next(iter(results.values()))
        print("max |dp| between the clusters' results: "
              f"{max(max_proba_difference(first, r) for r in results.values()):.1e}")


if __name__ == "__main__":
    main()
