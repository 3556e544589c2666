"""The layout shows the architecture, and the old import paths keep working.

Read from the source (no module is run for the import graph): the engine's two
halves import one way (scoring may import loading, never the reverse), the
engine imports nothing of the layers above it, and no module imports another
module's private names (private base classes excepted).
"""

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import nbllm
import nbllm.engine

PACKAGE = Path(nbllm.__file__).parent


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def nbllm_imports(path):
    """``(target module, imported names)`` of each import of nbllm in ``path``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            if target.startswith("nbllm"):
                found.append((target, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names
                      if alias.name.startswith("nbllm")]
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def targets(path):
    """The nbllm modules ``path`` imports (a name imported from a package may be a module)."""
    out = set()
    for target, names in nbllm_imports(path):
        out.add(target)
        out.update(f"{target}.{n}" for n in names
                   if (PACKAGE.parent / f"{target}.{n}".replace(".", "/")).with_suffix(".py").exists()
                   or (PACKAGE.parent / f"{target}.{n}".replace(".", "/")).is_dir())
    return out


@pytest.mark.parametrize("path", sorted((PACKAGE / "engine" / "loading").glob("*.py")),
                         ids=lambda p: p.name)
def test_loading_never_imports_scoring(path):
    assert not {t for t in targets(path) if t.startswith("nbllm.engine.scoring")}


@pytest.mark.parametrize("path", sorted((PACKAGE / "engine").rglob("*.py")),
                         ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_the_engine_imports_no_layer_above_it(path):
    assert not {t for t in targets(path)
                if t.startswith(("nbllm.notebook", "nbllm.estimators"))}


def test_each_half_of_the_engine_holds_its_modules():
    loading = {p.stem for p in (PACKAGE / "engine" / "loading").glob("*.py")}
    scoring = {p.stem for p in (PACKAGE / "engine" / "scoring").glob("*.py")}
    assert {"models", "gguf", "gguf_convert", "converted_copies", "embedded",
            "special_tokens", "room", "devices"} <= loading
    assert {"scorer", "tree_mask", "prefix", "prompt_tree", "exact", "seq2seq", "batching",
            "trie", "text_scorer", "result_cache", "selfcheck", "prompts"} <= scoring
    # Only the shared helpers sit beside the two halves.
    assert {p.stem for p in (PACKAGE / "engine").glob("*.py")} == {
        "__init__", "cache_folder", "status"}


def test_no_module_imports_another_modules_private_names():
    found = []
    for path in SOURCES:
        for target, names in nbllm_imports(path):
            for name in names:
                if not name.startswith("_") or name.startswith("__"):
                    continue
                obj = getattr(importlib.import_module(target), name)
                if not inspect.isclass(obj):  # private base classes are fine
                    found.append(f"{module_name(path)}: {target}.{name}")
    assert found == []


@pytest.mark.parametrize("old", sorted(f"nbllm.engine.{n}" for n in nbllm.engine.MOVED))
def test_each_old_engine_path_imports_and_reads_the_module_in_its_new_home(old):
    new = f"nbllm.engine.{nbllm.engine.MOVED[old.rpartition('.')[2]]}"
    stand_in, module = importlib.import_module(old), importlib.import_module(new)
    public = [n for n in vars(module) if not n.startswith("_")]
    assert public and all(getattr(stand_in, n) is getattr(module, n) for n in public)


def test_the_paths_the_documentation_names_work():
    """docs/models.md, docs/notebook.md, docs/scoring.md and the quickstart notebook."""
    from nbllm.engine.converted_copies import converted_copies, delete_converted
    from nbllm.engine.loading import models
    from nbllm.engine.models import load_counts
    from nbllm.engine.result_cache import ResultCache
    from nbllm.engine.scorer import use_path

    assert nbllm.engine.models.load_counts is load_counts is models.load_counts
    assert converted_copies.__module__ == "nbllm.engine.loading.converted_copies"
    assert delete_converted.__module__ == "nbllm.engine.loading.converted_copies"
    assert ResultCache.__module__ == "nbllm.engine.scoring.result_cache"
    assert use_path.__module__ == "nbllm.engine.scoring.scorer"
    assert nbllm.engine.scorer.use_path is use_path


def test_a_stand_in_imports_nothing_for_its_dunder_names():
    """Tools walk sys.modules reading ``__file__`` (inspect.getmodule, which torch
    runs while it is imported): a stand-in must not import its engine module then."""
    import subprocess
    import sys

    code = ("import sys, inspect, nbllm.engine\n"
            "stand_in = sys.modules['nbllm.engine.scorer']\n"
            "assert not hasattr(stand_in, '__file__')\n"
            "inspect.getmodule(inspect)\n"
            "assert 'nbllm.engine.scoring.scorer' not in sys.modules\n"
            "assert 'torch' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
