"""The documentation's sources: the README as a front page, the pages, the API list.

These read files only (no Sphinx), so they run in ``make test``; the built
site is checked by ``tests/test_docs_site.py`` (``make docs-check``).
"""

import re
import tomllib
from pathlib import Path

import pytest

import nbllm

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
ARCHITECTURE = ROOT / "ARCHITECTURE.md"


def toctree_entries():
    text = (DOCS / "index.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```\{toctree\}\n(.*?)```", text, re.S)
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip() and not line.strip().startswith(":")]


def relative_links(path):
    """The Markdown links of ``path`` to files in the repository."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # not inside code blocks
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        yield target.split("#")[0]


def test_the_readme_is_a_front_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    assert "make demo" in text and "make test" in text
    assert "](docs/table.png)" in text and (DOCS / "table.png").is_file()
    for snippet in ("ZeroShotClassifier().fit(", "%%zeroshot --labels", "df.llm.classify("):
        assert snippet in text, snippet
    for way in ("estimators", "cell magics", "panel", "DataFrames", "Labeler"):
        assert f"| {way} |" in text, way


@pytest.mark.parametrize("path", [README, ARCHITECTURE, *sorted(DOCS.glob("*.md"))],
                         ids=lambda p: p.name)
def test_every_relative_link_points_to_a_file(path):
    for target in relative_links(path):
        if path.parent == DOCS and target.startswith("examples/"):
            # make docs copies the executed notebooks there (gitignored).
            target = "../notebooks/" + target.removeprefix("examples/")
        assert (path.parent / target).exists(), f"{path.name}: {target}"


def test_architecture_refers_to_nothing_outside_the_repository():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    assert "DESIGN.md" not in text
    for heading in ("## Layers", "## The walk of `labels`", "## Where each change goes",
                    "## Decisions", "## Benchmarks"):
        assert heading in text, heading


def test_every_page_is_in_the_table_of_contents():
    entries = set(toctree_entries())
    pages = {p.stem for p in DOCS.glob("*.md")} - {"index"}
    assert pages <= entries, pages - entries
    assert {"examples/quickstart", "examples/evaluation"} <= entries


def test_every_public_name_is_in_the_api_reference():
    text = (DOCS / "api.md").read_text() + (DOCS / "api-constants.md").read_text()
    documented = set(re.findall(r"^\.\. auto(?:class|function|data|exception):: (\w+)$",
                                text, re.M))
    assert documented == set(nbllm.__all__)
    constants = (DOCS / "api-constants.md").read_text()
    for name in nbllm.__all__:
        if isinstance(getattr(nbllm, name), str) or name == "result_cache":
            assert f":: {name}\n" in constants, name


def test_the_build_is_strict_and_offline():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\t\$\(PY\) -m sphinx -W --keep-going .* docs \$\(DOCS_OUT\)$",
                     makefile, re.M)
    conf = (DOCS / "conf.py").read_text()
    assert "sphinx.ext.intersphinx" not in conf
    assert 'nb_execution_mode = "off"' in conf
    assert 'numpydoc_validation_checks = {"GL08"}' in conf  # a public name without a docstring
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("make test\n") < ci.index("make docs-check")


def test_the_docs_extra_has_lower_bounds():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for line in extras["docs"]:
        if not line.startswith("nbllm["):
            assert ">=" in line, line


def test_the_getting_started_page_says_how_to_load_the_tweets():
    """The page's snippet runs and does what the page says of it."""
    page = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    section = page.split("## The tweets in the examples", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {}
    exec(compile(code, "getting-started.md", "exec"), namespace)  # noqa: S102 - our page
    tweets, train = namespace["tweets"], namespace["train"]
    assert list(tweets.columns) == ["text", "label", "confidence"]
    assert len(tweets) == 300 and len(train) == 50
    assert tweets["label"].value_counts().to_dict() == {"negative": 150, "positive": 150}
    assert (tweets["confidence"] >= 0.9).all() and (train["confidence"] >= 0.9).all()
    assert not set(tweets["text"]) & set(train["text"])  # the two halves share none
    from nbllm.tools.tweets import load_tweets

    assert load_tweets(300, split="eval")["text"].tolist() == tweets["text"].tolist()
    assert "df = load_tweets(200)" in page
