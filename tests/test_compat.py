"""Each private library name nbllm uses (nbllm.compat) still exists as it is used.

A test here fails with compat's own message, naming the library, its version
and the name, when a release of transformers or gguf changes one.  The
shims' other promise is checked with two threads: what a conversion hands
transformers is seen by the converting thread only.
"""

import re
import threading
from collections import Counter

import pytest
import torch

from nbllm import compat
from nbllm.engine.loading import gguf_convert
from synthetic_gguf import write_llama_gguf
from tiny import get_tiny_model


def _version(library):
    from importlib.metadata import version

    return version(library)


# ------------------------------------------------------- each name, as used


def test_ggufs_reader_internals_are_as_the_plain_reader_overrides_them():
    # _get, _get_field_parts (their parameters) and gguf_scalar_to_np.
    reader_class = compat._plain_reader_class.__wrapped__()
    stock, _ = compat._stock_gguf()
    assert issubclass(reader_class, stock)


def test_transformers_gguf_module_names():
    assert {"llama", "gemma3"} <= compat.gguf_architectures()
    processor = compat.gguf_tensor_processor("llama", {"num_attention_heads": 4})
    assert callable(processor.process)
    packed = compat.packed_gguf_architectures()
    assert all(isinstance(name, str) for name in packed)
    if int(_version("transformers").split(".")[0]) >= 5:
        assert packed, "transformers 5 has a packed-GGUF loader with its architectures"


def test_transformers_gguf_weights_map_under_the_shared_reader(tmp_path):
    # get_gguf_hf_weights_map looks gguf.get_tensor_name_map up when called,
    # once per module: the shim's memo holds the one table it built.
    from transformers import AutoConfig, AutoModelForCausalLM

    path = write_llama_gguf(tmp_path / "model.gguf", vocab=64)
    reader = gguf_convert.open_reader(path)
    with compat.shared_reader(path, reader):
        config = AutoConfig.from_pretrained(str(tmp_path), gguf_file=path.name)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        processor = compat.gguf_tensor_processor("llama", config.to_dict())
        names = compat.gguf_weights_map(model, processor)
        memo = compat._SHARED_READER.get().name_maps
    assert "token_embd.weight" in names and len(memo) == 1


def test_transformers_auto_model_tables():
    assert "llama" in compat.causal_lm_types()
    assert "t5" in compat.seq2seq_lm_types()


def test_the_attention_implementation_and_stock_sdpa():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    assert compat.attention_implementation(get_tiny_model().config) == "sdpa"
    assert compat.attention_implementation(object()) is None
    assert compat.stock_sdpa() is sdpa_attention_forward


# ------------------------------------------------- the message when one goes


def test_a_gone_name_names_the_library_and_its_version(monkeypatch):
    from transformers import modeling_gguf_pytorch_utils

    monkeypatch.delattr(modeling_gguf_pytorch_utils, "GGUF_SUPPORTED_ARCHITECTURES")
    message = (
        f"transformers {_version('transformers')} changed "
        "transformers.modeling_gguf_pytorch_utils.GGUF_SUPPORTED_ARCHITECTURES (gone), "
        "which nbllm uses (nbllm/compat.py); install a version docs/dependencies.md "
        "lists, or report it to nbllm"
    )
    with pytest.raises(compat.LibraryChanged, match=f"^{re.escape(message)}$"):
        compat.gguf_architectures()


def test_a_changed_signature_names_the_library_and_its_version(monkeypatch):
    stock, _ = compat._stock_gguf()
    monkeypatch.setattr(stock, "_get", lambda self, start, kind: None)
    message = (
        f"gguf {_version('gguf')} changed GGUFReader._get's parameters (self, offset, "
        "dtype, count, override_order expected, found self, start, kind), which nbllm "
        "uses (nbllm/compat.py); install a version docs/dependencies.md lists, or report "
        "it to nbllm"
    )
    with pytest.raises(compat.LibraryChanged, match=f"^{re.escape(message)}$"):
        compat._plain_reader_class.__wrapped__()


# ------------------------------------------------ two threads, one converting


def test_a_thread_loading_meanwhile_gets_ggufs_own_reader_and_name_map(tmp_path,
                                                                        monkeypatch):
    import gguf
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    path = write_llama_gguf(tmp_path / "model.gguf", vocab=64)
    stock, _ = compat._stock_gguf()
    opened = Counter()  # gguf readers built, per thread
    stock_init = stock.__init__

    def counting_init(self, *args, **kwargs):
        opened[threading.get_ident()] += 1
        stock_init(self, *args, **kwargs)

    monkeypatch.setattr(stock, "__init__", counting_init)
    reader = gguf_convert.open_reader(path)
    opened.clear()
    inside, loaded = threading.Event(), threading.Event()
    seen, errors = {}, []

    def converting():
        try:
            with compat.shared_reader(path, reader):
                inside.set()
                assert loaded.wait(60)
                # transformers' own parse of the header, here through the open reader.
                seen["converting"] = load_gguf_checkpoint(str(path))["config"]
                seen["converting reader"] = gguf.GGUFReader(str(path))
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    def loading():
        try:
            assert inside.wait(60)
            seen["loading reader"] = gguf.GGUFReader(str(path))
            seen["loading"] = load_gguf_checkpoint(str(path))["config"]
            maps = [gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2) for _ in range(2)]
            seen["fresh maps"] = maps[0] is not maps[1]
            seen["loading thread"] = threading.get_ident()
        except Exception as exc:
            errors.append(exc)
        finally:
            loaded.set()

    threads = [threading.Thread(target=converting), threading.Thread(target=loading)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    # The loading thread: gguf's own class and tables, two readers of its own.
    assert type(seen["loading reader"]) is stock
    assert seen["loading reader"] is not reader
    assert seen["fresh maps"]
    assert opened[seen["loading thread"]] == 2
    # The converting thread: the open reader, no reader built.
    assert seen["converting reader"] is reader
    assert sum(opened.values()) == 2
    assert seen["converting"] == seen["loading"]
