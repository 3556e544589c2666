"""The self-check: a fast backend is trusted only after it matched the plain path.

The first time a loaded model is scored, a small probe runs through the fast
backend and through the plain path (ordinary forward passes over prompt +
label: no padding, custom mask or cache; rows of equal length may share a
pass, which changes nothing).  The probe has what breaks a wrong fast path:
two short prompts of different lengths sharing a prefix (so the prefix KV
path and padding run), labels of one and two tokens sharing a first token,
and, when the config declares a sliding window, a prompt longer than the
widest window and a second group whose shared prefix itself is longer (both
within the context).  Token ids are drawn at random (seeded) from the model's
ordinary vocabulary.  On a model without windows it costs four forward
passes.
"""

import math
import random
import time

from .gguf import write_private_json

# Largest |difference| in log-probability accepted between two exact paths:
# float32 paths agree to ~1e-5; half precision rounds every matmul.
TOLERANCE = {"float32": 2e-3, "float64": 1e-6, "bfloat16": 0.15, "float16": 0.05}


def tolerance_for(dtype):
    """The accepted probe difference for a torch dtype."""
    return TOLERANCE.get(str(dtype).replace("torch.", ""), 0.15)


def probe_inputs(loaded, window=None, seed=0):
    """The probe's prompt groups (each with its shared prefix) and labels.

    Parameters
    ----------
    loaded : nbllm.engine.models.LoadedModel
    window : int or None
        The widest sliding window of the model, if any.

    Returns
    -------
    groups : list of (list of list of int, list of int)
        Prompts and the prefix they share.
    labels : list of list of int
    """
    tokenizer, config = loaded.tokenizer, loaded.model.config
    vocab = min(len(tokenizer), getattr(config, "vocab_size", None) or len(tokenizer))
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    ordinary = [i for i in range(vocab) if i not in special] or list(range(vocab))
    rng = random.Random(seed)

    def pick(n):
        return [rng.choice(ordinary) for _ in range(n)]

    first, other = rng.sample(ordinary, 2) if len(ordinary) > 1 else (ordinary[0],) * 2
    labels = [[first], [first, *pick(1)], [other, *pick(1)]]
    room = loaded.context_length - 4  # the longest label, and a margin
    shared = pick(4)
    prompts = [shared + pick(2), shared + pick(3)]
    if window and len(shared) + window + 4 <= room:
        prompts.append(shared + pick(window + 4))
    groups = [(prompts, shared)]
    if window and window + 6 <= room:
        long_prefix = pick(window + 2)
        groups.append(([long_prefix + pick(1), long_prefix + pick(3)], long_prefix))
    return groups, labels


class ProbeResult:
    """What the probe measured for one backend.

    Attributes
    ----------
    difference : float
        Largest |fast - plain| in log-probability (inf when the fast path
        failed or gave NaN).
    error : str or None
        The fast path's exception, one line, when it raised.
    seconds : float
        Time taken by both paths (0 for a remembered verdict).
    remembered : bool
        Whether the verdict was read back from an earlier process.
    """

    def __init__(self, difference, error, seconds, tolerance):
        self.difference, self.error, self.seconds = difference, error, seconds
        self.tolerance = tolerance
        # True when read back from an earlier process (see remembered_pass).
        self.remembered = False

    @property
    def passed(self):
        return self.error is None and self.difference <= self.tolerance

    def describe(self):
        """One line for a warning: what went wrong."""
        if self.error is not None:
            return f"it failed ({self.error})"
        return (f"its log-probabilities differ from a plain forward pass by up to "
                f"{self.difference:.3g} (tolerance {self.tolerance:g})")


def run_probe(loaded, backend, plain, window=None):
    """Score the probe with ``backend`` and with the ``plain`` one; compare.

    Returns
    -------
    ProbeResult
    """
    import numpy as np

    started = time.perf_counter()
    groups, labels = probe_inputs(loaded, window)
    tolerance = tolerance_for(loaded.dtype)
    worst, error = 0.0, None
    for prompts, shared in groups:
        expected = plain.score(prompts, labels)
        try:
            got = backend.score(prompts, labels, prefix_hint=shared)
        except Exception as exc:  # any failure of the fast path means: don't use it
            error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
            worst = math.inf
            break
        gap = np.abs(got - expected)
        worst = max(worst, math.inf if np.isnan(gap).any() else float(gap.max()))
    return ProbeResult(worst, error, time.perf_counter() - started, tolerance)


# ------------------------------------------------- verdicts kept across processes
#
# A model converted from GGUF is the same weights in every process, so a fast
# path that passed the probe once passes it again as long as the code that
# runs it (nbllm's engine, torch, transformers) and the dtype and device are
# the same.  The verdict is kept in the converted folder; any difference in
# that key means the probe runs again.  Only passes are kept: a failure is
# probed (and warned about) anew, so it can never be hidden by a stale file.

_ENGINE_DIGEST = None


def _engine_digest():
    """A hash of the engine's source files, read once per process."""
    global _ENGINE_DIGEST
    if _ENGINE_DIGEST is None:
        import hashlib
        from pathlib import Path

        h = hashlib.sha256()
        for path in sorted(Path(__file__).parent.glob("*.py")):
            h.update(path.name.encode() + b"|" + path.read_bytes())
        _ENGINE_DIGEST = h.hexdigest()[:16]
    return _ENGINE_DIGEST


def verdict_key(loaded, path_name):
    """What a kept verdict must match: model, dtype, device, code versions."""
    import torch
    import transformers

    device = loaded.device
    where = device.type
    if device.type == "cuda":
        where += ":" + torch.cuda.get_device_name(device)
    return {"fingerprint": loaded.fingerprint, "dtype": str(loaded.dtype),
            "device": where, "path": path_name, "engine": _engine_digest(),
            "torch": torch.__version__, "transformers": transformers.__version__}


def remembered_pass(loaded, path_name):
    """The kept :class:`ProbeResult` of ``path_name`` on this model, or None."""
    import json

    file = getattr(loaded, "selfcheck_file", None)
    if file is None:
        return None
    try:
        kept = json.loads(file.read_text())
        if kept.get("key") != verdict_key(loaded, path_name):
            return None
        result = ProbeResult(float(kept["difference"]), None, 0.0,
                             tolerance_for(loaded.dtype))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # missing, torn or foreign: probe again
    result.remembered = True
    return result if result.passed else None


def remember_pass(loaded, path_name, probe):
    """Keep a passed probe's verdict next to the model's converted weights."""
    file = getattr(loaded, "selfcheck_file", None)
    if file is None or not probe.passed:
        return
    # A read-only cache only costs the probe next time.
    write_private_json(file, {"key": verdict_key(loaded, path_name),
                              "difference": probe.difference})
