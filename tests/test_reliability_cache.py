"""Reliability and security of the disk result cache (issue 7).

Damaged files are moved aside and rebuilt, files are private to the user, a
killed process leaves a consistent cache, processes and threads share it
safely, and nothing in it is ever unpickled.
"""

import ast
import os
import pickle
import re
import select
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import numpy as np
import pytest

from nbllm import ZeroShotClassifier
from nbllm.engine.scoring import result_cache as cache
from nbllm.engine.scoring.result_cache import DISK_CACHE_FILE, DiskCache, result_cache
from tiny import get_tiny_model, get_tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")

LABELS = ["negative", "positive"]
TEXTS = [f"text number {i} is here" for i in range(12)]
CHILD_ENV = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
                 TOKENIZERS_PARALLELISM="false")
CHILD_TIMEOUT = 120  # seconds; a child normally needs 5-15 s, mostly imports


def clf(folder, cache_dir, batch_size=2, **kwargs):
    cache_dir = None if cache_dir is None else str(cache_dir)
    return ZeroShotClassifier(folder, cache_dir=cache_dir, progress=False,
                              batch_size=batch_size, **kwargs).fit(None, LABELS)


def uncached(folder, texts, batch_size=2):
    """A fresh run that never touches a cache: the reference for cached runs."""
    return clf(folder, None, batch_size, use_caching=False).predict_proba(texts)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def cache_warnings(caught):
    """The messages of the result cache's warnings among everything caught."""
    return [str(w.message) for w in caught
            if w.category is UserWarning and str(w.message).startswith("The result cache ")]


def moved_message(path, reason, aside):
    return (f"The result cache {path} is damaged ({reason}); moved it to {aside} "
            "and started an empty one.")


def asides(folder):
    """Moved-aside database files (not their -wal/-shm), oldest first."""
    return sorted(p for p in folder.glob(f"{DISK_CACHE_FILE}.corrupt-*")
                  if not p.name.endswith(("-wal", "-shm")))


# ------------------------------------------------------------ damaged files
def write_valid_cache(path, n=300):
    """A healthy cache of n rows (several pages), closed and checkpointed."""
    disk = DiskCache(path)
    disk.put_many([i.to_bytes(20, "little") for i in range(n)],
                  [np.full(2, -float(i)) for i in range(n)])
    disk.close()


def truncated(path):
    write_valid_cache(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def random_bytes(path):
    rng = np.random.default_rng(7)
    path.write_bytes(rng.bytes(45056))
    # A leftover WAL without valid frames: SQLite drops it when the damaged
    # file's connection closes, so it must not end up in the new cache.
    (path.parent / f"{path.name}-wal").write_bytes(rng.bytes(8192))


def not_a_database(path):
    path.write_text("key,logprobs\nabc,-0.5\n")


def wrong_schema(path):
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE results (key TEXT, value REAL)")
    raw.close()


def old_layout(path):
    """The layout before rows had a digest: moved aside, not trusted."""
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE results (key BLOB PRIMARY KEY, logprobs BLOB NOT NULL)")
    raw.close()


LAYOUT = "it holds other tables or columns than nbllm's results"
DAMAGE = [
    (truncated, "database disk image is malformed"),
    (random_bytes, "file is not a database"),
    (not_a_database, "file is not a database"),
    (wrong_schema, LAYOUT),
    (old_layout, LAYOUT),
]


@pytest.fixture(scope="module")
def expected(tiny_folder):
    return uncached(tiny_folder, TEXTS)


@pytest.mark.parametrize("damage, reason", DAMAGE, ids=[d.__name__ for d, _ in DAMAGE])
def test_damaged_cache_is_moved_aside_and_rebuilt(damage, reason, tiny_folder, tmp_path,
                                                   expected):
    path = (tmp_path / DISK_CACHE_FILE).resolve()
    damage(path)
    original = path.read_bytes()
    wal = path.parent / f"{DISK_CACHE_FILE}-wal"
    junk_wal = wal.read_bytes() if wal.exists() else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = clf(tiny_folder, tmp_path)
        probas = c.predict_proba(TEXTS)
    [aside] = asides(path.parent)
    assert cache_warnings(caught) == [moved_message(path, reason, aside)]
    assert aside.read_bytes() == original  # moved, not destroyed
    assert junk_wal is None or wal.read_bytes() != junk_wal
    np.testing.assert_allclose(probas, expected, rtol=0, atol=1e-6)
    assert len(c.disk_cache_) == len(TEXTS) and mode(path) == 0o600


def test_rebuilt_cache_serves_the_next_process(tiny_folder, tmp_path, expected, monkeypatch):
    path = (tmp_path / DISK_CACHE_FILE).resolve()
    truncated(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf(tiny_folder, tmp_path).predict_proba(TEXTS)
    [aside] = asides(path.parent)
    assert cache_warnings(caught) == [
        moved_message(path, "database disk image is malformed", aside)]
    result_cache.clear()  # as in a new process: memory and connections gone
    monkeypatch.setattr(cache, "_disk_caches", {})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        again = clf(tiny_folder, tmp_path)
        probas = again.predict_proba(TEXTS)
    assert (again.n_cache_hits_, again.n_cache_misses_) == (len(TEXTS), 0)
    np.testing.assert_allclose(probas, expected, rtol=0, atol=1e-6)
    assert len(asides(tmp_path)) == 1


def test_zero_length_file_is_a_new_cache(tiny_folder, tmp_path, expected):
    # What a crash between creating the file and the first write leaves, and
    # what SQLite itself treats as an empty database: nothing to warn about.
    (tmp_path / DISK_CACHE_FILE).touch()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        c = clf(tiny_folder, tmp_path)
        probas = c.predict_proba(TEXTS)
    np.testing.assert_allclose(probas, expected, rtol=0, atol=1e-6)
    assert len(c.disk_cache_) == len(TEXTS) and asides(tmp_path) == []


class FailOnce:
    """A connection whose next statement raises ``error``, as SQLite does when
    it meets a damaged page after the file was opened."""

    def __init__(self, conn, error):
        self.conn, self.error = conn, error

    def execute(self, *args):
        error, self.error = self.error, None
        if error is not None:
            raise error
        return self.conn.execute(*args)

    def close(self):
        self.conn.close()


def real_sqlite_error(tmp_path):
    """A genuine "file is not a database" error, with SQLite's error code."""
    junk = tmp_path / "junk"
    junk.write_bytes(b"junk" * 256)
    raw = sqlite3.connect(junk)
    try:
        raw.execute("SELECT * FROM sqlite_master")
    except sqlite3.DatabaseError as exc:
        return exc
    finally:
        raw.close()


def test_damage_met_by_a_later_read_is_moved_aside(tmp_path):
    path = tmp_path / "r.sqlite"
    disk = DiskCache(path)
    disk.put_many([b"a"], [[-1.0]])
    disk._conn = FailOnce(disk._conn, real_sqlite_error(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert disk.get_many([b"a"]) == {}  # a miss, not an error
    [aside] = tmp_path.glob("r.sqlite.corrupt-*[0-9]")
    assert cache_warnings(caught) == [moved_message(path, "file is not a database", aside)]
    disk.put_many([b"b"], [[-2.0]])
    assert len(disk) == 1 and mode(path) == 0o600


def test_other_errors_are_raised_and_move_nothing(tmp_path):
    disk = DiskCache(tmp_path / "r.sqlite")
    disk.close()
    closed = re.escape("Cannot operate on a closed database.")
    with pytest.raises(sqlite3.ProgrammingError, match=f"^{closed}$"):
        disk.get_many([b"a"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.sqlite"]


def test_moved_with_its_wal_and_shm(tmp_path):
    path = tmp_path / "r.sqlite"
    disk = DiskCache(path)
    disk.close()
    for suffix in ("", "-wal", "-shm"):  # as a process killed while it was open leaves them
        (tmp_path / f"r.sqlite{suffix}").write_text(suffix)
    with pytest.warns(UserWarning) as caught:
        disk._move_aside(cache._file_id(path), "file is not a database")
    [aside] = tmp_path.glob("r.sqlite.corrupt-*[0-9]")
    assert [str(w.message) for w in caught] == [
        moved_message(path, "file is not a database", aside)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        aside.name, f"{aside.name}-shm", f"{aside.name}-wal"]
    assert (tmp_path / f"{aside.name}-wal").read_text() == "-wal"


def test_a_file_another_process_already_replaced_is_left_alone(tmp_path):
    disk = DiskCache(tmp_path / "r.sqlite")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        disk._move_aside(seen=(0, 0), reason="file is not a database")
    assert len(disk) == 0 and list(tmp_path.glob("*.corrupt-*")) == []


def test_busy_database_is_retried_other_errors_are_not():
    calls = []

    def locked_twice():
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "done"

    assert cache._retry_busy(locked_twice) == "done" and len(calls) == 3

    def no_table():
        calls.append(1)
        raise sqlite3.OperationalError("no such table: results")

    no_such_table = re.escape("no such table: results")
    with pytest.raises(sqlite3.OperationalError, match=f"^{no_such_table}$"):
        cache._retry_busy(no_table)
    assert len(calls) == 4


# ----------------------------------------------------------------- torn rows
def test_torn_or_foreign_rows_are_misses(tmp_path):
    path = tmp_path / "r.sqlite"
    disk = DiskCache(path)
    keys = [b"torn", b"foreign", b"longer", b"no digest", b"intact"]
    values = [[-1.0, -2.0], [-3.0, -4.0], [-5.0, -6.0], [-7.0, -8.0], [-9.0, -0.5]]
    disk.put_many(keys, values)
    raw = sqlite3.connect(path)
    with raw:
        raw.execute("UPDATE results SET logprobs = substr(logprobs, 1, 12) WHERE key = ?",
                    (b"torn",))
        raw.execute("UPDATE results SET logprobs = (SELECT logprobs FROM results WHERE "
                    "key = ?) WHERE key = ?", (b"intact", b"foreign"))
        raw.execute("UPDATE results SET logprobs = ? WHERE key = ?",
                    (np.array([-5.0, -6.0, -7.0]).tobytes(), b"longer"))
        raw.execute("UPDATE results SET digest = x'' WHERE key = ?", (b"no digest",))
    raw.close()
    found = disk.get_many(keys)
    assert list(found) == [b"intact"]
    np.testing.assert_array_equal(found[b"intact"], [-9.0, -0.5])


def test_torn_row_is_recomputed_and_replaced(tiny_folder, tmp_path, expected):
    c = clf(tiny_folder, tmp_path)
    c.predict_proba(TEXTS)
    raw = sqlite3.connect(tmp_path / DISK_CACHE_FILE)
    with raw:
        [(key,)] = raw.execute("SELECT key FROM results LIMIT 1").fetchall()
        raw.execute("UPDATE results SET logprobs = ? WHERE key = ?",
                    (np.zeros(3).tobytes(), key))
    raw.close()
    result_cache.clear()  # only the disk remembers
    again = clf(tiny_folder, tmp_path)
    probas = again.predict_proba(TEXTS)
    assert (again.n_cache_hits_, again.n_cache_misses_) == (len(TEXTS) - 1, 1)
    np.testing.assert_allclose(probas, expected, rtol=0, atol=1e-6)
    assert key in again.disk_cache_.get_many([key])  # the row is whole again


# --------------------------------------------------------------- permissions
def test_new_folders_are_0700_and_files_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)  # the most permissive umask: the modes must not depend on it
    try:
        disk = DiskCache(tmp_path / "a" / "b" / "r.sqlite")
        disk.put_many([b"k"], [[-1.0]])
    finally:
        os.umask(old)
    assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o700
    for name in ("r.sqlite", "r.sqlite-wal", "r.sqlite-shm"):  # open: all three exist
        assert mode(tmp_path / "a" / "b" / name) == 0o600, name


def test_existing_folder_keeps_its_mode_and_old_files_are_tightened(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)  # the user's choice, e.g. a project folder
    (shared / "r.sqlite").touch()
    (shared / "r.sqlite").chmod(0o644)  # as an older version left it
    DiskCache(shared / "r.sqlite").put_many([b"k"], [[-1.0]])
    assert mode(shared) == 0o755
    assert mode(shared / "r.sqlite") == mode(shared / "r.sqlite-wal") == 0o600


# -------------------------------------------------------------- no pickles
def test_values_are_raw_float64_and_nothing_is_unpickled(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the cache unpickled something")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    values = np.array([-0.25, -1.5, -np.inf])
    disk = DiskCache(tmp_path / "r.sqlite")
    disk.put_many([b"k"], [values])
    np.testing.assert_array_equal(disk.get_many([b"k"])[b"k"], values)
    raw = sqlite3.connect(tmp_path / "r.sqlite")
    [(blob,)] = raw.execute("SELECT logprobs FROM results").fetchall()
    raw.close()
    assert len(blob) == 24
    np.testing.assert_array_equal(np.frombuffer(blob, dtype=np.float64), values)

    tree = ast.parse(open(cache.__file__).read())
    modules = {alias.name.split(".")[0] for node in ast.walk(tree)
               if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom)}
    serializers = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib",
                   "marshal", "shelve"}
    assert modules & serializers == set()
    names = {getattr(node, "id", None) or getattr(node, "attr", None)
             for node in ast.walk(tree) if isinstance(node, (ast.Name, ast.Attribute))}
    assert names & {"eval", "exec", "loads", "load", "allow_pickle"} == set()


# -------------------------------------------------------- crashes and processes
def read_line(proc, timeout=CHILD_TIMEOUT):
    """The child's next stdout line, failing (with its stderr) if none comes."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        pytest.fail(f"the child printed nothing; its stderr:\n{proc.stderr.read()}")
    return line


def start_child(script):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=CHILD_ENV)


def test_cache_of_a_killed_process_is_consistent_and_resumes(tiny_folder, tmp_path):
    texts = [f"killed run, text {i}" for i in range(5000)]
    proc = start_child(f"""
        from nbllm import ZeroShotClassifier
        c = ZeroShotClassifier({tiny_folder!r}, cache_dir={str(tmp_path)!r},
                               batch_size=1, progress=False).fit(None, {LABELS!r})
        texts = [f"killed run, text {{i}}" for i in range(5000)]
        # A row is printed after its batch is committed to the cache.
        c.label_logprobs(texts, on_rows=lambda rows, _: print(*rows, flush=True))
    """)
    finished = []
    while len(finished) < 20:
        finished += [int(r) for r in read_line(proc).split()]
    time.sleep(0.2)  # let it run on, so the kill most likely lands mid-batch
    os.kill(proc.pid, signal.SIGKILL)
    rest, _ = proc.communicate(timeout=CHILD_TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    finished += [int(r) for r in rest.split()]
    path = tmp_path / DISK_CACHE_FILE
    assert (tmp_path / f"{DISK_CACHE_FILE}-wal").exists()  # killed: never closed

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "damaged" warning
        disk = DiskCache(path)
    raw = sqlite3.connect(path)
    keys = [bytes(k) for (k,) in raw.execute("SELECT key FROM results")]
    raw.close()
    assert len(keys) >= len(finished) and len(disk.get_many(keys)) == len(keys)  # none torn
    assert len(keys) < len(texts)  # it really was stopped mid-run
    disk.close()

    rerun = [texts[i] for i in sorted(finished)] + ["new 1", "new 2", "new 3"]
    again = clf(tiny_folder, tmp_path, batch_size=1)
    probas = again.predict_proba(rerun)
    assert again.n_cache_hits_ == len(finished) > 0 and again.n_cache_misses_ == 3
    np.testing.assert_allclose(probas, uncached(tiny_folder, rerun, 1), rtol=0, atol=1e-6)


def test_two_processes_write_one_cache_at_once(tiny_folder, tmp_path):
    first = [f"shared cache, text {i}" for i in range(0, 40)]
    second = [f"shared cache, text {i}" for i in range(20, 60)]  # 20 in common
    # Each child writes the real rows of its texts, taken from a cache of its
    # own, so that it needs no model: the disk cache is what is under test,
    # and the children start in a second instead of fifteen.
    sources = []
    for name, texts in (("first", first), ("second", second)):
        result_cache.clear()  # else the overlap would not reach the second file
        clf(tiny_folder, tmp_path / name, batch_size=1).predict_proba(texts)
        sources.append(str(tmp_path / name / DISK_CACHE_FILE))
    shared, go = tmp_path / "shared", tmp_path / "go"
    script = """
        import os, sqlite3, time
        import numpy as np
        from nbllm.engine.scoring.result_cache import DiskCache
        source = sqlite3.connect({source!r})
        rows = source.execute("SELECT key, logprobs FROM results").fetchall()
        source.close()
        print("loaded", flush=True)
        while not os.path.exists({go!r}):
            time.sleep(0.005)
        started = time.time()
        disk = DiskCache({path!r})  # both create the new file at once
        for _ in range(20):  # one row per transaction, reading in between
            for key, blob in rows:
                disk.put_many([key], [np.frombuffer(blob, dtype=np.float64)])
                assert key in disk.get_many([key])
        print(len(rows), started, time.time(), flush=True)
    """
    procs = [start_child(script.format(source=source, go=str(go),
                                       path=str(shared / DISK_CACHE_FILE)))
             for source in sources]
    for proc in procs:
        assert read_line(proc) == "loaded\n"
    go.touch()
    spans = []
    for proc in procs:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT)
        assert (proc.returncode, err) == (0, "")
        n_rows, started, ended = out.split()
        assert n_rows == "40"
        spans.append((float(started), float(ended)))
    assert max(s for s, _ in spans) < min(e for _, e in spans)  # they did overlap

    result_cache.clear()  # as in a new process: only the shared file remembers
    both = sorted(set(first) | set(second))
    again = clf(tiny_folder, shared, batch_size=1)
    probas = again.predict_proba(both)
    assert (again.n_cache_hits_, again.n_cache_misses_) == (60, 0)  # no row lost
    assert len(again.disk_cache_) == 60
    np.testing.assert_allclose(probas, uncached(tiny_folder, both, 1), rtol=0, atol=1e-6)


# ------------------------------------------------------------------ threads
def in_threads(*jobs):
    """Run the jobs in threads that start together; return their results."""
    barrier = Barrier(len(jobs))

    def run(job):
        barrier.wait()
        return job()

    with ThreadPoolExecutor(len(jobs)) as pool:
        return [f.result() for f in [pool.submit(run, job) for job in jobs]]


def test_threads_classifying_at_once_do_not_mix_results(tmp_path):
    model, tok = get_tiny_model(), get_tiny_tokenizer()
    texts_a = [f"thread a says {i}" for i in range(24)]
    texts_b = [f"thread b writes something else, {i}" for i in range(24)]
    spam = ["spam", "ham", "neutral"]

    def estimator(labels, **kwargs):
        return ZeroShotClassifier(model=model, tokenizer=tok, progress=False, batch_size=2,
                                  **kwargs).fit(None, labels)

    sequential = [estimator(LABELS, use_caching=False).predict_proba(texts_a),
                  estimator(spam, use_caching=False).predict_proba(texts_b)]
    # Separate estimators, other labels, on one model object and one disk cache.
    a = estimator(LABELS, cache_dir=str(tmp_path))
    b = estimator(spam, cache_dir=str(tmp_path))
    together = in_threads(lambda: a.predict_proba(texts_a), lambda: b.predict_proba(texts_b))
    for got, want in zip(together, sequential):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)

    result_cache.clear()  # so that the shared estimator computes again
    shared = estimator(LABELS, cache_dir=str(tmp_path / "other"))
    together = in_threads(lambda: shared.predict_proba(texts_a),
                          lambda: shared.predict_proba(texts_a[::-1] + texts_b))
    want_b = np.vstack([sequential[0][::-1], estimator(LABELS, use_caching=False)
                        .predict_proba(texts_b)])
    np.testing.assert_allclose(together[0], sequential[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(together[1], want_b, rtol=0, atol=1e-6)
