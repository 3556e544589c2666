"""Every use nbllm makes of a private or internal name of transformers, gguf or torch.

nbllm reads a few names these libraries do not promise to keep: gguf's
reader internals (``GGUFReader._get``/``_get_field_parts``), transformers'
GGUF module (``modeling_gguf_pytorch_utils``, ``integrations.gguf.utils``),
its auto-model tables (``models.auto.modeling_auto``), a config's
``_attn_implementation`` and the attention function registered as
``"sdpa"``.  They are all here, each behind a function, so that a library
release that changes one breaks one place, with :class:`LibraryChanged`
naming the library, its version and the name (``tests/test_compat.py``
checks each one against the installed versions).

Two of them hand transformers something for the duration of a call
(:func:`shared_reader`, :func:`sdpa_override`).  Neither is visible to
another thread: each library name is replaced once, by a function that
reads a :class:`contextvars.ContextVar` and gives every caller outside the
block (another thread, another task) the library's own object.

The libraries are imported inside the functions: ``import nbllm`` does not
import torch, transformers or gguf.
"""

import contextlib
import contextvars
import functools
import importlib
import inspect
import sys
import threading
from pathlib import Path

import numpy as np

# Installing the shims below happens once per process, whichever thread comes first.
_INSTALL = threading.Lock()


class LibraryChanged(RuntimeError):
    """A private name nbllm uses is gone from, or changed in, the installed library."""


def _version(library):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(library)
    except PackageNotFoundError:
        return "(version unknown)"


def changed(library, what):
    """The error for a library whose private name ``what`` is gone or changed.

    Parameters
    ----------
    library : str
        The distribution's name ('transformers', 'gguf', 'torch').
    what : str
        The name and how it changed.

    Returns
    -------
    LibraryChanged
    """
    return LibraryChanged(
        f"{library} {_version(library)} changed {what}, which nbllm uses "
        "(nbllm/compat.py); install a version docs/dependencies.md lists, or "
        "report it to nbllm"
    )


def _internal(library, module, name):
    """``module.name``, or :class:`LibraryChanged` if the library no longer has it."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise changed(library, f"{module}.{name} (gone)") from None


def _check_signature(library, function, qualname, expected):
    """Raise :class:`LibraryChanged` unless ``function`` takes ``expected`` first."""
    try:
        parameters = list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        parameters = []
    if parameters[:len(expected)] != list(expected):
        raise changed(library, f"{qualname}'s parameters ({', '.join(expected)} "
                               f"expected, found {', '.join(parameters)})")


# ----------------------------------------------------------- gguf's reader


def _stock_gguf():
    """gguf's own ``GGUFReader`` and ``get_tensor_name_map`` (not the shims)."""
    _install_gguf_shims()
    return _GGUF_STOCK["reader"], _GGUF_STOCK["name_map"]


@functools.cache
def _plain_reader_class():
    """gguf's reader with its value reads over a plain ndarray (see :func:`plain_reader`)."""
    from gguf import GGUFValueType

    stock, _ = _stock_gguf()
    _check_signature("gguf", stock._get, "GGUFReader._get",
                     ["self", "offset", "dtype", "count", "override_order"])
    _check_signature("gguf", stock._get_field_parts, "GGUFReader._get_field_parts",
                     ["self", "orig_offs", "raw_type"])
    if not isinstance(getattr(stock, "gguf_scalar_to_np", None), dict):
        raise changed("gguf", "GGUFReader.gguf_scalar_to_np (gone)")

    class PlainReader(stock):
        def _get(self, *args, **kwargs):
            if type(self.data) is not np.ndarray:
                # Still the file's map (the view keeps it alive), minus the subclass.
                self.data = self.data.view(np.ndarray)
            return super()._get(*args, **kwargs)

        def _get_field_parts(self, orig_offs, raw_type):
            if GGUFValueType(raw_type) == GGUFValueType.ARRAY:
                parts = _array_parts(self, orig_offs)
                if parts is not None:
                    return parts
            return super()._get_field_parts(orig_offs, raw_type)

    return PlainReader


def plain_reader(path):
    """A ``gguf.GGUFReader`` of ``path`` that parses the header in under a second.

    gguf's reader slices its ``numpy.memmap`` once per value and twice per
    string, and each slice of that subclass costs microseconds of Python: a
    262k-token vocabulary took 23 s.  This reader is gguf's class with its
    ``_get`` working on a plain ndarray view of the same map and its
    ``_get_field_parts`` reading arrays of scalars or strings in one pass
    (:func:`_array_parts`), with the same fields as a result: Gemma 3's
    vocabulary then parses in under a second.
    """
    return _plain_reader_class()(str(path))


def _array_parts(reader, offset):
    """``reader._get_field_parts`` of the array at ``offset``, read in one pass.

    gguf's reader walks an array element by element (a recursive call and
    one or two slices each); here a string's length is read with
    ``int.from_bytes`` and each element's parts are plain slices of the same
    memory, with the dtypes and layout gguf's own walk gives (tested).
    Returns None for arrays of arrays, which gguf's walk reads.
    """
    from gguf import GGUFValueType

    item_type = reader._get(offset, np.uint32)
    length = reader._get(offset + 4, np.uint64)
    kind = GGUFValueType(int(item_type[0]))
    count, start = int(length[0]), offset + 12
    parts = [item_type, length]
    if not count:  # gguf's walk names no item type then, whatever the kind
        return 12, parts, [], [GGUFValueType.ARRAY]
    types = [GGUFValueType.ARRAY, kind]
    scalar = reader.gguf_scalar_to_np.get(kind)
    if scalar is not None:
        values = reader._get(start, scalar, count)
        parts += (values[i:i + 1] for i in range(count))
        return 12 + int(values.nbytes), parts, list(range(2, 2 + count)), types
    if kind != GGUFValueType.STRING:
        return None
    # The length prefix's dtype and byte order, as gguf's own _get gives them.
    length_type = reader._get(start, np.uint64).dtype
    order = {"<": "little", ">": "big"}.get(length_type.byteorder, sys.byteorder)
    data, raw, end = reader.data, memoryview(reader.data), start
    for _ in range(count):
        size = int.from_bytes(raw[end:end + 8], order)
        parts += (data[end:end + 8].view(length_type), data[end + 8:end + 8 + size])
        end += 8 + size
    return end - offset, parts, list(range(3, 3 + 2 * count, 2)), types


class _Shared:
    """What :func:`shared_reader` hands transformers: one file's reader, a name-map memo."""

    def __init__(self, path, reader):
        self.path, self.reader, self.name_maps = path, reader, {}


_SHARED_READER = contextvars.ContextVar("nbllm_shared_gguf_reader", default=None)
_GGUF_STOCK = {}


def _install_gguf_shims():
    """Replace ``gguf.GGUFReader`` and ``gguf.get_tensor_name_map``, once, by shims.

    transformers imports both from ``gguf`` when called, and offers no way to
    pass either.  Outside a :func:`shared_reader` block (in this thread and
    task) each shim gives gguf's own: ``gguf.GGUFReader(path)`` is gguf's
    reader, an instance of gguf's class (``isinstance`` with the shim holds for
    any gguf reader, and the shim can be subclassed), and the name map is
    built anew as gguf builds it.
    """
    with _INSTALL:
        if _GGUF_STOCK:
            return
        import gguf

        stock_reader, stock_map = gguf.GGUFReader, gguf.get_tensor_name_map

        class _ReaderType(type(stock_reader)):
            def __instancecheck__(cls, instance):
                return isinstance(instance, stock_reader)

            def __subclasscheck__(cls, subclass):
                return issubclass(subclass, stock_reader)

        class GGUFReader(stock_reader, metaclass=_ReaderType):
            __doc__ = stock_reader.__doc__

            def __new__(cls, path, *args, **kwargs):
                if cls is not GGUFReader:  # a subclass: built as any class is
                    return super().__new__(cls)
                shared = _SHARED_READER.get()
                if (shared is not None and not args and not kwargs
                        and Path(path).resolve() == shared.path):
                    return shared.reader
                # Not an instance of this class, so Python calls no __init__ again.
                return stock_reader(path, *args, **kwargs)

        # Named as what it is: a reader's type() says gguf's class, this one says nbllm's.
        GGUFReader.__qualname__ = "GGUFReader"

        @functools.wraps(stock_map)
        def get_tensor_name_map(*args, **kwargs):
            shared = _SHARED_READER.get()
            if shared is None:
                return stock_map(*args, **kwargs)
            key = (args, tuple(sorted(kwargs.items())))
            if key not in shared.name_maps:
                shared.name_maps[key] = stock_map(*args, **kwargs)
            return shared.name_maps[key]

        _GGUF_STOCK.update(reader=stock_reader, name_map=stock_map)
        gguf.GGUFReader, gguf.get_tensor_name_map = GGUFReader, get_tensor_name_map


@contextlib.contextmanager
def shared_reader(gguf_path, reader):
    """Within the block, transformers reads ``gguf_path`` through ``reader``.

    transformers re-reads what cannot change within one conversion: the
    whole header (the vocabulary included) at each of its calls (the
    tokenizer, the config: three parses of a 262k-token vocabulary, most of a
    conversion's time), and gguf's tensor-name table once per module of the
    model (300 times for Gemma 3).  In this block, in this thread (or task),
    ``gguf.GGUFReader(gguf_path)`` returns ``reader`` (a new reader for any
    other file) and ``gguf.get_tensor_name_map`` remembers its tables; every
    other thread meanwhile gets gguf's own (see :func:`_install_gguf_shims`).
    """
    _install_gguf_shims()
    token = _SHARED_READER.set(_Shared(Path(gguf_path).resolve(), reader))
    try:
        yield
    finally:
        _SHARED_READER.reset(token)


# ------------------------------------------------- transformers' GGUF module

_GGUF_MODULE = "transformers.modeling_gguf_pytorch_utils"


def gguf_architectures():
    """The GGUF architectures transformers converts tensor by tensor (a set of str)."""
    return set(_internal("transformers", _GGUF_MODULE, "GGUF_SUPPORTED_ARCHITECTURES"))


def packed_gguf_architectures():
    """Architectures that only transformers' newer packed-GGUF loader (5.x) reads."""
    try:
        from transformers.integrations.gguf.utils import GGUF_ARCHS
    except ImportError:  # an older transformers: none
        return set()
    return set(GGUF_ARCHS)


def gguf_tensor_processor(architecture, config):
    """transformers' tensor processor for a GGUF ``architecture``, for ``config`` (a dict)."""
    processors = _internal("transformers", _GGUF_MODULE, "TENSOR_PROCESSORS")
    default = _internal("transformers", _GGUF_MODULE, "TensorProcessor")
    return processors.get(architecture, default)(config=config)


def gguf_weights_map(model, processor):
    """transformers' GGUF-to-model tensor names (its signature changed in 5.x)."""
    weights_map = _internal("transformers", _GGUF_MODULE, "get_gguf_hf_weights_map")
    if "processor" in inspect.signature(weights_map).parameters:
        return weights_map(model, processor)
    return weights_map(model)


# ------------------------------------------------- transformers' model tables

_AUTO_MODULE = "transformers.models.auto.modeling_auto"


def causal_lm_types():
    """The ``model_type`` names transformers loads with ``AutoModelForCausalLM``."""
    return _internal("transformers", _AUTO_MODULE, "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES")


def seq2seq_lm_types():
    """The ``model_type`` names transformers loads with ``AutoModelForSeq2SeqLM``."""
    return _internal("transformers", _AUTO_MODULE,
                     "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES")


# ------------------------------------------------------ transformers' attention


def attention_implementation(config):
    """The attention a model's ``config`` runs ('sdpa', 'eager'...), read only.

    transformers keeps it in the private ``config._attn_implementation``;
    None for a config that is not transformers'.
    """
    if hasattr(config, "_attn_implementation"):
        return config._attn_implementation
    from transformers import PretrainedConfig

    if isinstance(config, PretrainedConfig):
        raise changed("transformers", "PretrainedConfig._attn_implementation (gone)")
    return None  # not a transformers config: no attention of transformers' to name


_SDPA_OVERRIDE = contextvars.ContextVar("nbllm_sdpa_override", default=None)
_SDPA_STOCK = []


def _install_sdpa_dispatch():
    """Register, once, a function under ``"sdpa"`` that dispatches on the context.

    transformers' models look their attention function up by the config's
    name at each forward pass.  The registered function calls the one
    :func:`sdpa_override` set in this thread (or task) and transformers' own
    SDPA function everywhere else.  Returns transformers' own, or None for a
    transformers without the public ``AttentionInterface``.
    """
    with _INSTALL:
        if not _SDPA_STOCK:
            try:
                from transformers import AttentionInterface
            except ImportError:
                _SDPA_STOCK.append(None)
                return None
            stock = AttentionInterface()["sdpa"]

            def sdpa_or_override(module, *args, **kwargs):
                override = _SDPA_OVERRIDE.get()
                return (stock if override is None else override)(module, *args, **kwargs)

            AttentionInterface.register("sdpa", sdpa_or_override)
            _SDPA_STOCK.append(stock)
        return _SDPA_STOCK[0]


def stock_sdpa():
    """transformers' own SDPA attention function (for an override to hand back to)."""
    stock = _install_sdpa_dispatch()
    if stock is None:
        raise changed("transformers", "AttentionInterface (gone)")
    return stock


@contextlib.contextmanager
def sdpa_override(function):
    """In the block, in this thread (or task), models running "sdpa" call ``function``.

    ``function`` takes transformers' attention-function arguments.  Nothing
    any other thread sees changes: no config, no registered name.  Yields
    whether the override is on (False for a transformers without the public
    ``AttentionInterface``).
    """
    if _install_sdpa_dispatch() is None:
        yield False
        return
    token = _SDPA_OVERRIDE.set(function)
    try:
        yield True
    finally:
        _SDPA_OVERRIDE.reset(token)
