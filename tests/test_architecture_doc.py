"""Every file, module and function that ARCHITECTURE.md names exists.

The page records what the code does; when a file moves or a function is
renamed, this fails until the page follows.  Read from the page: file names
(``magic_syntax.py``, ``engine/scoring/scorer.py``), a file followed by what it
defines (``notebook/magic_syntax.py  read_labels:``), dotted names of nbllm's
modules (``classify.build_estimator``, ``nbllm.engine.models``), and the names
in backticks (``label_mass``, ``prompt_token_ids``, ``wrap_model(...)``).
"""

import ast
import importlib
import importlib.util
import re
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nbllm"
PAGE = (ROOT / "ARCHITECTURE.md").read_text()
# Other projects' files and folders hold the files the page names besides nbllm's.
SEARCHED = [PACKAGE, ROOT / "tests", ROOT / "benchmarks", ROOT / ".ci", ROOT / "docs" / "_ext"]
# Names of other libraries that the page names in backticks, with where they live.
OTHER_LIBRARIES = {
    "from_pretrained": ("transformers", "PreTrainedModel.from_pretrained"),
    "get_cpu_capability": ("torch.backends.cpu", "get_cpu_capability"),
    "clear_output": ("ipywidgets", "Output.clear_output"),
    "parametrize_with_checks": ("sklearn.utils.estimator_checks", "parametrize_with_checks"),
    "type_of_target": ("sklearn.utils.multiclass", "type_of_target"),
    "_parameter_constraints": ("sklearn.linear_model", "LogisticRegression._parameter_constraints"),
    "modeling_gguf_pytorch_utils": ("transformers.modeling_gguf_pytorch_utils", "__name__"),
}
# Names of the browser's DOM that the page names (the anywidget front ends'
# JavaScript, and the HTML attributes it replaced).
DOM_NAMES = {"onclick", "onerror", "textContent"}


def nbllm_files():
    return sorted(PACKAGE.rglob("*.py"))


@lru_cache(maxsize=None)
def defined_in(path):
    """Functions, classes (and their methods) and module-level names of a file."""
    names = set()
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


@lru_cache(maxsize=None)
def identifiers_in_nbllm():
    """Every name nbllm's code uses: functions, classes, variables, attributes, parameters."""
    found = set()
    for path in nbllm_files():
        for node in ast.walk(ast.parse(path.read_text())):
            for field in ("id", "attr", "arg", "name"):
                value = getattr(node, field, None)
                if isinstance(value, str):
                    found.add(value)
    return found


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def find_file(name):
    """The files a name on the page can mean: a path from the root or from nbllm/,
    or, for a bare file name, any file of that name."""
    if "/" in name:
        return [p for p in (ROOT / name, PACKAGE / name) if p.is_file()]
    return [p for folder in SEARCHED for p in folder.rglob(name) if p.is_file()]


FILES = sorted(set(re.findall(r"[\w./]*\w\.py\b", PAGE)))


def test_the_page_names_files():
    assert "engine/scoring/scorer.py" in FILES and "magic_syntax.py" in FILES


@pytest.mark.parametrize("name", FILES)
def test_every_file_it_names_exists(name):
    assert find_file(name), f"ARCHITECTURE.md names {name}, which does not exist"


# A file, then a name it defines: followed by ':', '->' or '(', or a name
# that reads as code (snake_case, CamelCase).
FILE_THEN_NAME = re.compile(
    r"([\w/]+\.py)[ \t]+([A-Za-z_]\w*)(?=[ \t]*(?:->|:|\())"
    r"|([\w/]+\.py)[ \t]+([A-Za-z_]\w*_\w*|[A-Z][a-z]+[A-Z]\w*)\b")
PAIRS = sorted({(m[0] or m[2], m[1] or m[3]) for m in FILE_THEN_NAME.findall(PAGE)})


def test_the_page_names_functions_in_files():
    assert ("notebook/magic_syntax.py", "read_labels") in PAIRS
    assert ("estimators/single_label.py", "probas_from_scores") in PAIRS


@pytest.mark.parametrize("file, name", PAIRS)
def test_every_function_it_places_in_a_file_is_there(file, name):
    paths = [p for p in find_file(file) if p.is_relative_to(PACKAGE)]
    assert paths, file
    assert any(name in defined_in(p) for p in paths), f"{name} is not in {file}"


def nbllm_modules_named(stem):
    return [module_name(p) for p in nbllm_files() if p.stem == stem]


# Dotted names whose first part is nbllm or one of its modules
# (``classify.build_estimator``, ``engine/loading/models.get_model``).
DOTTED = sorted({
    name for name in re.findall(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)",
                                re.sub(r"[\w./]*\w\.(py|md|toml|json)\b", " ", PAGE))
    if name.split(".")[0] == "nbllm"
    or (nbllm_modules_named(name.split(".")[0])
        and importlib.util.find_spec(name.split(".")[0]) is None)  # not a library's
})


def test_the_page_names_dotted_paths():
    assert {"magic_syntax.read_labels", "nbllm.engine.models"} <= set(DOTTED)


def resolve(dotted):
    """The object a dotted name means: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("dotted", DOTTED)
def test_every_dotted_name_resolves(dotted):
    head, _, rest = dotted.partition(".")
    candidates = [dotted] if head == "nbllm" else [
        f"{module}.{rest}" for module in nbllm_modules_named(head)]
    found = []
    for candidate in candidates:
        try:
            found.append(resolve(candidate))
        except (ImportError, AttributeError):
            pass
    assert found, f"ARCHITECTURE.md names {dotted}, which does not exist"


SPANS = re.findall(r"`([^`\n]+)`", PAGE)
CALLED = sorted({name for span in SPANS
                 for name in re.findall(r"(?<![\w.])([A-Za-z_]\w*)\(", span)})
BARE = sorted({span for span in SPANS if re.fullmatch(r"[A-Za-z_]\w*", span)})


@pytest.mark.parametrize("name", CALLED)
def test_every_function_called_in_backticks_is_defined(name):
    if name in OTHER_LIBRARIES:
        module, attrs = OTHER_LIBRARIES[name]
        obj = importlib.import_module(module)
        for attr in attrs.split("."):
            obj = getattr(obj, attr)
        return
    assert any(name in defined_in(p) for p in nbllm_files()), \
        f"ARCHITECTURE.md calls {name}(...), which nbllm does not define"


@pytest.mark.parametrize("name", BARE)
def test_every_name_in_backticks_is_nbllms_or_a_named_librarys(name):
    """A name nbllm's code uses, one of its modules, or an installed library."""
    assert (name in identifiers_in_nbllm() or name in OTHER_LIBRARIES or name in DOM_NAMES
            or nbllm_modules_named(name) or importlib.util.find_spec(name) is not None), \
        f"ARCHITECTURE.md names `{name}`, which nbllm's code never uses"


def test_every_module_of_nbllm_is_on_the_layer_map():
    """The reverse direction: no module is missing from the page."""
    named = {Path(f).name for f in FILES}
    missing = [p.relative_to(PACKAGE).as_posix() for p in nbllm_files()
               if p.name not in named and p.name not in ("__init__.py", "_version.py")]
    assert missing == []
