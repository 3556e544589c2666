"""Shared fixtures.

The real embedded model is converted once per test session into a private
cache folder (this also exercises the cold GGUF path) and shared by every
integration test through the process-wide registry.
"""

import os
import time

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def real_model(tmp_path_factory):
    """The embedded SmolLM2-135M, loaded cold from its GGUF file, float32 on cpu.

    The converted copy goes to a private folder, ``real_model.cache_dir``;
    tests that start kernels pass it on as NBLLM_CACHE_DIR.  The variable is
    not left set, so no other test gets a disk result cache by accident.
    """
    from nbllm.engine import models

    cache = os.environ.get("NBLLM_TEST_CACHE_DIR") or str(tmp_path_factory.mktemp("nbllm-cache"))
    old = os.environ.get("NBLLM_CACHE_DIR")
    os.environ["NBLLM_CACHE_DIR"] = cache
    try:
        started = time.perf_counter()
        loaded = models.get_model("smollm2-135m", device="cpu", dtype="float32")
        loaded.cold_load_seconds = time.perf_counter() - started
    finally:
        if old is None:
            os.environ.pop("NBLLM_CACHE_DIR", None)
        else:
            os.environ["NBLLM_CACHE_DIR"] = old
    loaded.cache_dir = cache
    return loaded


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
