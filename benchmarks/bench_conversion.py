"""First load of a GGUF file: the one-off conversion's time and peak memory.

    HF_HUB_OFFLINE=1 python benchmarks/bench_conversion.py [--models smollm2-135m gemma3-270m]
        [--synthetic 0.7] [--dtype float32] [--keep DIR]

Each file is loaded in a new Python process with an empty cache folder, as a
user's first ``get_model`` would: from the first line (imports included) to
the loaded model, with the GGUF's SHA-256, the conversion and the load of the
converted copy.  The child's peak resident memory is its ``VmHWM``.  Then two
later loads, each in another new process with the same cache: the same spec,
and a copy of the file under another name (found again by its content: the
run fails if either converts again).  Their time is the later-load cost a
fresh notebook pays: imports of transformers' model code, the tokenizer and
the weights, with no conversion.

Targets (issue 29): peak RSS <= the converted copy's size + 800 MB; first
load <= 15 s per 100 MB of GGUF.  ``--synthetic GB`` adds Llama-family files
of about that many GB (Q4_K matrices, Q6_K embedding, SmolLM2's tokenizer),
written with gguf's writer (tests/synthetic_gguf.py), for sizes beyond the
installed models.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent

CHILD = """
import json, re, sys, time
t0 = time.perf_counter()
from nbllm.engine.loading import models
loaded = models.get_model({spec!r}, device="cpu", dtype={dtype!r})
seconds = time.perf_counter() - t0
hwm = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
print(json.dumps({{"seconds": seconds, "peak_bytes": hwm}}))
"""


def folder_bytes(folder):
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def load_in_child(spec, dtype, cache):
    """``get_model(spec)`` in a new process using ``cache``; its seconds and peak bytes."""
    env = dict(os.environ, NBLLM_CACHE_DIR=str(cache))
    out = subprocess.run([sys.executable, "-c", CHILD.format(spec=spec, dtype=dtype)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def converted_copies(cache):
    """The converted folders in ``cache`` (hidden temporary ones left out)."""
    return sorted(p for p in (cache / "converted").iterdir() if not p.name.startswith("."))


def later_loads(spec, path, dtype, cache, work):
    """Seconds of a later load of ``spec`` and of a renamed copy of its file.

    Raises
    ------
    RuntimeError
        If either load converted the file again.
    """
    before = converted_copies(cache)
    same = load_in_child(spec, dtype, cache)
    renamed = work / f"renamed-copy-{Path(path).stem}"  # no .gguf suffix either
    shutil.copyfile(path, renamed)
    try:
        copy = load_in_child(str(renamed), dtype, cache)
    finally:
        renamed.unlink()
    if converted_copies(cache) != before:
        raise RuntimeError(f"a later load of {spec} converted it again")
    return same["seconds"], copy["seconds"]


def first_load(spec, gguf_bytes, dtype, cache):
    """Run one first load in a child with an empty cache; return its figures."""
    result = load_in_child(spec, dtype, cache)
    copy_bytes = folder_bytes(converted_copies(cache)[0])
    result.update(
        spec=spec, gguf_mb=gguf_bytes / 1e6, copy_mb=copy_bytes / 1e6,
        peak_mb=result["peak_bytes"] / 1e6,
        peak_target_mb=(copy_bytes + 800 * 2**20) / 1e6,
        time_target_s=15 * gguf_bytes / 1e8,
    )
    return result


def synthetic(gb, folder):
    """A Llama GGUF file of about ``gb`` GB with SmolLM2's tokenizer."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from synthetic_gguf import write_llama_gguf

    from nbllm.engine.loading.embedded import embedded_model_path

    # Q4_K matrices take 0.5625 bytes per weight; 16 layers of hidden h and
    # intermediate 4h hold 16 * 16 * h^2 weights (plus a small embedding).
    hidden = max(256, int(((gb * 1e9 / 0.5625) / 256) ** 0.5) // 256 * 256)
    path = folder / f"synthetic-{gb:g}gb.gguf"
    write_llama_gguf(path, hidden=hidden, layers=16, heads=hidden // 64,
                     kv_heads=hidden // 256, intermediate=4 * hidden, matrix_type="Q4_K",
                     tokenizer_from=embedded_model_path("smollm2-135m"))
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=["smollm2-135m", "gemma3-270m"])
    parser.add_argument("--synthetic", nargs="*", type=float, default=[],
                        help="sizes in GB of synthetic Llama GGUF files to add")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args(argv)

    from nbllm.engine.loading.embedded import embedded_model_path

    work = Path(tempfile.mkdtemp(prefix="bench-conversion-"))
    try:
        specs = [(m, embedded_model_path(m)) for m in args.models]
        specs += [(str(p), p) for p in (synthetic(gb, work) for gb in args.synthetic)]
        rows = []
        for spec, path in specs:
            cache = work / f"cache-{len(rows)}"
            cache.mkdir()
            row = first_load(spec, path.stat().st_size, args.dtype, cache)
            row["later_s"], row["renamed_copy_s"] = later_loads(spec, path, args.dtype,
                                                                cache, work)
            shutil.rmtree(cache)
            rows.append(row)
            print(f"{Path(spec).name:>24}: GGUF {row['gguf_mb']:7.0f} MB, first load "
                  f"{row['seconds']:6.1f} s (target {row['time_target_s']:5.1f} s), peak RSS "
                  f"{row['peak_mb']:6.0f} MB (target {row['peak_target_mb']:6.0f} MB, "
                  f"copy {row['copy_mb']:.0f} MB); later loads {row['later_s']:.1f} s, "
                  f"a renamed copy {row['renamed_copy_s']:.1f} s", flush=True)
        print(json.dumps(rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
