"""nbllm's cache folder and the private files the engine writes in it.

Both halves of the engine keep files here: :mod:`nbllm.engine.loading` its
converted GGUF copies, assembled model files and the GGUF files' digests,
:mod:`nbllm.engine.scoring` the self-check's verdicts; the Labeler keeps its
answers under it too.  Everything written here is the user's only (0700
folders, 0600 files), replaced atomically, and only saves work: a file that
cannot be read or written costs that work again, never a wrong answer.
"""

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import platformdirs

# A temporary folder this old is a leftover, whatever its process.
STALE_SECONDS = 24 * 3600


def cache_dir():
    """Return nbllm's cache folder.

    ``$NBLLM_CACHE_DIR`` when it is set; else ``~/.cache/nbllm`` when that
    folder exists, since nbllm kept everything there on every system before
    it followed each system's convention, and the converted copies and the
    Labeler's answers in it must stay found; else the user cache folder of
    the system (``platformdirs.user_cache_dir``: ``~/.cache/nbllm`` or
    ``$XDG_CACHE_HOME/nbllm`` on Linux, ``~/Library/Caches/nbllm`` on macOS,
    ``%LOCALAPPDATA%\\nbllm\\Cache`` on Windows).
    """
    env = os.environ.get("NBLLM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    earlier = Path.home() / ".cache" / "nbllm"
    if earlier.is_dir():
        return earlier
    return Path(platformdirs.user_cache_dir("nbllm", appauthor=False))


# Where the SHA-256 of each GGUF file is remembered (in the cache folder),
# under its resolved path, size and modification time: a file is read whole
# once, not at every load.
DIGESTS_FILE = "gguf-digests.json"
# The same, for this process.
_digests = {}


def file_digest(gguf_path):
    """The SHA-256 of a GGUF file's bytes, computed once per path, size and mtime.

    Reading a 250 MB file takes about half a second; the answer is kept in
    ``DIGESTS_FILE`` so later processes only look it up.  A memo that cannot
    be read or written costs a re-read, never a wrong answer: it is keyed by
    what changes when the file does.
    """
    stat = gguf_path.stat()
    where = f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    if where in _digests:
        return _digests[where]
    memo_path = cache_dir() / DIGESTS_FILE
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    memo = memo if isinstance(memo, dict) else {}
    digest = memo.get(where)
    if not (isinstance(digest, str) and len(digest) == 64):
        sha = hashlib.sha256()
        with open(gguf_path, "rb") as file:
            for block in iter(lambda: file.read(1 << 22), b""):
                sha.update(block)
        digest = memo[where] = sha.hexdigest()
        write_private_json(memo_path, memo)
    _digests[where] = digest
    return digest


def write_private_json(path, data):
    """Replace a small JSON file of the cache atomically, readable by the user only.

    Readers see the old file or the new one.  A failure (a read-only cache)
    is swallowed: these files only save work (a digest, a self-check's
    verdict), so losing one costs that work again, never a wrong answer.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        private_mkdir(path.parent)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def private_mkdir(path):
    """Create a folder, and any missing parents, readable by the user only (0700).

    Folders that already exist keep their mode: a user may share a cache on
    purpose.
    """
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)


def discard(folder):
    """Move a folder of the cache aside, then delete it (a damaged copy, a leftover)."""
    aside = folder.with_name(f".broken-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        # A rename is atomic: other processes see the old folder or none.
        os.replace(folder, aside)
    except FileNotFoundError:
        return  # another process removed it first
    shutil.rmtree(aside, ignore_errors=True)


def is_stale(path):
    """Whether a ``.tmp-<pid>-*`` or ``.broken-<pid>-*`` folder is left over.

    It is when its process is gone, or when it is older than STALE_SECONDS.
    """
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        return False
    if age > STALE_SECONDS:
        return True
    pid = path.name.split("-")[1]
    # On Windows os.kill(pid, 0) would terminate the process: rely on age there.
    if os.name != "posix" or not pid.isdigit() or int(pid) <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass  # it exists but belongs to another user
    return False
