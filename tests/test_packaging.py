"""The wheel's metadata: a torch range, a light core, extras for the rest."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# scipy (softmax, log_softmax), cachetools (the bounded result cache),
# platformdirs (the cache folder) and anywidget (the panel's and the
# Labeler's front ends) are small and used by the core (issue 36).
CORE = {"torch", "transformers", "gguf", "accelerate", "safetensors", "scikit-learn",
        "pandas", "wrapt", "numpy", "tqdm", "ipython", "ipywidgets", "scipy", "cachetools",
        "platformdirs", "anywidget"}


@pytest.fixture(scope="module")
def metadata(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(ROOT)], check=True)
    wheel = next(out.glob("nbllm-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return zf.read(name).decode()


def requirements(metadata):
    """(name, specifier, extra or None) for every Requires-Dist line."""
    out = []
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = line.split(":", 1)[1].strip()
        extra = re.search(r'extra == "([^"]+)"', req)
        name = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower()
        out.append((name, req.split(";")[0][len(name):].strip(), extra and extra.group(1)))
    return out


def test_torch_is_a_range_not_a_pin(metadata):
    torch = [spec for name, spec, extra in requirements(metadata) if name == "torch"]
    assert torch and all("==" not in spec for spec in torch), torch
    assert any(">=" in spec for spec in torch)


def test_the_core_is_light_and_the_rest_are_extras(metadata):
    reqs = requirements(metadata)
    assert {name for name, _, extra in reqs if extra is None} == CORE
    extras = {}
    for name, _, extra in reqs:
        if extra:
            extras.setdefault(extra, set()).add(name)
    assert {"nbclient", "nbconvert", "ipykernel", "nbformat"} <= extras["notebook"]
    assert extras["plots"] == {"matplotlib"}
    assert "dask" in extras["dask"]
    assert "nbllm" in extras["test"]  # test pulls the other extras in
