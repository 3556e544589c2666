"""The self-check: a fast backend is trusted only after it matched the plain path.

The first time a loaded model is scored, a small probe runs through the fast
backend and through the plain path (ordinary forward passes over prompt +
label: no padding, custom mask or cache; rows of equal length may share a
pass, which changes nothing).  The probe has what breaks a wrong fast path:
prompts of ragged lengths under nested shared prefixes (two branches of a
common head, one of them branching again at the end of a prompt, and a call
whose prompts share nothing), so the prefix KV path and
padding run; labels of one and two tokens sharing a first token; and, when
the config declares a sliding window, a prompt longer than the widest window
and a group whose shared prefix itself is longer (both within the context).
Token ids are drawn at random (seeded) from the model's ordinary vocabulary.
On a model without windows it costs nine short forward passes (twelve in
half precision, see below).

A model in bfloat16 or float16 is judged in float32.  Two exact paths in
half precision round differently (on Gemma 3's 262k vocabulary by up to 0.19
in log-probability), so a half-precision tolerance wide enough for rounding
also lets a slightly wrong mask through.  In float32 both paths agree to
~1e-5 (Gemma: 2.5e-5), so the float32 tolerance tells rounding from a wrong
path.  For the
probe, each half-precision weight and buffer holds a float32 copy of its
values; its own storage is put back afterwards, bit for bit.  That costs
twice the half-precision weights' bytes for the probe's duration, so it is
done only where the memory is free (and not for a quantized model); otherwise
the probe judges in the model's own dtype with that dtype's tolerance, as
:attr:`ProbeResult.judged_in` records.  What only half precision runs (masks in the weights' dtype, the
float32 label logits) is then run once more in the model's own dtype, and
must give finite log-probabilities without an error.
"""

import contextlib
import hashlib
import itertools
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import transformers

from ..cache_folder import write_private_json
from ..loading.devices import LOW_PRECISION
from ..loading.room import available_memory

# Largest |difference| in log-probability accepted between two exact paths:
# float32 paths agree to ~1e-5; half precision rounds every matmul.
TOLERANCE = {"float32": 2e-3, "float64": 1e-6, "bfloat16": 0.15, "float16": 0.05}
# Memory for the probe's own activations on top of the float32 copies: its
# prompts are short, but a 262k vocabulary's float32 logits are wide.
PROBE_MARGIN_BYTES = 256 * 2**20


def _name(dtype):
    return str(dtype).replace("torch.", "")


def tolerance_for(dtype):
    """The accepted probe difference for a torch dtype (or its name)."""
    return TOLERANCE.get(_name(dtype), 0.15)


def probe_inputs(loaded, window=None, seed=0):
    """The probe's prompt groups (each with its prefix hint) and labels.

    Each group is scored in one call.  The first nests shared prefixes under
    a common head H, hinted with H: H+B, H+B+x and H+B+yy (a prompt that
    ends where two longer ones branch) and H+C, in three lengths.  The
    second, without a hint, puts a prompt that shares nothing beside H+C.

    Parameters
    ----------
    loaded : nbllm.engine.loading.models.LoadedModel
    window : int or None
        The widest sliding window of the model, if any.

    Returns
    -------
    groups : list of (list of list of int, list of int or None)
        Prompts and their prefix hint.
    labels : list of list of int
    """
    tokenizer, config = loaded.tokenizer, loaded.model.config
    vocab = min(len(tokenizer), getattr(config, "vocab_size", None) or len(tokenizer))
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    ordinary = [i for i in range(vocab) if i not in special] or list(range(vocab))
    rng = random.Random(seed)

    def pick(n):
        return [rng.choice(ordinary) for _ in range(n)]

    def distinct(n):  # first tokens of branches that must differ
        return rng.sample(ordinary, n) if len(ordinary) >= n else pick(n)

    first, other = distinct(2)
    labels = [[first], [first, *pick(1)], [other, *pick(1)]]
    room = loaded.context_length - 4  # the longest label, and a margin
    h, b, c, x, y, alone = distinct(6)
    head, branch = [h, *pick(2)], [b, *pick(1)]
    under_c = head + [c, *pick(1)]
    # Lengths 5, 6, 7 and 5.
    prompts = [head + branch, head + branch + [x], head + branch + [y, *pick(1)], under_c]
    if window and len(head) + window + 4 <= room:
        prompts.append(head + pick(window + 4))
    groups = [(prompts, head), ([[alone, *pick(len(under_c) - 1)], under_c], None)]
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
    tolerance : float
        The largest difference accepted in ``judged_in``.
    judged_in : str
        The dtype the verdict was reached in: ``'float32'`` for a model in
        half precision with room for a float32 copy, else the model's own;
        for a failure, the dtype the fast path failed in.
    remembered : bool
        Whether the verdict was read back from an earlier process.
    """

    def __init__(self, difference, error, seconds, tolerance, judged_in="float32"):
        self.difference, self.error, self.seconds = difference, error, seconds
        self.tolerance, self.judged_in = tolerance, judged_in
        # True when read back from an earlier process (see remembered_pass).
        self.remembered = False

    @property
    def passed(self):
        return self.error is None and self.difference <= self.tolerance

    def describe(self):
        """One line for a warning: what went wrong, and in which dtype."""
        if self.error is not None:
            return f"it failed in {self.judged_in} ({self.error})"
        return (f"its log-probabilities differ from a plain forward pass by up to "
                f"{self.difference:.3g} (judged in {self.judged_in}, tolerance "
                f"{self.tolerance:g})")

    def __repr__(self):
        return (f"ProbeResult(difference={self.difference:.3g}, error={self.error!r}, "
                f"judged_in={self.judged_in!r}, passed={self.passed})")


# ------------------------------------------------- judging in float32


def half_precision_tensors(model):
    """The model's parameters and buffers stored in bfloat16 or float16, each once.

    A tied weight is one Parameter, listed once.  A quantized model (one with
    integer weights, whose kernels expect half-precision inputs) gets none:
    it is judged in its own dtype.
    """
    if not all(p.is_floating_point() for p in model.parameters()):
        return []
    return [t for t in itertools.chain(model.parameters(), model.buffers())
            if _name(t.dtype) in LOW_PRECISION]


def _free_bytes(device):
    """Bytes free for new tensors on ``device``, or None where unknown."""
    if device.type == "cpu":
        return available_memory()
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # Blocks torch's allocator holds unused are free to it too.
        return (free + torch.cuda.memory_reserved(device)
                - torch.cuda.memory_allocated(device))
    return None


def room_for_float32(tensors):
    """Whether each device holding ``tensors`` has room for their float32 copies.

    Where the free memory is unknown, the answer is no: the probe must never
    be what exhausts a machine's memory (and a notebook's kernel with it).
    """
    need = {}
    for tensor in tensors:
        need[tensor.device] = need.get(tensor.device, 0) + 4 * tensor.numel()
    for device, n_bytes in need.items():
        free = _free_bytes(device)
        if free is None or free < n_bytes + PROBE_MARGIN_BYTES:
            return False
    return True


@contextlib.contextmanager
def in_float32(tensors):
    """Within the block, each of ``tensors`` holds a float32 copy of its values.

    Each tensor stays the same object (so a tied weight stays tied) and gets
    its own storage back afterwards, also when the block raises: the weights
    come back bit for bit, with no second rounding.  The probe runs under the
    scorer's lock, so no scoring on the model runs meanwhile.
    """
    originals = [t.data for t in tensors]
    try:
        for tensor in tensors:
            tensor.data = tensor.data.float()
        yield
    finally:
        for tensor, original in zip(tensors, originals):
            tensor.data = original
        if any(t.device.type == "cuda" for t in originals):
            # Hand the copies back, or the fast path's budget, sized to the
            # free memory, would shrink after the probe.
            torch.cuda.empty_cache()


# ------------------------------------------------- the probe


def _one_line(exc):
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"


def _private_caches(backend):
    """Give ``backend`` prefix caches of its own for one run of the probe.

    The probe's prompts must not evict a user's prefix, and a run in float32
    must not leave keys and values that a run in half precision would reuse.
    """
    if hasattr(backend, "prefix_caches"):
        backend.prefix_caches = {}


def _compare(groups, labels, backend, plain):
    """``(largest difference, error)`` of ``backend`` against ``plain``."""
    _private_caches(backend)
    worst = 0.0
    for prompts, hint in groups:
        expected = plain.score(prompts, labels)
        try:
            got = backend.score(prompts, labels, prefix_hint=hint)
        except Exception as exc:  # any failure of the fast path means: don't use it
            return math.inf, _one_line(exc)
        gap = np.abs(got - expected)
        worst = max(worst, math.inf if np.isnan(gap).any() else float(gap.max()))
    return worst, None


def _runs_in_own_dtype(groups, labels, backend):
    """The fast path's error in the model's own dtype, or None if it runs clean.

    The float32 judgement checked what the fast path computes; this runs
    what is particular to half precision (masks in the weights' dtype, the
    label logits' float32 hook), which must raise nothing and give finite
    log-probabilities.
    """
    _private_caches(backend)
    for prompts, hint in groups:
        try:
            got = backend.score(prompts, labels, prefix_hint=hint)
        except Exception as exc:
            return _one_line(exc)
        if not np.isfinite(got).all():
            return "its log-probabilities were not finite"
    return None


def _judge(loaded, groups, labels, backend, plain):
    """``(largest difference, error, dtype judged in)`` for the probe."""
    own = _name(loaded.dtype)
    half = half_precision_tensors(loaded.model)
    if half and room_for_float32(half):
        try:
            with in_float32(half):
                worst, error = _compare(groups, labels, backend, plain)
        except Exception:
            # The plain path itself cannot run in float32 (a model's own code
            # may insist on its dtype): judge it as it is loaded.
            pass
        else:
            if error is not None or worst > tolerance_for("float32"):
                return worst, error, "float32"
            error = _runs_in_own_dtype(groups, labels, backend)
            return (worst, None, "float32") if error is None else (math.inf, error, own)
    worst, error = _compare(groups, labels, backend, plain)
    return worst, error, own


def run_probe(loaded, backend, plain, window=None):
    """Score the probe with ``backend`` and with the ``plain`` one; compare.

    A model in half precision is compared in float32 where there is room
    (see the module's docstring), then run once more in its own dtype.

    Returns
    -------
    ProbeResult
    """
    started = time.perf_counter()
    groups, labels = probe_inputs(loaded, window)
    worst, error, judged_in = _judge(loaded, groups, labels, backend, plain)
    return ProbeResult(worst, error, time.perf_counter() - started,
                       tolerance_for(judged_in), judged_in)


# ------------------------------------------------- verdicts kept across processes
#
# A model converted from GGUF is the same weights in every process, so a fast
# path that passed the probe once passes it again as long as the code that
# runs it (nbllm's engine, torch, transformers) and the dtype and device are
# the same.  The verdict is kept in the converted folder; any difference in
# that key means the probe runs again.  Only passes are kept: a failure is
# probed (and warned about) anew, so it can never be hidden by a stale file.
# Only passes judged at full precision are kept (the key names the dtype they
# were judged in), so a half-precision pass, judged only as closely as
# rounding allows, is never taken for one judged in float32.

_ENGINE_DIGEST = None


def _engine_digest():
    """A hash of the engine's source files and nbllm.compat, read once per process.

    All of ``nbllm/engine``: the scoring code the probe judges and the
    loading code that decides what it runs on (dtype, special tokens); and
    ``nbllm/compat.py``, which picks the attention function.
    """
    global _ENGINE_DIGEST
    if _ENGINE_DIGEST is None:
        engine = Path(__file__).parents[1]
        h = hashlib.sha256()
        # compat.py picks the attention function the tree-mask passes run.
        for path in sorted(engine.rglob("*.py")) + [engine.parent / "compat.py"]:
            h.update(path.relative_to(engine.parent).as_posix().encode() + b"|"
                     + path.read_bytes())
        _ENGINE_DIGEST = h.hexdigest()[:16]
    return _ENGINE_DIGEST


def _full_precision(loaded):
    """The dtype a kept verdict on ``loaded`` must have been judged in."""
    name = _name(loaded.dtype)
    return "float32" if name in LOW_PRECISION else name


def verdict_key(loaded, path_name):
    """What a kept verdict must match: model, dtype, device, code versions, and
    the full-precision dtype it was judged in."""
    device = loaded.device
    where = device.type
    if device.type == "cuda":
        where += ":" + torch.cuda.get_device_name(device)
    return {"fingerprint": loaded.fingerprint, "dtype": str(loaded.dtype),
            "device": where, "path": path_name, "engine": _engine_digest(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "judged_in": _full_precision(loaded)}


def remembered_pass(loaded, path_name):
    """The kept :class:`ProbeResult` of ``path_name`` on this model, or None."""
    file = getattr(loaded, "selfcheck_file", None)
    if file is None:
        return None
    try:
        kept = json.loads(file.read_text())
        if kept.get("key") != verdict_key(loaded, path_name):
            return None
        judged_in = _full_precision(loaded)
        result = ProbeResult(float(kept["difference"]), None, 0.0,
                             tolerance_for(judged_in), judged_in)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # missing, torn or foreign: probe again
    result.remembered = True
    return result if result.passed else None


def remember_pass(loaded, path_name, probe):
    """Keep a passed probe's verdict next to the model's converted weights."""
    file = getattr(loaded, "selfcheck_file", None)
    if file is None or not probe.passed or probe.judged_in != _full_precision(loaded):
        return
    # A read-only cache only costs the probe next time.
    write_private_json(file, {"key": verdict_key(loaded, path_name),
                              "difference": probe.difference})
