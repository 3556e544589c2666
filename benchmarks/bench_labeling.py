"""A simulated user of nbllm.Labeler, judged on held-out tweets.

Run (alone on the machine)::

    HF_HUB_OFFLINE=1 python benchmarks/bench_labeling.py [-n 240] [--slices 0 1]
        [--heldout 300] [--model gemma3-270m] [--dtype bfloat16] [--json out.json]

Each slice is ``n`` two-class tweets of the corpus' *dev* half
(``load_tweets(split="dev", random_state=slice)``).  The simulated user answers
the queued rows with the human label (random checks included, as the widget
shows them), ``batch`` (10) at a time, and calls ``improve()`` at 10, 20, 40 and
100 answers.  At each of 0/10/20/40/100 answers it prints:

- ``heldout``: accuracy of ``estimator_`` on a fixed held-out set of other
  tweets (the *eval* half, never used to choose anything);
- ``rest``: accuracy of the Labeler's predictions on the slice's rows not
  answered (the hard rows leave this set, so it rises by itself);
- ``checks``: the random checks' estimate, its 95% Wilson interval and how
  many checks it rests on, next to the truth (``heldout``);
- ``choice``: what improve() chose, with its cross-validated score;
- ``round_s``: seconds of the improve() call (rescoring included).

``--round-timing 1000`` times one choosing round on 1,000 rows instead: until
its first new queue, and until every row is rescored.
"""

import argparse
import json
import platform
import tempfile
import time

CHECKPOINTS = (0, 10, 20, 40, 100)
LABELS = ["negative", "positive"]


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def simulate(df, heldout, folder, name, model=None):
    """One row per checkpoint for one slice."""
    from nbllm import Labeler

    lab = Labeler(df, "text", LABELS, batch=10, path=f"{folder}/{name}.json",
                  **({} if model is None else {"model": model}))
    rows = []
    for target in CHECKPOINTS:
        round_s = None
        if target:
            while len(lab.answers) < target:
                for idx in lab.queue().index:
                    if len(lab.answers) < target:
                        lab.answer(idx, df.at[idx, "label"])
            started = time.perf_counter()
            lab.improve()
            round_s = time.perf_counter() - started
        answered = set(lab.answers.index)
        rest = [i for i in df.index if i not in answered]
        predicted = lab.predictions.loc[rest, "label"]
        heldout_acc = float((lab.estimator_.predict(heldout["text"].tolist())
                             == heldout["label"].to_numpy()).mean())
        report = lab.report()
        rows.append({"answers": target, "heldout": heldout_acc,
                     "rest": float((predicted == df.loc[rest, "label"]).mean()),
                     "checks": report.checks, "check_accuracy": report.check_accuracy,
                     "low": report.check_interval[0], "high": report.check_interval[1],
                     "choice": report.choice, "round_s": round_s})
        rows[-1]["candidates"] = {f"{c.describe()} ({c.prompt!r})": c.accuracy
                                  for c in lab.candidates_}
        print(name, rows[-1], flush=True)
    return rows


def round_timing(n, model=None):
    """Seconds of one choosing round on ``n`` rows: the first scoring, 25
    answers (20 training, 5 checks), then improve() until its first new queue
    and until every row is rescored."""
    from nbllm import Labeler
    from nbllm.tools.tweets import load_tweets

    df = load_tweets(n, labels=tuple(LABELS), split="dev", random_state=5).reset_index(
        drop=True)
    with tempfile.TemporaryDirectory() as folder:
        lab = Labeler(df, "text", LABELS, batch=5, path=f"{folder}/timing.json",
                      **({} if model is None else {"model": model}))
        started = time.perf_counter()
        lab.queue()
        first_scoring = time.perf_counter() - started
        while len(lab.answers) < 25:
            for idx in lab.queue().index:
                lab.answer(idx, df.at[idx, "label"])
        marks = {}
        started = time.perf_counter()
        lab.improve(on_queue=lambda: marks.setdefault("first_queue",
                                                      time.perf_counter() - started))
        total = time.perf_counter() - started
    print(f"{n} rows: first scoring {first_scoring:.1f} s; round: first new queue "
          f"{marks.get('first_queue', total):.1f} s, all rescored {total:.1f} s "
          f"(choice: {lab.choice_.summary() if lab.choice_ else '-'})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=240)
    parser.add_argument("--slices", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--heldout", type=int, default=300)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--model", default=None,
                        help="model spec (default: the embedded smollm2-135m)")
    parser.add_argument("--dtype", default="auto", help="e.g. bfloat16")
    parser.add_argument("--round-timing", type=int, metavar="ROWS",
                        help="only time one choosing round on ROWS dev rows")
    args = parser.parse_args()

    from nbllm.notebook.session import session
    from nbllm.tools.tweets import load_tweets

    session.dtype = args.dtype
    if args.round_timing:
        print(f"CPU: {cpu_name()}", flush=True)
        round_timing(args.round_timing, args.model)
        return

    heldout = load_tweets(args.heldout, labels=tuple(LABELS), split="eval",
                          random_state=1234).reset_index(drop=True)
    print(f"CPU: {cpu_name()}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for slice_ in args.slices:
            df = load_tweets(args.n, labels=tuple(LABELS), split="dev",
                             random_state=slice_).reset_index(drop=True)
            for row in simulate(df, heldout, folder, f"slice{slice_}", args.model):
                results.append({"slice": slice_, **row})

    def fmt(value):
        return "-" if value is None else f"{value:.3f}"

    print("\n| slice | answers | held-out accuracy | rows not answered | checks estimate "
          "[95% interval] (checks) | choice | round s |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['slice']} | {r['answers']} | {fmt(r['heldout'])} | {fmt(r['rest'])} | "
              f"{fmt(r['check_accuracy'])} [{fmt(r['low'])}, {fmt(r['high'])}] "
              f"({r['checks']}) | {r['choice'] or '-'} | "
              f"{'-' if r['round_s'] is None else round(r['round_s'], 1)} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
