"""Throughput of ``ddf.llm.classify`` on a LocalCluster: 1 worker against 2 workers.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_dask.py [-n 1000] [--partitions 8] [--repeats 1] [--pandas]

Classifies ``n`` real tweets (``load_tweets(n, split='eval')``, labels negative /
positive, the embedded SmolLM2-135M) on a loopback ``LocalCluster`` of worker
processes with one thread each: first 1 worker, then 2.  Before the clock,
every worker loads the model and classifies a few other tweets, so the times
hold no model load and no first-call overhead.  Before each timed run the
workers' in-memory result caches are cleared and the run gets a fresh, empty
disk cache folder (shared by its workers), so no result is reused.  Dask's
nannies start workers with ``OMP_NUM_THREADS=1``, so each worker's torch uses
one core; the thread count is printed.

It prints, per cluster, the seconds and tweets/s (best of ``--repeats``), the
throughput ratio of 2 workers to 1, and the largest probability difference
between the two clusters' results.  ``--pandas`` adds the single-process
``df.llm.classify`` (torch's default threads) for comparison.  The machine is
noisy: run it when nothing else does, and read the ratio.
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LABELS = ["negative", "positive"]
WARM_UP_TWEETS = 4


def warm_up(texts):
    """Load the model in this worker and classify a few texts (run as a task)."""
    import pandas as pd

    from nbllm.engine.result_cache import result_cache

    pd.DataFrame({"text": texts}).llm.classify("text", LABELS, progress=False)
    result_cache.clear()


def worker_state():
    """This worker's model loads and torch thread count (run by ``client.run``)."""
    import torch

    from nbllm.engine import models

    return dict(models.load_counts), torch.get_num_threads()


def clear_result_cache():
    """Empty this worker's in-memory result cache (run by ``client.run``)."""
    from nbllm.engine.result_cache import result_cache

    result_cache.clear()


def warm_every_worker(client, texts):
    """Run :func:`warm_up` once on each worker and check each loaded the model once.

    Returns
    -------
    int
        The torch thread count of the workers.
    """
    addresses = list(client.scheduler_info()["workers"])
    futures = [client.submit(warm_up, texts, workers=[addr], allow_other_workers=False,
                             pure=False) for addr in addresses]
    client.gather(futures)
    states = client.run(worker_state)
    for addr, (counts, _) in states.items():
        assert sum(counts.values()) == 1, f"{addr} loaded {counts}"
    threads = {n for _, n in states.values()}
    assert len(threads) == 1, f"workers differ in torch threads: {threads}"
    return threads.pop()


def timed_run(client, tweets, partitions):
    """Classify the tweets on the cluster with cold result caches.

    Returns
    -------
    tuple of (pandas.DataFrame, float)
        The result and the seconds it took.
    """
    import dask.dataframe as dd

    import nbllm.notebook.dask_accessor  # noqa: F401  (attaches ddf.llm)

    client.run(clear_result_cache)
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as cache:
        lazy = dd.from_pandas(tweets, npartitions=partitions).llm.classify(
            "text", LABELS, cache_dir=cache)
        start = time.perf_counter()
        result = client.compute(lazy).result()
        seconds = time.perf_counter() - start
    return result, seconds


def bench_cluster(n_workers, tweets, warm_texts, partitions, repeats):
    """Best-of-``repeats`` time on a fresh LocalCluster of ``n_workers`` × 1 thread.

    Returns
    -------
    tuple of (pandas.DataFrame, float, int)
        The result, the best seconds and the workers' torch thread count.
    """
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(n_workers, timeout=300)
        threads = warm_every_worker(client, warm_texts)
        runs = [timed_run(client, tweets, partitions) for _ in range(repeats)]
    result = runs[0][0]
    return result, min(seconds for _, seconds in runs), threads


def bench_pandas(tweets, warm_texts, repeats):
    """Best-of-``repeats`` time of ``df.llm.classify`` in this process."""
    import pandas as pd

    from nbllm.engine.result_cache import result_cache

    pd.DataFrame({"text": warm_texts}).llm.classify("text", LABELS, progress=False)
    times = []
    for _ in range(repeats):
        result_cache.clear()
        start = time.perf_counter()
        tweets.llm.classify("text", LABELS, progress=False)
        times.append(time.perf_counter() - start)
    result_cache.clear()
    return min(times)


def report(name, n, seconds):
    """Print one line: seconds and tweets/s."""
    print(f"{name:<28} {seconds:8.1f} s  {n / seconds:7.2f} tweets/s", flush=True)


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
    args = parser.parse_args()

    import torch

    from nbllm.tools.tweets import load_tweets

    tweets = load_tweets(args.n, split="eval")[["text"]]
    warm_texts = load_tweets(WARM_UP_TWEETS, split="dev")["text"].tolist()
    print(f"{len(tweets)} eval tweets, {args.partitions} partitions, labels {LABELS}, "
          f"embedded model, best of {args.repeats}", flush=True)

    results, seconds = {}, {}
    for n_workers in (1, 2):
        result, best, threads = bench_cluster(n_workers, tweets, warm_texts,
                                              args.partitions, args.repeats)
        results[n_workers], seconds[n_workers] = result, best
        label = f"{n_workers} worker{'s' if n_workers > 1 else ''} x 1 thread"
        report(f"{label} (torch {threads})", len(tweets), best)
    if args.pandas:
        pandas_seconds = bench_pandas(tweets, warm_texts, args.repeats)
        report(f"pandas, 1 process (torch {torch.get_num_threads()})", len(tweets),
               pandas_seconds)
    print(f"throughput ratio, 2 workers / 1 worker: {seconds[1] / seconds[2]:.2f}x")
    print(f"max |dp| between the two clusters' results: "
          f"{max_proba_difference(results[1], results[2]):.1e}")


if __name__ == "__main__":
    main()
