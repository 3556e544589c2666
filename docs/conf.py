"""Sphinx configuration of nbllm's documentation (``make docs``).

Built offline: no intersphinx, no CDN. Markdown pages through myst-parser,
docstrings through autodoc + numpydoc, executed notebooks through myst-nb
(execution off: the executed copies come from build/notebooks/).
"""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

import nbllm  # noqa: E402

project = "nbllm"
author = "the nbllm developers"
copyright = "the nbllm developers"
release = version = nbllm.__version__

extensions = [
    "myst_nb",  # Markdown (myst-parser) and notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "nbllm_docs",  # the magics' option list, generated from nbllm/options.py
]

source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "_vendor", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
# "--input" stays two hyphens (the option list's help lines name flags).
smartquotes = False

# The notebooks are rendered from their executed copies (the tests or
# ``make docs`` write them); never executed by Sphinx.
nb_execution_mode = "off"

autodoc_default_options = {}
autodoc_typehints = "none"
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# A public name without a docstring is an error (numpydoc's GL08).
numpydoc_validation_checks = {"GL08"}

html_theme = "furo"
html_title = f"nbllm {release}"
# The widgets' JavaScript, vendored from the npm registry by docs/prepare.py;
# the notebook pages load it from _static/, never from a CDN.
html_static_path = ["_vendor/widgets"]
nb_ipywidgets_js = {
    "require.js": {},
    # Where require.js finds anywidget's front end (docs/prepare.py puts both).
    "anywidget-path.js": {},
    "embed-amd.js": {"data-jupyter-widgets-cdn": "_static/"},
}
html_show_sourcelink = False


def _copy_widget_fonts(app, exception):
    """Put the widgets' icon fonts where embed-amd.js asks for them.

    Its stylesheets name the fonts relative to the page, under
    ``@jupyter-widgets/`` and ``@jupyter-widgets/html-manager/dist/``; the
    pages with widgets are those in ``examples/``.
    """
    import shutil

    if exception is not None or app.builder.format != "html":
        return
    vendor = DOCS / "_vendor" / "widgets"
    fonts = [f for f in vendor.iterdir() if f.suffix in (".woff", ".woff2", ".ttf", ".eot", ".svg")]
    for folder in ("@jupyter-widgets", "@jupyter-widgets/html-manager/dist"):
        target = Path(app.outdir) / "examples" / folder
        target.mkdir(parents=True, exist_ok=True)
        for font in fonts:
            shutil.copyfile(font, target / font.name)


def setup(app):
    app.connect("build-finished", _copy_widget_fonts)
