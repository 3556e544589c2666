"""What the cache folder holds of GGUF models, and deleting it safely.

Each GGUF file loaded is converted once into a folder under
``cache_dir()/converted`` (:mod:`.gguf`), 0.5-1.1 GB for the small models and
more for larger ones; named models that come in chunks are joined once into
``cache_dir()/gguf``.  Nothing deletes a copy that another environment (other
library versions) may still read, so they pile up; :func:`converted_copies`
lists them with their sizes and :func:`delete_converted` removes them.

Deletion only ever touches direct children of those two folders, found by
listing them (never a path built from the user's words), and a converted copy
goes through :func:`nbllm.engine.cache_folder.discard`: renamed aside atomically, then removed,
so a process loading it sees the whole copy or none.
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ...exceptions import InputError
from .embedded import ASSEMBLED_FOLDER
from .models import loaded_models
from ..cache_folder import cache_dir, discard, is_stale
from .gguf import (
    CONVERSION_FORMAT,
    STORED_DTYPES,
    incomplete_reason,
    read_marker,
    converter_versions,
)

CONVERTED_FOLDER = "converted"
# Shown where a folder's marker does not say (made before markers named them).
UNKNOWN = "unknown (older nbllm)"
# The words of delete_converted that name several copies at once.
STALE, ALL = "stale", "all"


@dataclass(frozen=True)
class ConvertedCopy:
    """One folder under ``cache_dir()/converted``.

    Attributes
    ----------
    name : str
        The folder's name, which :func:`delete_converted` takes.
    source : str
        The GGUF file it was converted from, or ``UNKNOWN``.
    dtype : str
        The stored weights' dtype (``'float32'``...), or ``UNKNOWN``.
    size : int
        Bytes, the sum of its files' sizes.
    converter : str
        The nbllm format and library versions that made it, or ``UNKNOWN``.
    usable : bool
        Whether this environment loads it: complete, and made by this format
        and these library versions (:func:`.gguf.converter_versions`).
    status : str
        ``'usable'``, or why not, in a few words: ``'older nbllm'``,
        ``'newer nbllm'``, ``'other library versions'`` (another environment
        may use it), ``'incomplete: ...'``, ``'unknown dtype'``.
    last_used : float
        The weights files' last access time (seconds since the epoch) as the
        file system records it: Linux's default ``relatime`` updates it at
        most once a day, and a ``noatime`` mount keeps the time of writing.
    in_use : bool
        Whether a model loaded in this process was loaded from it.
    """

    name: str
    source: str
    dtype: str
    size: int
    converter: str
    usable: bool
    status: str
    last_used: float
    in_use: bool


@dataclass(frozen=True)
class CacheFile:
    """An assembled GGUF file, or a leftover of an interrupted conversion.

    ``stale`` is True for a leftover whose process is gone (or that is a day
    old), which :func:`delete_converted` removes; False while a conversion
    may still be writing it, and for assembled files.
    """

    name: str
    size: int
    stale: bool = False


@dataclass(frozen=True)
class CacheContents:
    """The converted copies, assembled GGUF files and leftovers in ``folder``."""

    folder: Path
    copies: tuple
    assembled: tuple
    leftovers: tuple

    @property
    def total(self):
        """Bytes taken by all of it together."""
        return sum(item.size for group in (self.copies, self.assembled, self.leftovers)
                   for item in group)


@dataclass(frozen=True)
class Deletion:
    """What :func:`delete_converted` removed (name, bytes) and kept (name, why)."""

    deleted: tuple
    kept: tuple

    @property
    def freed(self):
        return sum(size for _, size in self.deleted)


def _size(path):
    """Bytes of a file, or of the regular files under a folder (links not followed)."""
    if not path.is_dir():
        return path.lstat().st_size
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # removed while we looked
    return total


def _folders_in_use():
    """The converted folders that models loaded in this process came from.

    A GGUF model's :class:`.models.LoadedModel` keeps its self-check verdict
    in its converted folder, so that file's folder is the copy it uses.
    """
    return {Path(m.selfcheck_file).parent.resolve() for m in loaded_models()
            if getattr(m, "selfcheck_file", None) is not None}


def _describe(folder, in_use):
    """A :class:`ConvertedCopy` for one folder, read without loading anything."""
    try:
        marker = read_marker(folder)
    except (OSError, ValueError, AttributeError):
        marker = {}
    source = marker.get("source")
    source = source.get("file") if isinstance(source, dict) else None
    dtype, converter = marker.get("dtype"), marker.get("converter")
    made_by = marker.get("format")
    # The status's reasons in the order a load would meet them.
    if not marker:
        status = f"incomplete: {incomplete_reason(folder) or 'its marker changed as it was read'}"
    elif not isinstance(made_by, int) or made_by < CONVERSION_FORMAT or not isinstance(
            source, str):
        status = "older nbllm"
    elif dtype not in STORED_DTYPES:
        status = "unknown dtype"
    elif (problem := incomplete_reason(folder, dtype)) is not None:
        status = f"incomplete: {problem}"
    elif made_by > CONVERSION_FORMAT:
        status = "newer nbllm"
    elif converter != converter_versions():
        status = "other library versions"
    else:
        status = "usable"
    weights = [p for p in folder.glob("*.safetensors") if p.is_file()] or [folder]
    return ConvertedCopy(
        name=folder.name,
        source=source if isinstance(source, str) else UNKNOWN,
        dtype=dtype if isinstance(dtype, str) else UNKNOWN,
        size=_size(folder),
        converter=converter if isinstance(converter, str) else UNKNOWN,
        usable=status == "usable",
        status=status,
        last_used=max(p.stat().st_atime for p in weights),
        in_use=folder.resolve() in in_use,
    )


def _children(folder):
    """The entries of a folder, sorted, links left out (what they point at is
    not the cache's to size or delete)."""
    try:
        return sorted((p for p in folder.iterdir() if not p.is_symlink()),
                      key=lambda p: p.name)
    except FileNotFoundError:
        return []


def converted_copies():
    """List the converted GGUF copies, assembled GGUF files and leftovers.

    Reads only the folders' markers and file sizes: no model is loaded.

    Returns
    -------
    CacheContents
        Copies sorted by name; each with its source file, dtype, size,
        converter versions, whether this environment can use it and why not.
    """
    root = cache_dir()
    in_use = _folders_in_use()
    copies, leftovers = [], []
    for path in _children(root / CONVERTED_FOLDER):
        if not path.is_dir():
            continue
        try:
            if path.name.startswith((".tmp-", ".broken-")):
                leftovers.append(CacheFile(path.name, _size(path), is_stale(path)))
            elif not path.name.startswith("."):
                copies.append(_describe(path, in_use))
        except FileNotFoundError:
            continue  # deleted or renamed by another process while we looked
    assembled = [CacheFile(p.name, _size(p)) for p in _children(root / ASSEMBLED_FOLDER)
                 if p.is_file() and not p.name.startswith(".")]
    return CacheContents(root, tuple(copies), tuple(assembled), tuple(leftovers))


def _check_name(name):
    """Refuse anything but a bare entry name: the user's words never become a path."""
    if not isinstance(name, str) or not name.strip():
        raise InputError(
            f"Say what to delete: a converted copy's name, {STALE!r} or {ALL!r}; got {name!r}"
        )
    if name in (".", "..") or any(sep in name for sep in ("/", "\\", os.sep)):
        raise InputError(
            f"Cannot delete {name!r}: name a converted copy by its folder's name "
            "alone, without '/', '\\' or '..'"
        )


def delete_converted(what):
    """Delete converted copies from the cache folder.

    Parameters
    ----------
    what : str
        A converted copy's folder name or an assembled GGUF file's name (as
        :func:`converted_copies` lists them); ``'stale'``: every copy this
        environment cannot use (older nbllm, other library versions,
        incomplete) and the leftovers of interrupted conversions; ``'all'``:
        every copy and leftover (assembled GGUF files stay: delete them by
        name).  Copies used by a model loaded in this process are kept.

    Returns
    -------
    Deletion

    Raises
    ------
    InputError
        If ``what`` is not a bare name, names nothing in the cache, or names a
        copy that a model loaded in this process uses.
    """
    _check_name(what)
    contents = converted_copies()
    converted = contents.folder / CONVERTED_FOLDER
    deleted, kept = [], []
    if what in (STALE, ALL):
        for copy in contents.copies:
            if copy.usable and what == STALE:
                continue
            if copy.in_use:
                kept.append((copy.name, "used by a loaded model"))
                continue
            discard(converted / copy.name)
            deleted.append((copy.name, copy.size))
        for leftover in contents.leftovers:
            # A young leftover may be a conversion running in another process.
            if leftover.stale:
                discard(converted / leftover.name)
                deleted.append((leftover.name, leftover.size))
        return Deletion(tuple(deleted), tuple(kept))
    for copy in contents.copies:
        if copy.name == what:
            if copy.in_use:
                raise InputError(
                    f"Cannot delete {what!r}: a model loaded in this process uses it; "
                    "restart the kernel first"
                )
            discard(converted / copy.name)
            return Deletion(((copy.name, copy.size),), ())
    for gguf in contents.assembled:
        if gguf.name == what:
            # Unlinking a file is atomic; a reader holding it open keeps reading.
            (contents.folder / ASSEMBLED_FOLDER / gguf.name).unlink(missing_ok=True)
            return Deletion(((gguf.name, gguf.size),), ())
    raise InputError(
        f"Cannot delete {what!r}: {contents.folder} holds no converted copy or "
        "assembled GGUF file of that name"
    )


def size_text(n_bytes):
    """``'1.1 GB'``: a size in decimal units, as file managers show it."""
    for unit in ("bytes", "kB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            break
        n_bytes /= 1000
    return f"{n_bytes} bytes" if unit == "bytes" else f"{n_bytes:.1f} {unit}"


def time_text(seconds):
    """A timestamp as local ``'2026-12-07 05:40'``."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))
