"""Where a model runs and in which dtype: ``'auto'`` resolved for this machine.

``device='auto'`` is CUDA when there is one, else the CPU; ``dtype='auto'`` is
bfloat16 where the hardware computes it natively (CUDA devices that support it,
CPUs with AVX512-BF16, AMX-BF16 or ARM's BF16) and float32 elsewhere, because
emulated bfloat16 is slower than float32.
"""

import re

from ...exceptions import OptionError

# The devices by name ('cuda:N' is CUDA device N): the device option's check
# (nbllm.options), the panel's menu and resolve_device all read these.
DEVICE_NAMES = ("auto", "cpu", "cuda")
EXPECTED_DEVICE = "must be 'auto', 'cpu', 'cuda' or 'cuda:N'"
DTYPE_NAMES = ("auto", "float32", "float16", "bfloat16")
VALID_DTYPES = DTYPE_NAMES  # the earlier name


def _is_torch(value, name):
    # Without importing torch: a torch.device or torch.dtype object.
    return type(value).__module__ == "torch" and type(value).__name__ == name


def is_device(value):
    """Whether ``value`` names a device nbllm takes (or is a torch.device)."""
    if _is_torch(value, "device"):
        return True
    return isinstance(value, str) and (
        value in DEVICE_NAMES or re.fullmatch(r"cuda:\d+", value) is not None)


def is_dtype(value):
    """Whether ``value`` names a dtype nbllm takes (or is a torch.dtype)."""
    return _is_torch(value, "dtype") or (isinstance(value, str) and value in DTYPE_NAMES)


def resolve_device(device):
    """Turn ``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'`` into a torch.device.

    Raises
    ------
    ValueError
        If the value is not a device name, or CUDA is asked for but missing.
    """
    import torch

    if not is_device(device):
        raise OptionError(f"device {EXPECTED_DEVICE}; got {device!r}", option="device")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(
            f"device={device!r} was requested but CUDA is not available on this "
            "machine; use device='auto' or 'cpu'", option="device")
    return resolved


def cpu_has_native_bf16():
    """Whether this machine's CPU computes bfloat16 matmuls natively.

    x86 CPUs with AVX512-BF16 or AMX-BF16 and ARM CPUs with the BF16
    extension run bfloat16 matmuls at two to four times their float32 speed;
    on any other CPU torch emulates bfloat16 and it is slower than float32.
    ``torch.backends.cpu.get_cpu_capability()`` names only the vector width
    ("AVX512"), not bf16 support, so the kernel's CPU flags decide.  The
    answer is read once per process.

    Returns
    -------
    bool
    """
    global _NATIVE_BF16
    if _NATIVE_BF16 is None:
        _NATIVE_BF16 = _read_bf16_flags()
    return _NATIVE_BF16


_NATIVE_BF16 = None
# /proc/cpuinfo flag names: x86 ("flags") and aarch64 ("Features").
_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def _read_bf16_flags():
    """The CPU's bf16 support from /proc/cpuinfo (Linux) or sysctl (macOS)."""
    import platform
    import subprocess

    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                name, _, value = line.partition(":")
                if name.strip().lower() in ("flags", "features"):
                    return bool(_BF16_FLAGS & set(value.split()))
    except OSError:
        pass
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        try:
            out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"],
                                 capture_output=True, text=True, timeout=5).stdout
            return out.strip() == "1"
        except (OSError, subprocess.SubprocessError):
            return False
    return False


def resolve_dtype(dtype, device):
    """Turn ``'auto'`` or a dtype name into a torch dtype for ``device``.

    ``'auto'`` means bfloat16 on CUDA devices that support it and on CPUs
    with native bfloat16 arithmetic (:func:`cpu_has_native_bf16`), else
    float32.  Pass ``'float32'`` for probabilities that match skorch's.
    """
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if not is_dtype(dtype):
        raise OptionError(
            f"dtype must be one of {', '.join(DTYPE_NAMES)}; got {dtype!r}", option="dtype")
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, dtype)


# The dtypes whose label logits scoring recomputes in float32
# (nbllm.engine.scoring.head).
LOW_PRECISION = ("bfloat16", "float16")


def is_low_precision(dtype):
    """Whether ``dtype`` (a torch dtype or its name) is bfloat16 or float16."""
    return str(dtype).replace("torch.", "") in LOW_PRECISION


def numerics_tag(dtype):
    """Bytes the result cache's key adds for runs in ``dtype``.

    Scoring recomputes the label logits of a half-precision model in float32
    (:mod:`nbllm.engine.scoring.head`).  Probabilities cached by a version of
    nbllm that rounded them differ from today's in the third decimal; the
    tag, part of a loaded model's fingerprint, keeps them apart.
    """
    return b"|label logits in float32" if is_low_precision(dtype) else b""
