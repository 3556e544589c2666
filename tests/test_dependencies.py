"""docs/dependencies.md against pyproject.toml and the minimum-versions run."""

import importlib.util
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "dependencies.md").read_text()
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def lowest_versions():
    spec = importlib.util.spec_from_file_location("lowest_versions",
                                                  ROOT / ".ci" / "lowest_versions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bound(requirement):
    """``'>=4.56'`` or ``'none'``, as the page writes it."""
    return str(requirement.specifier) or "none"


def table():
    """{dependency: (bound, tested cell)} from the page's table."""
    rows = re.findall(r"^\| ([\w.-]+)[^|]* \| `?([^|`]+?)`? \| ([^|]+?) \|", PAGE, re.M)
    return {name: (written, tested) for name, written, tested in rows}


def test_every_dependency_is_on_the_page_with_its_bound():
    rows = table()
    for line in PROJECT["dependencies"]:
        requirement = Requirement(line)
        assert requirement.name in rows, f"{requirement.name} is not on the page"
        assert rows[requirement.name][0] == bound(requirement), requirement.name
    assert rows["Python"][0] == PROJECT["requires-python"]


def test_the_tested_rows_are_the_versions_the_run_pins():
    pins, skipped = lowest_versions().lowest_pins(ROOT / "pyproject.toml")
    tested = {name: cell.removeprefix("yes, ") for name, (_, cell) in table().items()
              if cell.startswith("yes, ")}
    pinned = dict(pin.split("==") for pin in pins)
    assert {n: Version(v) for n, v in tested.items()} == \
        {n: Version(v) for n, v in pinned.items()}
    for name, _reason in skipped:
        assert not table()[name][1].startswith("yes"), name


def test_every_extra_is_on_the_page_with_its_bound():
    rows, prose = table(), " ".join(PAGE.split())
    for extra, lines in PROJECT["optional-dependencies"].items():
        for line in lines:
            requirement = Requirement(line)
            if requirement.name == "nbllm":
                continue  # nbllm[notebook,...]: the extras themselves
            name, written = requirement.name, bound(requirement)
            in_table = name in rows and rows[name][0] == written
            assert in_table or f"{name} `{written}`" in prose, line


def test_the_pins_follow_pyproject(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["torch>=2.1", "pandas>=2.0,<4", '
                         '"numpy", "scikit-learn >= 1.6"]\n')
    pins, skipped = lowest_versions().lowest_pins(pyproject)
    assert pins == ["pandas==2.0", "scikit-learn==1.6"]
    assert [name for name, _ in skipped] == ["torch", "numpy"]


def test_the_page_names_every_file_the_run_tests():
    makefile = (ROOT / "Makefile").read_text()
    files = re.search(r"^LOWEST_TESTS := (.+)$", makefile, re.M).group(1).split()
    assert files and all((ROOT / f).is_file() and f"`{f}`" in PAGE for f in files)
