"""The SQLite result cache: atomic batches, reruns in new processes, resume after an interrupt."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nbllm import ZeroShotClassifier
from nbllm.engine.scoring.result_cache import DISK_CACHE_FILE, DiskCache, disk_cache, result_cache

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")

LABELS = ["negative", "positive"]
TEXTS = [f"text number {i} is here" for i in range(12)]


def clf(folder, cache_dir, **kwargs):
    return ZeroShotClassifier(folder, cache_dir=str(cache_dir), progress=False,
                              batch_size=2, **kwargs).fit(None, LABELS)


def test_values_are_raw_float64_and_batches_commit_whole(tmp_path):
    disk = DiskCache(tmp_path / "r.sqlite")
    disk.put_many([b"a", b"b"], [np.array([-1.5, -2.0]), np.array([-0.1, -3.0])])
    assert len(disk) == 2
    found = disk.get_many([b"a", b"missing"])
    assert list(found) == [b"a"]
    np.testing.assert_array_equal(found[b"a"], [-1.5, -2.0])
    with pytest.raises(ValueError):  # a bad row aborts the whole batch
        disk.put_many([b"c", b"d"], [np.array([0.0]), "not numbers"])
    assert disk.get_many([b"c"]) == {}
    mode = disk._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_disk_cache_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("NBLLM_CACHE_DIR", raising=False)
    assert disk_cache() is None
    monkeypatch.setenv("NBLLM_CACHE_DIR", str(tmp_path))
    assert disk_cache().path == (tmp_path / DISK_CACHE_FILE).resolve()
    assert disk_cache(tmp_path / "x") is disk_cache(str(tmp_path / "x"))


@pytest.mark.usefixtures("float32_auto")
def test_interrupted_run_resumes_from_disk(tiny_folder, tmp_path):
    expected = ZeroShotClassifier(tiny_folder, use_caching=False, progress=False) \
        .fit(None, LABELS).predict_proba(TEXTS)
    first = clf(tiny_folder, tmp_path)
    seen = []

    def interrupt_after_two_batches(rows, values):
        seen.append(len(rows))
        if len(seen) == 2:
            raise KeyboardInterrupt  # what a notebook's Stop does

    with pytest.raises(KeyboardInterrupt):
        first.label_logprobs(TEXTS, on_rows=interrupt_after_two_batches)
    assert len(first.disk_cache_) == 4
    result_cache.clear()  # as in a new process: only the disk remembers
    again = clf(tiny_folder, tmp_path)
    probas = again.predict_proba(TEXTS)
    assert (again.n_cache_hits_, again.n_cache_misses_) == (4, 8)
    np.testing.assert_allclose(probas, expected, rtol=1e-4, atol=1e-7)
    assert len(again.disk_cache_) == 12


def test_rerun_in_a_new_process_is_served_from_disk(tiny_folder, tmp_path):
    clf(tiny_folder, tmp_path).predict_proba(TEXTS)
    script = textwrap.dedent(f"""
        from nbllm import ZeroShotClassifier
        c = ZeroShotClassifier({tiny_folder!r}, cache_dir={str(tmp_path)!r},
                               progress=False).fit(None, {LABELS!r})
        c.predict_proba({TEXTS!r})
        print(c.n_cache_hits_, c.n_cache_misses_)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=dict(os.environ, HF_HUB_OFFLINE="1"), check=True)
    assert out.stdout.split() == [str(len(TEXTS)), "0"]


def test_clear_model_cache_empties_the_disk_cache_too(tiny_folder, tmp_path):
    c = clf(tiny_folder, tmp_path)
    c.predict_proba(TEXTS[:3])
    c.clear_model_cache()
    assert len(c.disk_cache_) == 0 and len(result_cache) == 0


def test_bad_cache_dir_is_rejected(tiny_folder):
    with pytest.raises(ValueError, match="cache_dir must be a folder path or None; got 3"):
        ZeroShotClassifier(tiny_folder, cache_dir=3).fit(None, LABELS)
