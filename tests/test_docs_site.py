"""The built documentation site (``make docs``), read as a new user would.

``make docs-check`` builds the site, then runs this file with
``NBLLM_DOCS_BUILT=1``: a missing site is then a failure. In a plain test run
(``make test``, before the site is built) these tests are skipped with the
reason. The browser test drives Debian's Chromium with Playwright, as
``tests/test_browser.py`` does.
"""

import os
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import pytest

from nbllm import options
from test_browser import launched_chromium

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "docs" / "_build" / "html"
PAGES = ["index", "getting-started", "notebook", "estimators", "settings", "models",
         "faq", "bad-input", "skorch", "scoring", "performance", "results",
         "dependencies", "api", "api-constants", "contributing", "architecture",
         "examples/quickstart", "examples/evaluation"]


def require(condition, reason):
    if condition:
        return
    # make docs-check sets it; in make test (before the site exists, CI too)
    # these tests skip, since docs-check runs them right after the build.
    if os.environ.get("NBLLM_DOCS_BUILT"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def site():
    require((SITE / "index.html").is_file(),
            f"the site is not built ({SITE}); run 'make docs' or 'make docs-check'")
    return SITE


class Refs(HTMLParser):
    """Every <script src>, <link href>, <a href> and <img src> of a page."""

    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in {"script": ["src"], "link": ["href"], "a": ["href"],
                     "img": ["src"]}.get(tag, []):
            if attrs.get(name):
                self.refs.append((tag, attrs[name]))


def refs(page):
    parser = Refs()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.refs


def text_of(page):
    html = page.read_text(encoding="utf-8")
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


def test_every_page_is_built(site):
    for name in PAGES:
        assert (site / f"{name}.html").is_file(), name


def test_nothing_is_loaded_from_another_site(site):
    for page in site.rglob("*.html"):
        for tag, url in refs(page):
            if tag in ("script", "link", "img"):
                assert not re.match(r"(https?:)?//", url), f"{page.name}: <{tag}> {url}"


def test_every_local_link_and_image_resolves(site):
    for page in site.rglob("*.html"):
        for tag, url in refs(page):
            parsed = urlparse(url)
            if parsed.scheme or url.startswith(("#", "//", "mailto:")) or not parsed.path:
                continue
            assert (page.parent / parsed.path).exists(), f"{page.relative_to(site)}: {url}"


def test_the_notebook_guide_lists_every_magic_option(site):
    text = text_of(site / "notebook.html")
    for option in options.TABLE:
        if option.flag and option.magics:
            assert option.flag in text, option.flag
    for flag in ("--labels", "--input", "--column", "--rows", "--out", "--preview",
                 "--examples", "--text-col", "--label-col"):
        assert flag in text, flag


def test_the_api_page_documents_every_parameter(site):
    html = (site / "api.html").read_text(encoding="utf-8")
    for cls in options.ALL_CLASSIFIERS:
        assert f'id="nbllm.{cls}"' in html, cls
    # numpydoc's parameter list: <strong>name</strong> (or "a, b") per entry.
    start = html.index('id="nbllm.ZeroShotClassifier"')
    section = html[start:html.index('id="nbllm.FewShotClassifier"')]
    names = {name for entry in re.findall(r"<strong>([\w, ]+)</strong>", section)
             for name in entry.split(", ")}
    for option in options.taken_by(options.ZERO_SHOT):
        assert option.name in names, option.name


def test_the_notebooks_are_rendered_with_their_outputs(site):
    quickstart = (site / "examples" / "quickstart.html").read_text(encoding="utf-8")
    assert quickstart.count('class="nbllm-table"') >= 5
    assert "application/vnd.jupyter.widget-state+json" in quickstart  # the panel, the Labeler
    assert re.search(r'<script [^>]*src="\.\./_static/embed-amd\.js', quickstart)
    evaluation = (site / "examples" / "evaluation.html").read_text(encoding="utf-8")
    assert evaluation.count("<img") >= 3


def test_the_pages_render_in_a_browser(site):
    with launched_chromium(require) as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        outside, failed = [], []
        page.on("request", lambda r: outside.append(r.url)
                if not r.url.startswith(("file:", "data:", "blob:", "about:")) else None)
        # A file the page asks for that is not in the site (a widget's font).
        page.on("requestfailed", lambda r: failed.append(r.url)
                if not r.url.startswith("data:") else None)
        for name in ("index", "notebook", "api", "examples/quickstart"):
            page.goto((site / f"{name}.html").as_uri(), wait_until="load")
            assert page.locator("h1").first.is_visible(), name
            # Every image shown has loaded.
            broken = page.evaluate(
                "Array.from(document.images).filter(i => i.getClientRects().length)"
                ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
            assert broken == [], (name, broken)
            if name == "index":
                assert page.locator("img").count() >= 1
                assert page.get_by_role("link", name="Notebook guide").first.is_visible()
            if name == "notebook":
                assert page.locator("table").filter(has_text="--max-samples").count() == 1
            if name == "api":
                params = page.locator("dl.py.class").first.inner_text()
                for option in options.taken_by(options.ZERO_SHOT):
                    assert option.name in params, option.name
            if name == "examples/quickstart":
                # The widgets' JavaScript (vendored) turns the saved state into
                # widgets: the panel's Classify button among them.
                page.wait_for_selector(".jupyter-widgets button", timeout=20_000)
                assert page.locator(".jupyter-widgets button",
                                    has_text="Classify").count() >= 1
        assert outside == [], outside
        assert failed == [], failed


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
