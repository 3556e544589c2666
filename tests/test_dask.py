"""``ddf.llm.classify`` on Dask: meta, results against the pandas accessor, workers.

The fast tests run the tiny model with Dask's synchronous scheduler.  The
slow ones start a two-process ``LocalCluster`` on loopback and classify real
tweets with the embedded model: results must equal the pandas accessor's,
each worker must load the model once, and killing a worker mid-run must
still finish the job with the same results.
"""

import ast
import importlib
import os
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

import dask.dataframe as dd

from nbllm.engine.loading import models
from nbllm.notebook import classify as api
from nbllm.notebook.session import session
from nbllm.engine.scoring.result_cache import result_cache
from nbllm.notebook.dask_accessor import FAST_WORKER_CONFIG, DaskLLMAccessor
from tiny import save_tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LABELS = ["positive", "negative"]
TEXTS = [
    "The train was late again this morning.",
    "I love it.",
    "What a wonderful surprise, thank you so much!",
    "The package arrived damaged and incomplete.",
    "Customer support solved my problem quickly.",
    "The battery dies after two hours, very disappointing.",
    "Our team won the match in the final seconds.",
    "She went to the market to buy fresh vegetables.",
]
EXAMPLES = [
    ("Customer support solved my problem quickly", "positive"),
    ("The package arrived damaged", "negative"),
    ("Our team won the match", "positive"),
    ("The battery dies after two hours", "negative"),
]
# name -> (labels, options): every output shape the accessor has.
CASES = {
    "zero-shot": (LABELS, {}),
    "few-shot": (None, {"examples": EXAMPLES, "max_samples": 3}),
    "few-shot-frame": (LABELS, {"examples": pd.DataFrame(EXAMPLES, columns=["text", "label"])}),
    "few-shot-int-labels": (None, {"examples": [("good", 2), ("bad", 10), ("ok", 2)]}),
    "raw": (LABELS, {"raw": True}),
    "raw-no-proba": (LABELS, {"raw": True, "proba": False}),
    "no-proba": (LABELS, {"proba": False}),
    "prompt": (LABELS, {"prompt": "Review: {text}\nOptions: {labels}\nAnswer:"}),
    "multi-label": (["positive", "negative", "sports"], {"multi_label": True}),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny model saved as a folder, as a model spec string."""
    return save_tiny(tmp_path_factory.mktemp("tiny-dask"))


@pytest.fixture(autouse=True)
def fresh_session():
    """Default session settings and an empty in-memory result cache."""
    session.reset()
    yield
    session.reset()


@pytest.fixture
def frame():
    """Texts on a shuffled string index, plus an unrelated column."""
    index = pd.Index([f"r{i}" for i in (5, 2, 7, 0, 3, 6, 1, 4)], name="id")
    return pd.DataFrame({"text": TEXTS, "stars": range(8)}, index=index)


def run_both(frame, labels, npartitions=3, **options):
    """The lazy Dask result, its computed value and the pandas accessor's result.

    ``dd.from_pandas`` sorts by the index, so the pandas result is sorted too.
    The result cache is cleared before each run, so neither reuses the
    other's log-probabilities.
    """
    lazy = dd.from_pandas(frame, npartitions=npartitions).llm.classify(
        "text", labels, **options)
    result_cache.clear()
    computed = lazy.compute(scheduler="sync")
    result_cache.clear()
    reference = frame.llm.classify("text", labels, **options).sort_index()
    return lazy, computed, reference


def assert_same_rows(computed, reference, atol=1e-6):
    """Equal frames row for row; the Dask index holds Arrow strings.

    Partitions are batched apart from the other rows, so float32 sums differ
    in the last bits (up to ~2e-7 on the tiny model); hence the issue's 1e-6.
    """
    pdt.assert_frame_equal(computed, reference, check_index_type=False,
                           check_exact=False, rtol=0, atol=atol)


# ------------------------------------------------------------- meta and values
INT_LABELS_WARNING = "ignore:y should contain the name of the labels:UserWarning"


@pytest.mark.filterwarnings(INT_LABELS_WARNING)
@pytest.mark.parametrize("case", list(CASES))
def test_meta_equals_the_computed_columns_and_dtypes(frame, tiny, case):
    labels, options = CASES[case]
    lazy, computed, _ = run_both(frame, labels, model=tiny, **options)
    assert list(lazy.columns) == list(computed.columns)
    pdt.assert_series_equal(lazy.dtypes, computed.dtypes)
    assert lazy.index.dtype == computed.index.dtype
    assert lazy.npartitions == 3


@pytest.mark.usefixtures("float32_auto")
@pytest.mark.filterwarnings(INT_LABELS_WARNING)
@pytest.mark.parametrize("case", list(CASES))
def test_results_equal_the_pandas_accessor_row_for_row(frame, tiny, case):
    labels, options = CASES[case]
    _, computed, reference = run_both(frame, labels, model=tiny, **options)
    assert_same_rows(computed, reference)
    assert computed.index.tolist() == sorted(frame.index)


def test_columns_for_each_option(frame, tiny):
    def columns(labels, **options):
        ddf = dd.from_pandas(frame, npartitions=2)
        return list(ddf.llm.classify("text", labels, model=tiny, **options).columns)

    assert columns(LABELS) == ["label", "proba_negative", "proba_positive"]
    assert columns(LABELS, raw=True) == [
        "label", "proba_negative", "proba_positive", "label_mass"]
    assert columns(LABELS, proba=False) == ["label"]
    assert columns(LABELS, raw=True, proba=False) == ["label", "label_mass"]
    assert columns(None, examples=[("a", 2), ("b", 10)]) == ["label", "proba_2", "proba_10"]


def test_building_the_graph_loads_no_model(frame, tiny):
    before = dict(models.load_counts)
    dd.from_pandas(frame, npartitions=2).llm.classify("text", LABELS, model=tiny)
    assert models.load_counts == before


@pytest.mark.usefixtures("float32_auto")
# ------------------------------------------------------------- missing texts
@pytest.mark.parametrize("missing", [None, float("nan"), pd.NA], ids=["None", "NaN", "NA"])
def test_missing_texts_give_nan_rows(tiny, missing):
    # Partition 1 (rows 3-5) holds only missing texts.
    values = [TEXTS[0], TEXTS[1], missing, missing, missing, missing, TEXTS[2], TEXTS[3]]
    texts = pd.Series(values, index=list("abcdefgh"), dtype=object)
    ddf = dd.from_pandas(pd.DataFrame({"text": texts}), npartitions=3)
    assert ddf.divisions == ("a", "d", "g", "h")
    lazy = ddf.llm.classify("text", LABELS, model=tiny)
    with pytest.warns(UserWarning, match=re.escape(
            "missing text(s) (None or NaN) were skipped; their results are NaN")):
        computed = lazy.compute(scheduler="sync")
    pdt.assert_series_equal(lazy.dtypes, computed.dtypes)
    assert computed.loc[list("cdef")].isna().all().all()
    result_cache.clear()
    present = pd.DataFrame({"text": [TEXTS[i] for i in (0, 1, 2, 3)]}, index=list("abgh"))
    assert_same_rows(computed.loc[list("abgh")],
                     present.llm.classify("text", LABELS, model=tiny))


@pytest.mark.usefixtures("float32_auto")
# ----------------------------------------------------------- empty partitions
def test_empty_partitions_keep_the_meta(frame, tiny):
    ddf = dd.from_pandas(frame.sort_index(), npartitions=4)
    kept = ddf[~ddf["stars"].isin([3, 6])]  # empties the first partition (r0, r1)
    lazy = kept.llm.classify("text", LABELS, model=tiny)
    first = lazy.partitions[0].compute(scheduler="sync")
    assert len(first) == 0
    assert list(first.columns) == list(lazy.columns)
    pdt.assert_series_equal(first.dtypes, lazy.dtypes)
    assert first.index.dtype == lazy.index.dtype
    computed = lazy.compute(scheduler="sync")
    result_cache.clear()
    pandas_kept = frame.sort_index().drop(index=["r0", "r1"])
    assert_same_rows(computed, pandas_kept.llm.classify("text", LABELS, model=tiny))


def test_an_all_empty_frame_gives_an_empty_result_without_loading(frame, tiny):
    before = dict(models.load_counts)
    ddf = dd.from_pandas(frame, npartitions=2)
    lazy = ddf[ddf["stars"] > 100].llm.classify("text", LABELS, model=tiny)
    computed = lazy.compute(scheduler="sync")
    assert computed.shape == (0, 3)
    pdt.assert_series_equal(computed.dtypes, lazy.dtypes)
    assert models.load_counts == before


@pytest.mark.usefixtures("float32_auto")
# ------------------------------------------------------------ session settings
def test_session_model_and_cache_dir_are_shipped_with_the_graph(frame, tiny, tmp_path):
    session.model, session.cache_dir = tiny, str(tmp_path)
    lazy = dd.from_pandas(frame, npartitions=2).llm.classify("text", LABELS)
    # Workers do not see the client's settings: change them before computing.
    session.model, session.cache_dir = str(tmp_path / "no-such-model"), None
    computed = lazy.compute(scheduler="sync")
    assert (tmp_path / "results.sqlite").is_file()
    result_cache.clear()
    assert_same_rows(computed, frame.llm.classify("text", LABELS, model=tiny).sort_index())


# ---------------------------------------------------------------------- errors
def test_an_estimator_on_a_model_object_is_rejected(frame):
    from nbllm import ZeroShotClassifier
    from tiny import get_tiny_model, get_tiny_tokenizer

    clf = ZeroShotClassifier(model=get_tiny_model(), tokenizer=get_tiny_tokenizer(),
                             progress=False).fit(None, LABELS)
    ddf = dd.from_pandas(frame, npartitions=2)
    message = (
        "ddf.llm.classify does not take an estimator built on a model object: the "
        "model would be copied to every worker; give the estimator the model by name "
        "(a spec or a folder every worker sees)"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        ddf.llm.classify("text", estimator=clf)


@pytest.mark.parametrize("kind", ["few-shot", "zero-shot raw", "multi-label"])
def test_a_fitted_estimator_gives_the_pandas_results(frame, tiny, kind):
    """The estimator travels pickled (light) with the graph, as to real workers."""
    from nbllm import FewShotClassifier, MultiLabelZeroShotClassifier, ZeroShotClassifier

    # float32: partitions batch the rows apart, and bfloat16 sums depend on the batch.
    common = dict(progress=False, dtype="float32")
    if kind == "few-shot":
        clf = FewShotClassifier(tiny, max_samples=2, random_state=0, **common).fit(
            ["great", "awful", "fine"], ["positive", "negative", "positive"])
    elif kind == "zero-shot raw":
        clf = ZeroShotClassifier(tiny, probas_sum_to_1=False, **common).fit(None, LABELS)
    else:
        clf = MultiLabelZeroShotClassifier(tiny, **common).fit(None, [["a"], ["b"]])
    lazy = dd.from_pandas(frame, npartitions=3).llm.classify("text", estimator=clf)
    result_cache.clear()
    computed = lazy.compute(scheduler="processes", num_workers=2)
    reference = frame.llm.classify("text", estimator=clf).sort_index()
    pdt.assert_series_equal(computed.dtypes, lazy.dtypes)
    assert_same_rows(computed, reference)


def test_unknown_column_is_a_key_error(frame):
    ddf = dd.from_pandas(frame, npartitions=2)
    with pytest.raises(KeyError, match=re.escape(
            "column 'nope' not found; columns are 'text', 'stars'")):
        ddf.llm.classify("nope", LABELS)


@pytest.mark.parametrize("labels,options,message", [
    (None, {}, "labels must contain at least one label; got none"),
    ([], {}, "labels must contain at least one label; got none"),
    ("positive", {}, "labels must be a list of strings, got the single string 'positive'"),
    (["a", "b", "a"], {}, "labels must be unique; repeated: 'a'"),
    (None, {"multi_label": True}, "labels must contain at least one label; got none"),
    (["positive", "neutral"], {"examples": EXAMPLES},
     "examples use label(s) not in labels: 'negative'"),
])
def test_bad_labels_raise_the_pandas_accessors_errors(frame, tiny, labels, options,
                                                     message):
    ddf = dd.from_pandas(frame, npartitions=2)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        ddf.llm.classify("text", labels, model=tiny, **options)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        frame.llm.classify("text", labels, model=tiny, **options)


# ---------------------------------------------------------------- registration
def run_python(code):
    """Run code in a fresh interpreter; fail with its stderr if it fails."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_importing_dask_then_nbllm_attaches_ddf_llm():
    run_python("""
        import dask.dataframe as dd
        import pandas as pd
        import nbllm
        from nbllm.notebook.dask_accessor import DaskLLMAccessor
        ddf = dd.from_pandas(pd.DataFrame({"text": ["x"]}), npartitions=1)
        assert isinstance(ddf.llm, DaskLLMAccessor), type(ddf.llm)
    """)


def test_importing_nbllm_then_dask_attaches_ddf_llm():
    """Either import order works, and import nbllm alone never imports dask."""
    run_python("""
        import sys
        import nbllm
        assert "dask" not in sys.modules, "import nbllm imported dask"
        import dask.dataframe as dd
        import pandas as pd
        from nbllm.notebook.dask_accessor import DaskLLMAccessor
        ddf = dd.from_pandas(pd.DataFrame({"text": ["x"]}), npartitions=1)
        assert isinstance(ddf.llm, DaskLLMAccessor), type(ddf.llm)
        assert not any(type(f).__module__.startswith("nbllm")
                       for f in sys.meta_path), "an import hook of nbllm's"
    """)


def test_dask_imported_through_another_package_still_gets_ddf_llm():
    run_python("""
        import nbllm
        import dask
        from dask import dataframe as dd
        import pandas as pd
        ddf = dd.from_pandas(pd.DataFrame({"text": ["x"]}), npartitions=1)
        assert type(ddf.llm).__name__ == "DaskLLMAccessor"
    """)


def test_the_accessor_is_built_per_access(frame):
    ddf = dd.from_pandas(frame, npartitions=2)
    assert isinstance(ddf.llm, DaskLLMAccessor)
    assert ddf.llm is not ddf.llm
    assert ddf.llm._obj is ddf
    assert dd.DataFrame.llm is DaskLLMAccessor


# ------------------------------------ the notebook guide's faster-workers setting
GUIDE = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "notebook.md")


def guide_text():
    with open(GUIDE, encoding="utf-8") as f:
        return f.read()


def test_the_guides_setting_starts_workers_without_malloc_trim():
    import dask
    from distributed import Client, LocalCluster

    shown = re.search(r"dask\.config\.set\((\{.*?\})\)", guide_text()).group(1)
    assert ast.literal_eval(shown) == FAST_WORKER_CONFIG
    # A nanny copies its variables into this process's environment (the guide
    # warns of it): start clean and restore afterwards.
    saved = dict(os.environ)
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    try:
        with dask.config.set(FAST_WORKER_CONFIG), \
                LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                             host="127.0.0.1", dashboard_address=None) as cluster, \
                Client(cluster) as client:
            trim = client.run(os.getenv, "MALLOC_TRIM_THRESHOLD_")
            threads = client.run(os.getenv, "OMP_NUM_THREADS")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert list(trim.values()) == [None]
    assert list(threads.values()) == ["1"]  # Dask's other defaults stay


def test_the_guides_config_file_unsets_the_trim_threshold(tmp_path):
    block = re.search(r"```yaml\n(distributed:\n.*?)```", guide_text(), re.S).group(1)
    (tmp_path / "nbllm.yaml").write_text(block)
    done = subprocess.run(
        [sys.executable, "-c", "import dask, distributed; print(dask.config.get("
         "'distributed.nanny.pre-spawn-environ'))"],
        capture_output=True, text=True, env=dict(os.environ, DASK_CONFIG=str(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert "'MALLOC_TRIM_THRESHOLD_': None" in done.stdout


# ------------------------------------------------- a real cluster (slow tests)
REAL_LABELS = ["negative", "positive"]
N_TWEETS, N_PARTITIONS = 200, 8
# The worker-failure run classifies the first partitions only.
N_FAILURE_PARTITIONS = 4


def clear_result_cache():
    """Empty this process's in-memory result cache (for ``client.run``)."""
    importlib.import_module("nbllm.engine.scoring.result_cache").result_cache.clear()


def worker_load_counts():
    """This process's model loads, ``{spec: count}`` (for ``client.run``)."""
    return dict(importlib.import_module("nbllm.engine.loading.models").load_counts)


@pytest.fixture(scope="module")
def tweets():
    """200 real tweets from the eval half of the corpus, in 8 partitions."""
    from nbllm.tools.tweets import load_tweets

    frame = load_tweets(N_TWEETS, split="eval")[["text"]]
    return dd.from_pandas(frame, npartitions=N_PARTITIONS)


@pytest.fixture(scope="module")
def reference(real_model, tweets):
    """The pandas accessor's results in this process, partition by partition.

    Batched alone, a partition's float32 sums differ from the whole frame's
    in the last bits (up to ~2e-6 in a probability); on the same partitions
    the pandas accessor and the workers must agree within 1e-6.  Torch runs
    on one thread here (``one_torch_thread``), as in Dask's workers, whose
    nannies set ``OMP_NUM_THREADS=1``.
    """
    parts = []
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("NBLLM_CACHE_DIR", raising=False)
        for i in range(tweets.npartitions):
            part = tweets.get_partition(i).compute(scheduler="sync")
            result_cache.clear()
            parts.append(part.llm.classify("text", REAL_LABELS, progress=False))
        result_cache.clear()
    return pd.concat(parts)


@pytest.fixture(scope="module")
def client(real_model):
    """A Client on a 2-process LocalCluster on loopback, both workers started.

    NBLLM_CACHE_DIR is set before the workers start, so they load the
    session's converted copy of the embedded model.
    """
    import cloudpickle
    from distributed import Client, LocalCluster

    # Workers cannot import this test module: ship its functions' code.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("NBLLM_CACHE_DIR", real_model.cache_dir)
            mp.setenv("HF_HUB_OFFLINE", "1")
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              host="127.0.0.1", dashboard_address=None) as cluster, \
                    Client(cluster) as client:
                client.wait_for_workers(2, timeout=120)
                yield client
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture
def cold_client(client):
    """The cluster's client, with the workers' in-memory result caches emptied."""
    client.run(clear_result_cache)
    return client


def times_computed(client, key):
    """How often the scheduler saw ``key`` computed (processing -> memory)."""
    story = client.run_on_scheduler(
        lambda dask_scheduler: [t[:3] for t in dask_scheduler.story(key)])
    return story.count((key, "processing", "memory"))


def classify_on_cluster(ddf, cache_dir):
    """The lazy ``ddf.llm.classify`` of the tweets, with a fresh disk cache."""
    return ddf.llm.classify("text", REAL_LABELS, cache_dir=str(cache_dir))


def assert_matches_reference(computed, reference):
    """Same index and labels; probabilities within 1e-6, row for row."""
    assert computed.index.tolist() == reference.index.tolist()
    assert list(computed.columns) == ["label", "proba_negative", "proba_positive"]
    assert computed["label"].tolist() == reference["label"].tolist()
    np.testing.assert_allclose(computed.iloc[:, 1:].to_numpy(),
                               reference.iloc[:, 1:].to_numpy(), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_cluster_results_equal_pandas_and_each_worker_loads_once(
        cold_client, tweets, reference, tmp_path):
    lazy = classify_on_cluster(tweets, tmp_path)
    computed = cold_client.compute(lazy).result(timeout=600)
    assert_matches_reference(computed, reference)
    counts = cold_client.run(worker_load_counts)
    assert len(counts) == 2
    # (Other tests may have loaded the tiny model there too; count the embedded one.)
    assert {addr: c.get(models.DEFAULT_MODEL) for addr, c in counts.items()} == \
        {addr: 1 for addr in counts}


@pytest.mark.slow
def test_a_fitted_few_shot_estimator_on_the_cluster_equals_pandas(cold_client, tiny):
    from nbllm import FewShotClassifier

    clf = FewShotClassifier(tiny, max_samples=3, random_state=0, progress=False,
                            dtype="float32").fit(
        ["great flight", "awful delay", "lovely crew", "lost my bag"],
        ["positive", "negative", "positive", "negative"])
    frame = pd.DataFrame({"text": TEXTS}, index=[f"t{i}" for i in range(len(TEXTS))])
    lazy = dd.from_pandas(frame, npartitions=4).llm.classify("text", estimator=clf)
    computed = cold_client.compute(lazy).result(timeout=300)
    assert_same_rows(computed, frame.llm.classify("text", estimator=clf).sort_index())
    counts = cold_client.run(worker_load_counts)
    assert all(c.get(tiny, 0) <= 1 for c in counts.values())  # once per worker at most


@pytest.mark.slow
def test_killing_a_worker_mid_run_still_finishes_with_the_same_results(
        cold_client, tweets, reference, tmp_path):
    from distributed import futures_of, wait

    subset = tweets.partitions[:N_FAILURE_PARTITIONS]
    persisted = cold_client.persist(classify_on_cluster(subset, tmp_path))
    parts = futures_of(persisted)
    done, _ = wait(parts, return_when="FIRST_COMPLETED", timeout=600)
    assert len(done) < len(parts), "the run ended before a worker could be killed"
    # Kill the worker that holds a finished partition: the partition is lost
    # with it (and so is its running task), and Dask must compute it again.
    lost, (victim,) = next(iter(cold_client.who_has(list(done)).items()))
    pid = cold_client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)
    computed = persisted.compute()
    expected = reference.iloc[:N_FAILURE_PARTITIONS * N_TWEETS // N_PARTITIONS]
    assert_matches_reference(computed, expected)
    assert times_computed(cold_client, lost) == 2
    # The nanny started a new worker process; it loaded the model at most once.
    cold_client.wait_for_workers(2, timeout=120)
    assert pid not in cold_client.run(os.getpid).values()
    counts = cold_client.run(worker_load_counts).values()
    assert all(c.get(models.DEFAULT_MODEL, 0) <= 1 for c in counts)
