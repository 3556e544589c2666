"""Whether a GGUF conversion fits this machine, checked before it starts.

The conversion streams one tensor at a time (:mod:`.gguf_convert`), then the
converted copy is loaded whole, so a large file can still exhaust the
machine's memory at the load (and a notebook's kernel dies with its state)
or fill the disk halfway through.  The sizes are known beforehand from the
file's tensor index, so a conversion that cannot fit is refused with one
error naming them, before anything is written.
"""

import shutil

from ...exceptions import ModelError
from .gguf_convert import SHARD_BYTES

# Memory beyond the weights: the tokenizer built from the file and the
# parsed header (Gemma 3's 262k-token vocabulary: ~0.4 GB), and slack.
MEMORY_MARGIN_BYTES = 600 * 2**20
# The conversion holds one shard of output and, while de-quantizing, the
# largest tensor in float32 about twice (before and after its processing).
LARGEST_TENSOR_COPIES = 2
# Bytes per weight in the converted copy, by stored dtype.
STORED_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Room for the tokenizer files and the config beside the weights.
DISK_MARGIN_BYTES = 200 * 2**20


def weights_in(reader):
    """``(weights, largest)``: how many weights a GGUF file holds, and its
    largest tensor's count (a ``gguf.GGUFReader``)."""
    counts = [int(tensor.n_elements) for tensor in reader.tensors]
    return sum(counts), max(counts, default=0)


def available_memory():
    """Bytes of memory available to a new allocation (Linux), or None if unknown."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def free_disk(folder):
    """Free bytes on the disk that holds ``folder`` (or its nearest existing parent)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _gb(n_bytes):
    return f"{n_bytes / 1e9:.1f} GB"


def check_room(spec, n_weights, largest, folder, dtype):
    """Raise unless converting ``n_weights`` weights into ``folder``, then
    loading them, fits.

    Memory: the larger of the loaded copy and the conversion's working set
    (one shard and the largest tensor in float32, twice), plus
    ``MEMORY_MARGIN_BYTES``.  Disk: the copy plus ``DISK_MARGIN_BYTES``.

    Parameters
    ----------
    spec : str
        The model spec, for the message.
    n_weights, largest : int
        From :func:`weights_in`.
    folder : pathlib.Path
        Where the converted copy will be written.
    dtype : str
        The stored dtype (``'float32'``, ``'bfloat16'`` or ``'float16'``).

    Raises
    ------
    ModelError
        Naming the memory and disk needed and available, and what to do.
    """
    working_set = SHARD_BYTES + LARGEST_TENSOR_COPIES * 4 * largest
    memory_need = max(n_weights * STORED_BYTES[dtype], working_set) + MEMORY_MARGIN_BYTES
    disk_need = n_weights * STORED_BYTES[dtype] + DISK_MARGIN_BYTES
    memory, disk = available_memory(), free_disk(folder.parent)
    short = []
    if memory is not None and memory < memory_need:
        short.append(f"{_gb(memory_need)} of memory ({_gb(memory)} available)")
    if disk < disk_need:
        short.append(f"{_gb(disk_need)} of disk in {folder.parent} ({_gb(disk)} free)")
    if short:
        raise ModelError(
            f"Could not load model {spec!r}: converting its GGUF file needs about "
            f"{' and '.join(short)}, so nothing was started. Free some, pass "
            "dtype='bfloat16' (half the disk), set NBLLM_CACHE_DIR to a folder with "
            "room, or use a smaller GGUF file"
        )
