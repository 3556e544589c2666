"""GGUF files and their one-time conversion to safetensors.

De-quantizing a GGUF file is slow, so nbllm does it once, streaming one
tensor at a time (:mod:`nbllm.engine.loading.gguf_convert`), after checking that the
file can be converted and that the copy fits (:mod:`nbllm.engine.loading.room`), and
keeps the weights as safetensors in a folder of the cache, stored in the
dtype they run in (bfloat16 weights are half the bytes to read, and load
without a cast).  The folder is keyed by the file's content (its SHA-256,
computed once per path, size and modification time), that dtype, and the
versions of the libraries that convert it (a copy made under one
transformers is never served under another, which might build the tokenizer
or the weights differently).  Whether the tokenizer adds a BOS or EOS token
is the GGUF file's own declaration, kept in the copy's marker and applied at
every load (:mod:`nbllm.engine.loading.special_tokens`).  A bfloat16 or float16 copy
is derived from a float32 copy when there is one (a cast, seconds).  A
conversion is written to a temporary folder, made user-only (0700 folders,
0600 files), marked complete by a file written last, and renamed into place;
a converted folder that is incomplete or holds pickle files is deleted and
converted again.  Every failure to read a file is one clear error naming it.
"""

import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ...exceptions import ModelError
from ...warnings_to_user import warn
from ..cache_folder import cache_dir, discard, file_digest, is_stale, private_mkdir
from .room import check_room, weights_in
from .special_tokens import follow_special_tokens, read_declared_special_tokens
from ..status import report

# Written last into a converted model folder; see _seal.
COMPLETE_MARKER = "nbllm-complete.json"
# Weight formats that torch reads by unpickling.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# The one-off GGUF conversion's pace here, imports and the load included
# (benchmarks/RESULTS.md, 2 CPU cores): 9.6-10.1 s for the 98 MB embedded file,
# 27.8-27.9 s for Gemma 3's 253 MB (its 262k-token vocabulary dominates), 40-49 s
# for a 0.93 GB file with a 49k one.
CONVERSION_SECONDS_PER_100MB = 11
# The layout of a converted folder and its marker; raised when either changes.
CONVERSION_FORMAT = 4
# The libraries whose versions shape a converted copy (see converter_versions).
CONVERTERS = ("transformers", "tokenizers", "gguf")


# Short names of the dtypes a converted copy can be stored in.
STORED_DTYPES = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}


def dtype_name(dtype):
    """``'float32'`` for ``torch.float32`` or ``'float32'``.

    Raises
    ------
    ValueError
        If the dtype is not one a converted copy can be stored in.
    """
    name = str(dtype).replace("torch.", "")
    if name not in STORED_DTYPES:
        raise ValueError(
            f"converted GGUF copies are stored as {', '.join(STORED_DTYPES)}; got {name!r}"
        )
    return name


@functools.lru_cache(maxsize=None)
def converter_versions():
    """``'format 4, transformers 5.2.0, tokenizers 0.22.1, gguf 0.17.1'``.

    What shaped a converted copy besides the file and the dtype: transformers
    4.56 and 5.x build different tokenizers from the same GGUF file, so each
    version gets a copy of its own.  Read once per process (the libraries a
    process has imported do not change under it) from the installed
    packages' metadata, which imports none of them.
    """
    from importlib.metadata import version

    parts = [f"format {CONVERSION_FORMAT}"]
    parts += [f"{package} {version(package)}" for package in CONVERTERS]
    return ", ".join(parts)


def converted_folder(gguf_path, dtype="float32"):
    """Where the safetensors copy of a GGUF file, stored in ``dtype``, lives.

    Keyed by the file's content (:func:`file_digest`), the stored dtype and
    :func:`converter_versions`, not by where the file is: the same file in
    another virtualenv, a copy or a reinstall finds its copy again, two
    files never share one (two fine-tunes of one architecture included), a
    copy in one dtype is never read as another, and a copy made by other
    library versions is never served.
    """
    name = dtype_name(dtype)
    key = f"{file_digest(gguf_path)}|{name}|{converter_versions()}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "converted" / f"gguf-{STORED_DTYPES[name]}-{digest}"


# ------------------------------------------------- the converted-model cache


def _seal(folder, dtype, declared, source):
    """Make a freshly written model folder user-only and mark it complete.

    The marker lists every file with its size, the weights' dtype, the GGUF
    file's special-token declaration and the converter versions, and is
    written last, so a folder without it, or whose files differ from it, is
    an interrupted or damaged conversion.
    """
    files = {}
    for path in sorted(folder.rglob("*")):
        path.chmod(0o600 if path.is_file() else 0o700)
        if path.is_file():
            files[path.relative_to(folder).as_posix()] = path.stat().st_size
    fd = os.open(folder / COMPLETE_MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as marker:
        json.dump({"format": CONVERSION_FORMAT, "dtype": dtype, "files": files,
                   "special_tokens": declared, "source": source,
                   "converter": converter_versions()}, marker)


def read_marker(folder):
    """The completeness marker of a converted folder, as a dict.

    Raises
    ------
    FileNotFoundError
        If the folder or its marker is missing.
    ValueError
        If the marker's ``files`` is not a table of sizes.
    """
    marker = json.loads((folder / COMPLETE_MARKER).read_text())
    files = marker.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(size, int) for size in files.values()
    ):
        raise ValueError("not a table of file sizes")
    return marker


def declared_special_tokens(folder):
    """The GGUF file's special-token declaration kept in a converted folder.

    Returns
    -------
    dict
        ``{'add_bos_token': bool or None, 'add_eos_token': bool or None}``;
        None where the file does not say.
    """
    return read_marker(Path(folder))["special_tokens"]


def incomplete_reason(folder, dtype="float32"):
    """Why a converted model folder cannot be used, or None when it is complete."""
    try:
        marker = read_marker(folder)
        files, stored = marker["files"], marker.get("dtype")
    except FileNotFoundError:
        if not folder.exists():
            return "missing"
        return (
            f"it has no {COMPLETE_MARKER}: the conversion was interrupted or "
            "made by an older nbllm"
        )
    except (OSError, ValueError, AttributeError):
        return f"its {COMPLETE_MARKER} is unreadable"
    if stored is None or not isinstance(marker.get("special_tokens"), dict):
        return f"its {COMPLETE_MARKER} is of an older format: it was made by an older nbllm"
    if stored != dtype_name(dtype):
        return f"it holds {stored} weights, not {dtype_name(dtype)}"
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes instead of {size}"
    if "config.json" not in files or not any(n.endswith(".safetensors") for n in files):
        return "it has no config.json or no safetensors weights"
    # Torch unpickles these formats, which can run code; nothing in nbllm's
    # cache may be one, whoever put it there.
    pickles = sorted(p.name for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        return f"it holds {pickles[0]}, a pickle file, which nbllm never loads"
    return None


def _remove_leftovers(parent):
    """Delete temporary folders of conversions killed before they could clean up."""
    for path in [*parent.glob(".tmp-*"), *parent.glob(".broken-*")]:
        if is_stale(path):
            shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------- GGUF conversion


def brief_error(exc):
    """``'Type: message'`` of an exception, shortened for one-line error messages."""
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    # Whole message on one line: some put the useful part after a colon.
    text = " ".join(str(exc).split())
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{name}: {text}" if text else name


GGUF_MAGIC = b"GGUF"


def is_gguf_file(path):
    """Whether ``path`` is a file that starts with the GGUF magic bytes.

    Files are recognised by content, not name: Ollama keeps its models as
    ``sha256-...`` blobs without a suffix.
    """
    try:
        with open(path, "rb") as file:
            return file.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _check_gguf_magic(spec, path):
    """Reject a file that is not GGUF before transformers parses it.

    Raises
    ------
    ValueError
        If the file does not start with the GGUF magic bytes.
    """
    if not is_gguf_file(path):
        raise ModelError(
            f"Could not load model {spec!r}: {path} is not a GGUF file "
            "(it does not start with the GGUF magic bytes)"
        )


def _dequantize(gguf_path, reader, folder, dtype):
    """Write a GGUF file's config and weights into ``folder``; return its tokenizer.

    The weights stream tensor by tensor (:mod:`.gguf_convert`); transformers
    builds the tokenizer from the already-parsed file.
    """
    import torch
    from transformers import AutoTokenizer

    from ...compat import shared_reader
    from .gguf_convert import write_weights

    with shared_reader(gguf_path, reader):
        tokenizer = AutoTokenizer.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, trust_remote_code=False
        )
        write_weights(gguf_path, reader, folder, getattr(torch, dtype_name(dtype)))
    return tokenizer


def _convert_gguf(spec, gguf_path, target, dtype, source):
    """Convert a GGUF file into ``target``, after checking that it can and fits.

    The file is parsed once (:func:`.gguf_convert.open_reader`) for its
    special-token declaration, its size, the checks and the conversion.

    Raises
    ------
    ModelError
        If the file is unreadable, of an architecture or quantization type
        transformers or gguf cannot convert, or the conversion cannot fit
        (:func:`.room.check_room`), all before anything is written.
    """
    from .gguf_convert import check_convertible, open_reader

    try:
        reader = open_reader(gguf_path)
        declared = read_declared_special_tokens(reader)
        n_weights, largest = weights_in(reader)
    except (ImportError, MemoryError):
        raise  # a missing package or memory is not the file's fault
    except Exception as exc:
        raise _unreadable(spec, gguf_path, exc) from None
    check_convertible(spec, gguf_path, reader)
    check_room(spec, n_weights, largest, target, dtype)

    def write(folder):
        try:
            with quiet_progress():
                tokenizer = _dequantize(gguf_path, reader, folder, dtype)
        except (ImportError, MemoryError):
            raise
        except Exception as exc:
            raise _unreadable(spec, gguf_path, exc) from None
        follow_special_tokens(tokenizer, declared)
        tokenizer.save_pretrained(folder)
        return declared

    _write_folder(write, target, dtype, source)


def _unreadable(spec, gguf_path, exc):
    """The error for a GGUF file that cannot be read or converted."""
    return ModelError(
        f"Could not load model {spec!r}: the GGUF file {gguf_path} could not be "
        "read or converted, so it is probably truncated or damaged, or of an "
        f"architecture that transformers does not support ({brief_error(exc)})"
    )


def _write_folder(write, target, dtype, source):
    """Fill ``target`` atomically, user-only, marked complete.

    ``write(folder)`` writes the model into a temporary folder and returns
    the special-token declaration for the marker.  An interrupted write or a
    concurrent process never leaves a half-written model behind: the folder
    is renamed into place only once sealed.
    """
    private_mkdir(target.parent)
    _remove_leftovers(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-", dir=target.parent))
    try:
        declared = write(tmp)
        _seal(tmp, dtype_name(dtype), declared, source)
        try:
            os.replace(tmp, target)
        except OSError:
            # another process may have won the race
            if incomplete_reason(target, dtype) is not None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _cast_copy(model, tokenizer, declared):
    """A ``write`` for :func:`_write_folder`: save a loaded model in the folder's dtype."""

    def write(folder):
        with quiet_progress():
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
        return declared

    return write


def conversion_message(spec, gguf_path):
    """What a user waits for during the one-off conversion, with a time estimate."""
    seconds = max(5, round(gguf_path.stat().st_size / 1e8 * CONVERSION_SECONDS_PER_100MB))
    return (f"converting {spec} from GGUF, once (usually about {seconds} s; later "
            "loads use the converted copy)\u2026")


def converted_copy(spec, gguf_path, dtype="float32"):
    """Return the complete converted folder of a GGUF file in ``dtype``.

    Converts it if needed: from the float32 copy when there is a complete
    one (a cast), else from the GGUF file.  Both give the same weights:
    de-quantizing yields float32, which is then rounded to ``dtype`` once,
    exactly as a load with a cast would round it.
    """
    name = dtype_name(dtype)
    target = converted_folder(gguf_path, name)
    problem = incomplete_reason(target, name)
    if problem is None:
        return target
    if problem != "missing":
        warn(
            f"The converted copy of {gguf_path.name} in {target} is incomplete "
            f"({problem}); it is deleted and converted again."
        )
        discard(target)
    source = converted_folder(gguf_path, "float32")
    if name != "float32" and incomplete_reason(source, "float32") is None:
        report(f"storing a {name} copy of {spec}, once\u2026")
        try:
            source_model = _read_folder(source)
        except (ImportError, MemoryError):
            raise
        except Exception:
            source_model = None  # unreadable after all: de-quantize the file instead
        if source_model is not None:
            import torch

            model, tokenizer, declared = source_model
            model.to(getattr(torch, name))
            _write_folder(_cast_copy(model, tokenizer, declared), target, name,
                          _source(gguf_path))
            return target
    _check_gguf_magic(spec, gguf_path)
    report(conversion_message(spec, gguf_path))
    _convert_gguf(spec, gguf_path, target, name, _source(gguf_path))
    _remove_older_formats(gguf_path, name)
    return target


def _source(gguf_path):
    """What the marker says of the file a copy was converted from."""
    return {"file": gguf_path.name, "sha256": file_digest(gguf_path)}


def _remove_older_formats(gguf_path, dtype):
    """Delete the copies of this file in ``dtype`` that older nbllm versions made.

    Older formats named the folder after the file (``<stem>-f32-<key>``)
    and keyed it by where the file was, so this version never reads them
    again, and each holds the whole model (0.5 GB for the embedded one).
    Copies made under other library versions keep this format and stay:
    another environment may use them.
    """
    prefix = f"{gguf_path.stem}-{STORED_DTYPES[dtype]}-"
    for folder in converted_folder(gguf_path, dtype).parent.glob(prefix + "*"):
        try:
            made_by = read_marker(folder).get("format")
        except (OSError, ValueError, AttributeError):
            continue  # not ours to judge: damaged folders are handled on use
        if not isinstance(made_by, int) or made_by < CONVERSION_FORMAT:
            discard(folder)


def _read_folder(folder):
    """The float32 model, tokenizer and special-token declaration of a converted folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    declared = declared_special_tokens(folder)
    with quiet_progress():
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch.float32, use_safetensors=True
        )
    follow_special_tokens(tokenizer, declared)
    return model, tokenizer, declared


@contextlib.contextmanager
def quiet_progress():
    """Hide transformers' per-tensor progress bars.

    They would clutter every notebook cell that first touches a model;
    loading takes seconds.
    """
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()
