"""Print pip constraints that pin every bounded dependency at its lowest version.

The minimum-versions run (``make test-lowest``) installs nbllm with these
constraints, the way scikit-learn and pandas test their minimum
dependencies: each ``name>=X`` in ``pyproject.toml`` becomes ``name==X``, so
the bounds nbllm declares are the versions it is tested with.  The list is
read from ``pyproject.toml`` and nothing else, so a raised bound is tested
the moment it is written.

A dependency in ``NOT_PINNED`` keeps the version the machine gives it; the
reason is printed beside it, and docs/dependencies.md says the same.
"""

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

# Extras installed in the run, their bounds pinned too: Dask, so that ddf.llm's
# import hook (wrapt) fires on the lowest versions.
EXTRAS = ("dask",)
# Dependencies whose lowest version this run cannot install, and why.
NOT_PINNED = {
    "torch": "only the CPU wheel of torch 2.13.0 lies on this machine's disk; "
             "any other release pulls a multi-GB CUDA build",
}


def lowest_pins(pyproject):
    """``(pins, skipped)``: ``name==lowest`` lines, and ``(name, reason)`` pairs.

    Parameters
    ----------
    pyproject : pathlib.Path
        The project's ``pyproject.toml``; its dependencies and the extras in
        ``EXTRAS`` are read.

    Returns
    -------
    tuple of (list of str, list of tuple)
        The constraints to pin, and the dependencies left as the machine has
        them: those in ``NOT_PINNED`` and those with no lower bound.
    """
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    lines = list(project["dependencies"])
    for extra in EXTRAS:
        lines += extras.get(extra, [])
    pins, skipped = [], []
    for line in lines:
        requirement = Requirement(line)
        name = requirement.name
        lows = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if name in NOT_PINNED:
            skipped.append((name, NOT_PINNED[name]))
        elif not lows:
            skipped.append((name, "no lower bound declared"))
        else:
            pins.append(f"{name}=={max(lows)}")
    return pins, skipped


def main():
    root = Path(__file__).resolve().parent.parent
    pins, skipped = lowest_pins(root / "pyproject.toml")
    for name, reason in skipped:
        print(f"# {name}: not pinned ({reason})")
    print("\n".join(pins))


if __name__ == "__main__":
    sys.exit(main())
