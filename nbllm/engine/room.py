"""Whether a GGUF conversion fits this machine, checked before it starts.

transformers de-quantizes a whole GGUF file into float32 tensors in memory
before nbllm writes the converted copy, so a large file can exhaust the
machine's memory (and a notebook's kernel dies with its state) or fill the
disk halfway through.  The sizes are known beforehand from the file's tensor
index, so a conversion that cannot fit is refused with one error naming them,
before anything is written.
"""

import shutil

from ..exceptions import ModelError

# A conversion's peak memory per byte of float32 weights: transformers holds
# the de-quantized tensors and a copy while saving.  Measured on Gemma 3 270M
# (Q4_K_M): a 2.68 GB peak for 1.1 GB of float32 weights, 2.4x.
MEMORY_PER_FLOAT32_BYTE = 2.5
# Bytes per weight in the converted copy, by stored dtype.
STORED_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Room for the tokenizer files and the config beside the weights.
DISK_MARGIN_BYTES = 200 * 2**20


def weights_in(reader):
    """The number of weights a GGUF file holds (a ``gguf.GGUFReader``)."""
    return sum(int(tensor.n_elements) for tensor in reader.tensors)


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


def check_room(spec, n_weights, folder, dtype):
    """Raise unless converting ``n_weights`` weights into ``folder`` fits.

    Parameters
    ----------
    spec : str
        The model spec, for the message.
    n_weights : int
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
    memory_need = int(n_weights * 4 * MEMORY_PER_FLOAT32_BYTE)
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
