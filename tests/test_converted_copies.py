"""Listing and deleting the converted GGUF copies: the engine and ``%nbllm cache``.

The copies are fake folders (a config.json and a few bytes of "weights")
sealed by the converter's own marker writer, in a private cache folder; no
model is converted or loaded.
"""

import json
import os
import re
import time

import pytest
from IPython.core.error import UsageError

from nbllm.engine import cache_folder
from nbllm.engine.loading import gguf, models
from nbllm.engine.loading.converted_copies import (
    UNKNOWN,
    converted_copies,
    delete_converted,
    size_text,
)
from nbllm.exceptions import InputError, UserError

pytestmark = pytest.mark.usefixtures("notebook_state")

HOSTILE = "<img src=x onerror=alert(1)>.gguf"
DECLARED = {"add_bos_token": None, "add_eos_token": None}
A_DAY_AGO = time.time() - 2 * cache_folder.STALE_SECONDS


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("NBLLM_CACHE_DIR", str(folder))
    return folder


def make_copy(cache, name, source="model.gguf", dtype="float32", weights=1000, **changes):
    """A converted folder sealed as the converter seals one, ``changes`` then
    written over its marker (None removes a key)."""
    folder = cache / "converted" / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\0" * weights)
    gguf._seal(folder, dtype, DECLARED, {"file": source, "sha256": "0" * 64})
    if changes:
        marker_path = folder / gguf.COMPLETE_MARKER
        marker = json.loads(marker_path.read_text())
        marker.update(changes)
        marker_path.write_text(json.dumps({k: v for k, v in marker.items()
                                           if v is not None}))
    return folder


def files_size(folder):
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def leftover(cache, name, old=True):
    folder = cache / "converted" / name
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\0" * 10)
    if old:
        os.utime(folder, (A_DAY_AGO, A_DAY_AGO))
    return folder


@pytest.fixture
def mixed(cache):
    """One copy of each kind this environment can meet."""
    return {
        "usable": make_copy(cache, "gguf-f32-0123456789abcdef", weights=2000),
        "bf16": make_copy(cache, "gguf-bf16-0123456789abcdef", dtype="bfloat16"),
        "other": make_copy(cache, "gguf-f32-fedcba9876543210",
                           converter="format 4, transformers 4.56.0, tokenizers 0.21.0, "
                                     "gguf 0.17.1"),
        "older": make_copy(cache, "SmolLM2-135M-Instruct.Q4_1-f32-1234abcd",
                           format=3, source=None, converter=None),
        "unsealed": make_copy(cache, "gguf-f32-aaaaaaaaaaaaaaaa"),
    }


def test_listing_reads_every_copy_with_its_size_and_status(mixed, cache):
    (mixed["unsealed"] / gguf.COMPLETE_MARKER).unlink()
    (mixed["bf16"] / "model.safetensors").write_bytes(b"\0" * 3)  # truncated
    contents = converted_copies()
    assert contents.folder == cache
    by_name = {c.name: c for c in contents.copies}
    assert list(by_name) == sorted(p.name for p in mixed.values())
    usable = by_name["gguf-f32-0123456789abcdef"]
    assert (usable.source, usable.dtype, usable.status, usable.usable, usable.in_use) == (
        "model.gguf", "float32", "usable", True, False)
    assert usable.converter == gguf.converter_versions()
    assert usable.size == files_size(mixed["usable"]) > 2000
    assert by_name["gguf-bf16-0123456789abcdef"].status == (
        "incomplete: model.safetensors has 3 bytes instead of 1000")
    other = by_name["gguf-f32-fedcba9876543210"]
    assert (other.status, other.usable) == ("other library versions", False)
    assert other.converter.startswith("format 4, transformers 4.56.0")
    older = by_name["SmolLM2-135M-Instruct.Q4_1-f32-1234abcd"]
    assert (older.source, older.converter, older.status, older.usable) == (
        UNKNOWN, UNKNOWN, "older nbllm", False)
    assert by_name["gguf-f32-aaaaaaaaaaaaaaaa"].status == (
        "incomplete: it has no nbllm-complete.json: the conversion was interrupted or "
        "made by an older nbllm")
    assert (by_name["gguf-f32-aaaaaaaaaaaaaaaa"].source,
            by_name["gguf-f32-aaaaaaaaaaaaaaaa"].dtype) == (UNKNOWN, UNKNOWN)
    assert contents.total == sum(files_size(f) for f in mixed.values())


def test_a_copy_of_a_newer_nbllm_is_not_usable(cache):
    make_copy(cache, "gguf-f32-0123456789abcdef", format=gguf.CONVERSION_FORMAT + 1)
    copy, = converted_copies().copies
    assert (copy.status, copy.usable) == ("newer nbllm", False)


def test_last_used_is_the_weights_access_time(cache):
    folder = make_copy(cache, "gguf-f32-0123456789abcdef")
    os.utime(folder / "model.safetensors", (1_000_000, 1_000_000))
    assert converted_copies().copies[0].last_used == 1_000_000


def test_an_empty_or_missing_cache_lists_nothing(cache):
    contents = converted_copies()
    assert (contents.copies, contents.assembled, contents.leftovers, contents.total) == (
        (), (), (), 0)


def test_assembled_files_and_leftovers_are_listed(cache):
    (cache / "gguf").mkdir(parents=True)
    (cache / "gguf" / "gemma-3-270m-q4_k_m.gguf").write_bytes(b"GGUF" + b"\0" * 96)
    (cache / "gguf" / ".gemma-3-270m-q4_k_m.gguf.1-abc.tmp").write_bytes(b"GG")
    leftover(cache, ".tmp-1-old")
    leftover(cache, f".broken-{os.getpid()}-young", old=False)
    contents = converted_copies()
    assert [(f.name, f.size) for f in contents.assembled] == [
        ("gemma-3-270m-q4_k_m.gguf", 100)]
    assert [(f.name, f.size, f.stale) for f in contents.leftovers] == [
        (f".broken-{os.getpid()}-young", 10, False), (".tmp-1-old", 10, True)]


def test_links_in_the_cache_are_neither_listed_nor_followed(cache, tmp_path):
    outside = make_copy(tmp_path / "elsewhere", "gguf-f32-1111111111111111")
    (cache / "converted").mkdir(parents=True)
    (cache / "converted" / "gguf-f32-2222222222222222").symlink_to(outside)
    assert converted_copies().copies == ()
    delete_converted("all")
    assert (outside / "model.safetensors").exists()


def test_delete_one_by_name(mixed, cache):
    size = files_size(mixed["usable"])
    deletion = delete_converted("gguf-f32-0123456789abcdef")
    assert deletion.deleted == (("gguf-f32-0123456789abcdef", size),)
    assert deletion.freed == size and deletion.kept == ()
    assert not mixed["usable"].exists()
    # Nothing half-deleted is left aside.
    assert sorted(p.name for p in (cache / "converted").iterdir()) == sorted(
        f.name for k, f in mixed.items() if k != "usable")


def test_delete_stale_keeps_the_usable_ones(mixed, cache):
    (mixed["unsealed"] / gguf.COMPLETE_MARKER).unlink()
    leftover(cache, ".tmp-1-old")
    young = leftover(cache, f".tmp-{os.getpid()}-young", old=False)
    deletion = delete_converted("stale")
    assert sorted(name for name, _ in deletion.deleted) == sorted([
        ".tmp-1-old", "SmolLM2-135M-Instruct.Q4_1-f32-1234abcd",
        "gguf-f32-aaaaaaaaaaaaaaaa", "gguf-f32-fedcba9876543210"])
    # A young leftover may be a conversion running now.
    assert sorted(p.name for p in (cache / "converted").iterdir()) == sorted([
        "gguf-bf16-0123456789abcdef", "gguf-f32-0123456789abcdef", young.name])


def test_delete_all_keeps_assembled_files(mixed, cache):
    (cache / "gguf").mkdir()
    (cache / "gguf" / "a.gguf").write_bytes(b"GGUF")
    total = sum(files_size(f) for f in mixed.values())
    deletion = delete_converted("all")
    assert len(deletion.deleted) == len(mixed)
    assert deletion.freed == total
    assert list((cache / "converted").iterdir()) == []
    assert (cache / "gguf" / "a.gguf").exists()
    assert delete_converted("a.gguf").deleted == (("a.gguf", 4),)
    assert not (cache / "gguf" / "a.gguf").exists()
    assert delete_converted("all").deleted == ()


@pytest.fixture
def loaded(monkeypatch, cache):
    """A model registered as loaded from a converted copy, as get_model does."""
    folder = make_copy(cache, "gguf-f32-0123456789abcdef")
    entry = models.LoadedModel(spec="my.gguf", model=None, tokenizer=None, device="cpu",
                               dtype="float32", fingerprint="0", context_length=8,
                               selfcheck_file=folder / "selfcheck-cpu.json")
    monkeypatch.setitem(models._registry, ("my.gguf", "cpu", "float32"), entry)
    return folder


def test_a_copy_a_loaded_model_uses_is_refused(loaded):
    assert converted_copies().copies[0].in_use
    msg = ("Cannot delete 'gguf-f32-0123456789abcdef': a model loaded in this process "
           "uses it; restart the kernel first")
    with pytest.raises(InputError, match=f"^{re.escape(msg)}$"):
        delete_converted("gguf-f32-0123456789abcdef")
    assert delete_converted("all").kept == (
        ("gguf-f32-0123456789abcdef", "used by a loaded model"),)
    assert (loaded / "model.safetensors").exists()


@pytest.mark.parametrize("name", ["../gguf", "..", ".", "a/b", "a\\b",
                                  "/tmp/gguf-f32-0123456789abcdef"])
def test_names_with_path_parts_are_refused(mixed, name):
    msg = (f"Cannot delete {name!r}: name a converted copy by its folder's name alone, "
           "without '/', '\\' or '..'")
    with pytest.raises(InputError, match=f"^{re.escape(msg)}$"):
        delete_converted(name)
    assert all(f.exists() for f in mixed.values())


def test_unknown_and_empty_names_are_refused(cache):
    msg = (f"Cannot delete 'gguf-f32-nope': {cache} holds no converted copy or "
           "assembled GGUF file of that name")
    with pytest.raises(InputError, match=f"^{re.escape(msg)}$"):
        delete_converted("gguf-f32-nope")
    with pytest.raises(UserError, match=re.escape(
            "Say what to delete: a converted copy's name, 'stale' or 'all'; got ''")):
        delete_converted("")


def test_size_text():
    assert [size_text(n) for n in (0, 999, 1000, 1_130_000_000, 2 * 10**12)] == [
        "0 bytes", "999 bytes", "1.0 kB", "1.1 GB", "2000.0 GB"]


# ------------------------------------------------------------- %nbllm cache


def test_magic_lists_the_copies_and_escapes_file_names(ip, cache):
    make_copy(cache, "gguf-f32-0123456789abcdef", source=HOSTILE)
    listing = ip.run_line_magic("nbllm", "cache")
    html = listing._repr_html_()
    assert HOSTILE not in html and "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;.gguf" in html
    # Paths and names wrap in a narrow output (the browser test measures it).
    assert '<td class="nbllm-wrap">&lt;img src=x onerror=alert(1)&gt;.gguf</td>' in html
    assert 'class="nbllm-cache tex2jax_ignore mathjax_ignore"' in html
    assert "<code>%nbllm cache delete stale</code>" in html
    text = repr(listing).splitlines()
    assert text[0] == f"1 converted GGUF copy in {cache / 'converted'}"
    assert text[1].startswith(f"  gguf-f32-0123456789abcdef | {HOSTILE} | float32 | ")
    assert text[1].endswith(f" | {gguf.converter_versions()}")
    assert text[2] == f"total: {size_text(converted_copies().total)} in {cache}"
    assert text[3].startswith("delete with: %nbllm cache delete NAME")


def test_magic_on_an_empty_cache(ip, cache):
    listing = ip.run_line_magic("nbllm", "cache")
    assert repr(listing).splitlines()[:2] == [
        f"No converted GGUF copies in {cache / 'converted'}", f"total: 0 bytes in {cache}"]
    assert "<table" not in listing._repr_html_()


def test_magic_deletes_and_says_what_it_freed(ip, mixed):
    size = files_size(mixed["other"])
    listing = ip.run_line_magic("nbllm", "cache delete gguf-f32-fedcba9876543210")
    assert listing.note == f"Deleted gguf-f32-fedcba9876543210 ({size_text(size)} freed)."
    assert repr(listing).startswith(listing.note + "\n4 converted GGUF copies")
    assert "gguf-f32-fedcba9876543210" not in repr(listing).split("\n", 1)[1]
    listing = ip.run_line_magic("nbllm", "cache delete stale")
    assert listing.note.startswith("Deleted SmolLM2-135M-Instruct.Q4_1-f32-1234abcd (")
    assert [c.name for c in listing.contents.copies] == [
        "gguf-bf16-0123456789abcdef", "gguf-f32-0123456789abcdef",
        "gguf-f32-aaaaaaaaaaaaaaaa"]
    assert ip.run_line_magic("nbllm", "cache delete all").contents.copies == ()
    assert ip.run_line_magic("nbllm", "cache delete all").note == "Nothing deleted."


def test_magic_keeps_a_loaded_copy_with_one_line(ip, loaded):
    with pytest.raises(UsageError, match=re.escape(
            "Cannot delete 'gguf-f32-0123456789abcdef': a model loaded in this process "
            "uses it; restart the kernel first")):
        ip.run_line_magic("nbllm", "cache delete gguf-f32-0123456789abcdef")
    listing = ip.run_line_magic("nbllm", "cache delete all")
    assert listing.note == ("Nothing deleted; kept gguf-f32-0123456789abcdef (used by a "
                            "loaded model).")
    assert "usable, in use" in repr(listing)


@pytest.mark.parametrize("line", ["cache delete", "cache delete a b"])
def test_magic_delete_needs_one_name(ip, cache, line):
    with pytest.raises(UsageError, match=re.escape(
            "%nbllm cache delete: say what to delete: a converted copy's name (see "
            "%nbllm cache), 'stale' or 'all'")):
        ip.run_line_magic("nbllm", line)


def test_magic_refuses_a_path_in_one_line(ip, cache, capsys):
    res = ip.run_cell("%nbllm cache delete ../gguf")
    assert isinstance(res.error_in_exec, UsageError)
    assert capsys.readouterr().err == (
        "UsageError: Cannot delete '../gguf': name a converted copy by its folder's name "
        "alone, without '/', '\\' or '..'\n")
