"""Shared fixtures: the real model and tweets, and the tiny-model fixtures.

The real embedded model is converted once per test session into a private
cache folder (this also exercises the cold GGUF path) and shared by every
integration test through the process-wide registry.
"""

import os
import time

import pytest

from tiny import get_tiny_model, get_tiny_tokenizer, save_tiny

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory):
    """The session's private cache folder for converted models (NBLLM_TEST_CACHE_DIR
    names one to reuse across sessions).

    The real models share it, so that a notebook kernel given it as
    NBLLM_CACHE_DIR finds every model the session converted.
    """
    return os.environ.get("NBLLM_TEST_CACHE_DIR") or str(tmp_path_factory.mktemp("nbllm-cache"))


def _load_cold(spec, cache):
    """Load a named model float32 on cpu, converting into ``cache``, and time it.

    NBLLM_CACHE_DIR is set only for the load and not left set, so no other
    test gets a disk result cache by accident.
    """
    from nbllm.engine.loading import models

    old = os.environ.get("NBLLM_CACHE_DIR")
    os.environ["NBLLM_CACHE_DIR"] = cache
    try:
        started = time.perf_counter()
        loaded = models.get_model(spec, device="cpu", dtype="float32")
        loaded.cold_load_seconds = time.perf_counter() - started
    finally:
        if old is None:
            os.environ.pop("NBLLM_CACHE_DIR", None)
        else:
            os.environ["NBLLM_CACHE_DIR"] = old
    loaded.cache_dir = cache
    return loaded


@pytest.fixture(scope="session")
def real_model(model_cache_dir):
    """The embedded SmolLM2-135M, loaded cold from its GGUF file, float32 on cpu.

    The converted copy goes to the session's private folder,
    ``real_model.cache_dir``; tests that start kernels pass it on as
    NBLLM_CACHE_DIR.
    """
    return _load_cold("smollm2-135m", model_cache_dir)


@pytest.fixture(scope="session")
def gemma_model(model_cache_dir):
    """Gemma 3 270M (``model_name='gemma3-270m'``), float32 on cpu, loaded once.

    Its package is an optional extra (``nbllm[gemma]``): without it the tests
    that use this fixture are skipped, saying what to install.  The first
    load joins the package's GGUF chunks and converts them (about a minute)
    into the session's private folder, ``gemma_model.cache_dir``.
    """
    import importlib.util

    from nbllm.engine.loading.embedded import EMBEDDED_MODELS

    wanted = EMBEDDED_MODELS["gemma3-270m"]
    if importlib.util.find_spec(wanted.package) is None:
        pytest.skip(f"Gemma 3 270M is not installed (the package {wanted.package!r}); "
                    f"install it with: {wanted.install}")
    return _load_cold("gemma3-270m", model_cache_dir)


@pytest.fixture(scope="session")
def real_tweets():
    """80 real, high-agreement tweets, balanced positive / negative."""
    from nbllm.tools.tweets import load_tweets

    return load_tweets(80, labels=("negative", "positive"), min_confidence=0.9,
                       split="eval", random_state=3)


@pytest.fixture(autouse=True)
def no_disk_cache_from_the_environment(monkeypatch):
    """A user's NBLLM_CACHE_DIR must not give tests a shared disk result cache."""
    monkeypatch.delenv("NBLLM_CACHE_DIR", raising=False)


# ---------------------------------------------------------------------------
# Fixtures for the fast tests on the tiny model.  The two that change global
# state (one torch thread, clean session settings with a guard against the
# real model) are not autouse: a module asks for them with
# ``pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")``.


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run torch single-threaded while a test module that asks for it runs.

    On small CPU machines, OpenMP's thread handoff costs ~15 ms per matmul,
    which dwarfs the tiny model's real work; one thread is ~100x faster here.
    """
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def float32_auto(monkeypatch):
    """Make ``dtype='auto'`` mean float32 on this CPU, whatever its bf16 support.

    For tests of mechanics that compare two runs exactly (Dask partitions
    against the pandas accessor, a resumed run against a whole one): in
    bfloat16 a text's result depends on the batch it is scored in (by up to
    0.027 in a probability on real tweets), in float32 by ~1e-6.
    """
    from nbllm.engine.loading import devices

    monkeypatch.setattr(devices, "_NATIVE_BF16", False)


@pytest.fixture
def bf16_auto(monkeypatch):
    """Make ``dtype='auto'`` mean bfloat16 on CPU, as on a CPU with native bf16."""
    from nbllm.engine.loading import devices

    monkeypatch.setattr(devices, "_NATIVE_BF16", True)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """A folder holding the tiny model, loadable by path."""
    return save_tiny(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def tiny_tok():
    return get_tiny_tokenizer()


@pytest.fixture
def tiny_model():
    return get_tiny_model()



# ---------------------------------------------------------------------------
# Fixtures for the notebook-layer tests (magics, accessor, panel).  They are
# autouse where a module imports them.


@pytest.fixture
def notebook_state(monkeypatch):
    """Clean session settings and result cache; fail fast on the real model."""
    from nbllm.engine.loading import models
    from nbllm.notebook.session import session

    real = models._load

    def guarded(spec, device, dtype, trust_remote_code=False):
        assert spec != models.DEFAULT_MODEL, "a test tried to load the embedded model"
        return real(spec, device, dtype, trust_remote_code=trust_remote_code)

    monkeypatch.setattr(models, "_load", guarded)
    session.reset()
    yield
    session.reset()


@pytest.fixture(scope="module")
def shell():
    """A real IPython shell with the extension loaded."""
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "nbllm")
    return ip


@pytest.fixture
def ip(shell):
    """The shell; names a test puts into user_ns are removed afterwards."""
    before = set(shell.user_ns)
    yield shell
    for name in set(shell.user_ns) - before:
        del shell.user_ns[name]


@pytest.fixture
def spy_score(monkeypatch):
    """Record the prompt ids of every LabelScorer.score call."""
    calls = []
    from nbllm.engine.scoring import scorer as scoring

    original = scoring.LabelScorer.score

    def score(self, prompt_ids, *args, **kwargs):
        calls.append([list(p) for p in prompt_ids])
        return original(self, prompt_ids, *args, **kwargs)

    monkeypatch.setattr(scoring.LabelScorer, "score", score)
    return calls
