"""The result cache: label log-probabilities keyed by what determines them.

A result depends only on the model's weights, the prompt's token ids and the
labels' token ids, so that triple is the key.  The in-memory cache is
process-wide, so sklearn clones, repeated notebook cells and the panel all
share it, and bounded in bytes: the least recently used results go first.  An optional SQLite file under a cache folder keeps results across
processes: reruns are instant and an interrupted job resumes where it stopped.
"""

import contextlib
import hashlib
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import cachetools
import numpy as np

from ...warnings_to_user import warn

DISK_CACHE_FILE = "results.sqlite"
# The in-memory result cache's bound (the session's result_cache_mb sets it;
# see ResultCache.set_max_bytes).  The disk cache has none.
DEFAULT_MAX_BYTES = 512 * 2**20
# What one entry costs besides a result's own float64 values, in bytes: its
# 20-byte key, the array object, its size and its slots in the LRU's three
# tables.  Counted at the worst measured (benchmarks/bench_result_cache.py,
# RESULTS.md): a cache that has been evicting keeps deleted slots until a
# table is rebuilt, and a rebuild briefly holds two tables, so it holds up to
# twice what a fresh fill does.  A text-level key's entry costs INDEX_BYTES,
# the result key it points at included.
ENTRY_BYTES = 750
INDEX_BYTES = 600
_SQL_CHUNK = 500  # keys per SELECT, below SQLite's variable limit
_BUSY_TIMEOUT = 60.0  # seconds to wait for another process's write lock
_OPEN_TRIES = 3  # a damaged file is moved aside at most this often per open
_CREATE = (
    "CREATE TABLE IF NOT EXISTS results "
    "(key BLOB PRIMARY KEY, logprobs BLOB NOT NULL, digest BLOB NOT NULL)"
)
# PRAGMA table_info as (name, type, notnull, pk): anything else is not our file.
_COLUMNS = [("key", "BLOB", 0, 1), ("logprobs", "BLOB", 1, 0), ("digest", "BLOB", 1, 0)]
_CORRUPT_CODES = {11: "database disk image is malformed",  # SQLITE_CORRUPT
                  26: "file is not a database"}  # SQLITE_NOTADB
_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_SIDE_FILES = ("-wal", "-shm")


def result_key(fingerprint, prompt_ids, label_ids):
    """A compact, collision-resistant key for one (model, prompt, labels) triple."""
    h = hashlib.blake2b(digest_size=20)
    h.update(fingerprint.encode())
    h.update(np.asarray(prompt_ids, dtype=np.int64).tobytes())
    for ids in label_ids:
        h.update(b"|")
        h.update(np.asarray(ids, dtype=np.int64).tobytes())
    return h.digest()


def text_result_key(fingerprint, how, prompt, label_ids):
    """The key of one (model, rendered prompt text, labels) triple.

    ``how`` names what else decides the prompt's token ids (special tokens,
    truncation).  It lets a rerun skip tokenizing: the same text under the
    same model and settings always gives the same token ids.  Its own hash
    person keeps it apart from :func:`result_key`'s keys.
    """
    h = hashlib.blake2b(digest_size=20, person=b"nbllm-text")
    h.update(fingerprint.encode())
    h.update(b"|" + how.encode() + b"|")
    h.update(prompt.encode("utf-8", "surrogatepass"))
    for ids in label_ids:
        h.update(b"|")
        h.update(np.asarray(ids, dtype=np.int64).tobytes())
    return h.digest()


class ResultCache:
    """In-memory map from :func:`result_key` to per-label log-probabilities.

    A least-recently-used cache bounded in bytes (cachetools' ``LRUCache``):
    beyond :attr:`max_bytes` the results used longest ago are dropped; a
    disk cache, when there is one, still has them.  Each result is stored
    once; a text-level key (:func:`text_result_key`) points at its result's
    key instead of holding a copy.

    Parameters
    ----------
    max_bytes : int
        The bound, in bytes (0 keeps nothing).

    Attributes
    ----------
    hits, misses : int
        Lookups answered from the cache and lookups that were not.
    """

    def __init__(self, max_bytes=DEFAULT_MAX_BYTES):
        self._entries = _Entries(max_bytes)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self):
        """The number of results (text-level keys are not counted)."""
        return self._entries.results

    @property
    def max_bytes(self):
        """The bound, in bytes."""
        return self._entries.maxsize

    @property
    def nbytes(self):
        """The memory the entries take now, in bytes (as :data:`ENTRY_BYTES`
        and :data:`INDEX_BYTES` count it)."""
        return self._entries.currsize

    def set_max_bytes(self, n):
        """Bound the cache to ``n`` bytes, dropping the least recently used
        entries beyond it (0 keeps nothing)."""
        n = int(n)
        with self._lock:
            if n == self._entries.maxsize:
                return
            old, self._entries = self._entries, _Entries(n)
            # popitem() hands out the least recently used entry first, so
            # the new cache keeps the same order and drops the oldest.
            while old:
                self._entries.put(*old.popitem())

    def get_many(self, keys, disk=None):
        """Return a list with the cached array or None for each key.

        Keys missing in memory are looked up in ``disk`` (a :class:`DiskCache`)
        when given; what is found there is kept in memory too.
        """
        with self._lock:
            found = [self._entries.result(k) for k in keys]
        if disk is not None:
            missing = [k for k, v in zip(keys, found) if v is None]
            from_disk = disk.get_many(missing) if missing else {}
            if from_disk:
                with self._lock:
                    for key, value in from_disk.items():
                        self._entries.put(key, value)
                found = [from_disk.get(k) if v is None else v for k, v in zip(keys, found)]
        with self._lock:
            hits = sum(v is not None for v in found)
            self.hits += hits
            self.misses += len(keys) - hits
        return found

    def peek_many(self, text_keys):
        """The cached array or None per text-level key, from memory only.
        Only hits are counted: a miss here is looked up again by token ids."""
        with self._lock:
            found = [self._entries.result(self._entries.get(k)) for k in text_keys]
            self.hits += sum(v is not None for v in found)
        return found

    def put_text_many(self, pairs):
        """Point ``(text key, result key)`` pairs at their results, in memory
        only (a new process tokenizes once and finds the result key there)."""
        with self._lock:
            for text_key, key in pairs:
                self._entries.put(text_key, bytes(key))

    def put_many(self, keys, values, disk=None):
        """Store one float64 array of log-probabilities per key (and on disk)."""
        arrays = [np.array(v, dtype=np.float64) for v in values]
        with self._lock:
            for key, array in zip(keys, arrays):
                self._entries.put(key, array)
        if disk is not None:
            disk.put_many(keys, arrays)

    def clear(self):
        """Drop every entry and reset the counters."""
        with self._lock:
            self._entries = _Entries(self._entries.maxsize)
            self.hits = self.misses = 0


class _Entries(cachetools.LRUCache):
    """cachetools' LRU over both kinds of entry, sized by :func:`_entry_bytes`.

    A result is a float64 array under its :func:`result_key`; a text-level
    key holds the bytes of that result key.  ``results`` counts the arrays.
    """

    def __init__(self, max_bytes):
        super().__init__(max_bytes, getsizeof=_entry_bytes)
        self.results = 0

    def put(self, key, value):
        """Store ``value``, unless it alone is larger than the bound."""
        if _entry_bytes(value) > self.maxsize:
            return
        if key in self:
            del self[key]  # so that ``results`` counts a replaced array once
        self[key] = value
        if isinstance(value, np.ndarray):
            self.results += 1

    def result(self, key):
        """The array stored under ``key``, or None (also for a text key)."""
        value = None if key is None else self.get(key)
        return value if isinstance(value, np.ndarray) else None

    def __delitem__(self, key):
        # Every removal goes through here, evictions included.  Cache's own
        # lookup reads the value without marking it as used.
        is_result = isinstance(cachetools.Cache.__getitem__(self, key), np.ndarray)
        super().__delitem__(key)
        self.results -= is_result


def _entry_bytes(value):
    """The memory one entry takes: a result's array, or a text key's pointer."""
    if isinstance(value, np.ndarray):
        return ENTRY_BYTES + value.nbytes
    return INDEX_BYTES


class DiskCache:
    """Results in an SQLite file (WAL mode), shared by processes on one disk.

    Values are the raw float64 log-probabilities, not pickles, each with a
    short digest of key and value, so that a torn or foreign row reads as a
    miss instead of a wrong result.  Each :meth:`put_many` is one
    transaction, so a batch is either stored whole or not at all, and an
    interrupted or killed job keeps every batch it finished.

    A damaged file (truncated, overwritten, not SQLite, or another layout) is
    moved aside to ``results.sqlite.corrupt-<time>`` with a warning, and an
    empty cache takes its place; this happens when the file is opened and
    whenever SQLite reports corruption later.  A new folder is created 0700
    and the files 0600.

    SQLite's WAL mode is safe for several processes on a local disk; on a
    network file system its locking is not reliable, so give each machine its
    own folder there.

    Parameters
    ----------
    path : str or Path
        The SQLite file; its folder is created if needed.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._lock = threading.Lock()
        _private_folder(self.path.parent)
        self._conn, self._file = self._open()

    def __len__(self):
        count = "SELECT COUNT(*) FROM results"
        return self._run(lambda conn: conn.execute(count).fetchone()[0])

    def get_many(self, keys):
        """Return {key: array} for the keys that are stored intact."""
        return self._run(lambda conn: _select(conn, keys))

    def put_many(self, keys, values):
        """Store a batch atomically."""
        rows = []
        for key, value in zip(keys, values):
            blob = np.asarray(value, dtype=np.float64).tobytes()
            rows.append((bytes(key), blob, _digest(key, blob)))
        self._run(lambda conn: _insert(conn, rows))

    def clear(self):
        """Delete every stored result."""
        self._run(lambda conn: conn.execute("DELETE FROM results"))

    def close(self):
        """Close the connection (the object is unusable afterwards)."""
        with self._lock:
            self._conn.close()

    # ---------------------------------------------------------- internals
    def _run(self, op):
        """``op(connection)`` under the lock, rebuilding a damaged file once."""
        with self._lock:
            try:
                return _retry_busy(lambda: op(self._conn))
            except sqlite3.DatabaseError as exc:
                reason = _damage(exc)
                if reason is None:
                    raise
                self._conn.close()
                self._move_aside(self._file, reason)
                self._conn, self._file = self._open()
                return _retry_busy(lambda: op(self._conn))

    def _open(self):
        """Connect and check the file; return (connection, file identity)."""
        for _ in range(_OPEN_TRIES):
            _private_file(self.path)
            seen = _file_id(self.path)
            # Autocommit mode: transactions are opened explicitly in _insert.
            conn = sqlite3.connect(str(self.path), timeout=_BUSY_TIMEOUT,
                                   isolation_level=None, check_same_thread=False)
            try:
                _retry_busy(lambda: _prepare(conn))
            except sqlite3.DatabaseError as exc:
                conn.close()
                reason = _damage(exc)
                if reason is None:
                    raise
                self._move_aside(seen, reason)
                continue
            except BaseException:
                conn.close()
                raise
            # Only now that the file is known to be ours: tighten what an
            # older version may have left wider.
            for suffix in ("",) + _SIDE_FILES:
                _chmod_own(f"{self.path}{suffix}", 0o600)
            return conn, seen
        raise sqlite3.DatabaseError(
            f"the result cache {self.path} was damaged again after being rebuilt "
            f"{_OPEN_TRIES} times; is another program writing to it?"
        )

    def _move_aside(self, seen, reason):
        """Rename the damaged file (and its -wal/-shm) and warn.

        ``seen`` identifies the file found damaged: when another process has
        already replaced it, the new file is left alone.
        """
        with _folder_lock(self.path.parent):
            if seen is None or _file_id(self.path) != seen:
                return
            aside = _aside_name(self.path)
            for suffix in ("",) + _SIDE_FILES:
                try:
                    os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
                except FileNotFoundError:
                    pass
        warn(
            f"The result cache {self.path} is damaged ({reason}); moved it to "
            f"{aside} and started an empty one."
        )


def _prepare(conn):
    """Check the file, then set WAL mode and create the table.

    The checks come first and only read, so that a file which is not ours
    (another program's database that happens to have this name) is moved
    aside exactly as it was found.
    """
    # quick_check reads every page, once per process and folder (0.07 s for
    # 200k rows), and catches truncation that a lookup of a few keys might
    # only hit later, or never.
    if [row[0] for row in conn.execute("PRAGMA quick_check")] != ["ok"]:
        raise _Damaged("it fails SQLite's integrity check")
    names = conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
    tables = {name for (name,) in names if not name.startswith("sqlite_")}
    columns = [(r[1], r[2], r[3], r[5]) for r in conn.execute("PRAGMA table_info(results)")]
    if tables and (tables != {"results"} or columns != _COLUMNS):
        raise _Damaged("it holds other tables or columns than nbllm's results")
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a killed process loses nothing committed; only a
    # power cut may drop the last transactions, never corrupting the file.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(_CREATE)


def _select(conn, keys):
    """{key: array} for the stored keys whose row checks out."""
    found = {}
    for start in range(0, len(keys), _SQL_CHUNK):
        chunk = [bytes(k) for k in keys[start:start + _SQL_CHUNK]]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT key, logprobs, digest FROM results WHERE key IN ({marks})", chunk
        )
        for key, blob, digest in rows:
            # A torn or foreign row is a miss: it is recomputed and replaced.
            if blob and len(blob) % 8 == 0 and digest == _digest(key, blob):
                found[bytes(key)] = np.frombuffer(blob, dtype=np.float64).copy()
    return found


def _insert(conn, rows):
    """Insert or replace rows in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT OR REPLACE INTO results (key, logprobs, digest) VALUES (?, ?, ?)", rows
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _digest(key, blob):
    """8 bytes that tie a value to its key: not a MAC, a check for damage."""
    h = hashlib.blake2b(digest_size=8)
    h.update(len(key).to_bytes(4, "little"))
    h.update(bytes(key))
    h.update(bytes(blob))
    return h.digest()


class _Damaged(sqlite3.DatabaseError):
    """A readable SQLite file that is not an intact nbllm result cache."""


def _damage(exc):
    """Why ``exc`` means the file is damaged, or None for other errors."""
    if isinstance(exc, _Damaged):
        return str(exc)
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return _CORRUPT_CODES.get(code & 0xFF)
    message = str(exc)
    return next((m for m in _CORRUPT_CODES.values() if m in message), None)


def _retry_busy(op):
    """Run ``op()``, retrying while another process holds the database.

    The connection's busy timeout covers most waits, but SQLite skips the
    busy handler in a few cases (e.g. while another connection recovers the
    WAL after a crash), so "database is locked" is retried here as well.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT
    delay = 0.005
    while True:
        try:
            return op()
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            busy = (code & 0xFF in _BUSY_CODES) if code is not None else (
                "locked" in str(exc) or "busy" in str(exc))
            if not busy or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(2 * delay, 0.25)


def _file_id(path):
    """(device, inode) of a file, or None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _aside_name(path):
    """``<name>.corrupt-<time>``, with a counter when that is taken."""
    stem = f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
    aside, n = path.with_name(stem), 1
    while any(os.path.lexists(f"{aside}{s}") for s in ("",) + _SIDE_FILES):
        n += 1
        aside = path.with_name(f"{stem}-{n}")
    return aside


@contextlib.contextmanager
def _folder_lock(folder):
    """Hold an exclusive lock on the folder, so that only one process moves
    a damaged file aside; without flock (Windows, some network file systems)
    the inode check in :meth:`DiskCache._move_aside` still narrows the race."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _private_folder(folder):
    """Create ``folder`` and its missing parents with mode 0700.

    A folder that exists already keeps its mode.  It was chosen by the user
    (a project folder, a team's shared cache, the working directory), and
    tightening it could break other programs.  The cache files in it are
    0600 anyway, so other users can neither read nor change results; if
    they can write the folder itself they can only delete or replace the
    file, which is detected as damage or, at worst, gives wrong labels:
    nothing from the cache is ever unpickled or executed.
    """
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:  # another process made it just now
            continue
        _chmod_own(path, 0o700)  # mkdir's mode is reduced by the umask


def _private_file(path):
    """Create the database file as 0600 unless it exists.

    SQLite gives its -wal and -shm files the database file's mode, so they
    are 0600 too.  fchmod sets the mode exactly, whatever the umask.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _chmod_own(path, mode):
    """Set ``mode`` on a file this user owns; leave other users' files alone."""
    if os.name != "posix":
        return
    try:
        st = os.stat(path)
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) != mode:
            os.chmod(path, mode)
    except (FileNotFoundError, PermissionError):
        pass


_disk_caches = {}
_disk_lock = threading.Lock()


def disk_cache(folder=None):
    """The shared :class:`DiskCache` of a folder, or None for memory only.

    Parameters
    ----------
    folder : str, Path or None
        None means ``$NBLLM_CACHE_DIR`` when it is set, else no disk cache.
    """
    if folder is None:
        folder = os.environ.get("NBLLM_CACHE_DIR")
        if not folder:
            return None
    path = (Path(folder).expanduser() / DISK_CACHE_FILE).resolve()
    with _disk_lock:
        if path not in _disk_caches:
            _disk_caches[path] = DiskCache(path)
        return _disk_caches[path]


result_cache = ResultCache()
