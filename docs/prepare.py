"""Get what the site needs before Sphinx runs (``make docs`` calls this).

1. The widgets' JavaScript, from the npm registry, once: the pinned tarballs
   of ``@jupyter-widgets/html-manager`` (``dist/embed-amd.js`` and the fonts
   it refers to) and ``requirejs`` (``require.js``), each checked against its
   SHA-256, unpacked into ``docs/_vendor/widgets/``. The pages load them from
   the site itself, never from a CDN.
2. The front end of anywidget (the panel's and the Labeler's code boxes and
   Enter hook are anywidget widgets): its AMD module, copied from the installed
   ``anywidget`` package (the version the notebooks ran with; nothing is
   fetched) to ``docs/_vendor/widgets/anywidget.js``, and a one-line script
   that tells ``require.js`` where it is, so that ``embed-amd.js`` finds it
   there before it would try a CDN.
3. The executed notebooks: the copies the tests keep in ``build/notebooks/``
   (``tests/test_notebook.py``), or, when one is missing (a fresh clone) or
   older than its notebook, the notebook executed here with the same tool
   (:func:`nbllm.tools.run_notebook.execute_notebook`). They are copied into
   ``docs/examples/`` for Sphinx, which renders them without running them.

Both folders are gitignored.
"""

import hashlib
import io
import os
import shutil
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
VENDOR = DOCS / "_vendor" / "widgets"
EXECUTED = ROOT / "build" / "notebooks"
EXAMPLES = DOCS / "examples"
NOTEBOOKS = ("quickstart", "evaluation")

# (url, sha256, {member in the tarball: name under VENDOR}); the html-manager
# version matches ipywidgets 8's widget protocol.
PACKAGES = [
    ("https://registry.npmjs.org/@jupyter-widgets/html-manager/-/html-manager-1.0.15.tgz",
     "2b9d65cb7913e1c7d671757a10008b32c9c2448d4429513371e55c07d6107638",
     "package/dist/"),
    ("https://registry.npmjs.org/requirejs/-/requirejs-2.3.8.tgz",
     "777158e89275e16bd51aec3ef714fbcb5dc45789e7078659933bc814916d7dec",
     "package/require.js"),
]
WANTED = ("embed-amd.js", "require.js")
# The files of dist/ that embed-amd.js needs (its fonts); not the maps or embed.js.
SKIP = (".map", "embed.js", "libembed-amd.js", ".txt")


def fetch_widget_js():
    if all((VENDOR / name).is_file() for name in WANTED):
        return
    VENDOR.mkdir(parents=True, exist_ok=True)
    for url, sha256, prefix in PACKAGES:
        print(f"fetching {url}")
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                data = response.read()
        except OSError as exc:
            sys.exit(f"could not fetch {url} ({exc}); the widgets' JavaScript comes "
                     "from the npm registry once, then stays in docs/_vendor/")
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            sys.exit(f"{url}: SHA-256 {digest}, expected {sha256}; not used")
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                if not member.isfile() or not member.name.startswith(prefix):
                    continue
                name = Path(member.name).name
                if member.name != prefix and name.endswith(SKIP):
                    continue
                (VENDOR / name).write_bytes(tar.extractfile(member).read())


# Loaded between require.js and embed-amd.js (docs/conf.py): the module
# "anywidget" is the file beside this script, wherever the page is.
ANYWIDGET_PATH = ('require.config({paths: {anywidget: '
                  'new URL("anywidget", document.currentScript.src).href}});\n')


def anywidget_js():
    import anywidget

    VENDOR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(anywidget.__file__).parent / "nbextension" / "index.js",
                    VENDOR / "anywidget.js")
    (VENDOR / "anywidget-path.js").write_text(ANYWIDGET_PATH)


def executed_notebooks():
    EXAMPLES.mkdir(exist_ok=True)
    for name in NOTEBOOKS:
        copy = EXECUTED / f"{name}.executed.ipynb"
        source = ROOT / "notebooks" / f"{name}.ipynb"
        # Missing (a fresh clone), or older than the notebook (edited since).
        if not copy.is_file() or copy.stat().st_mtime < source.stat().st_mtime:
            from nbllm.tools.run_notebook import execute_notebook

            # The same sample the tests run (tests/test_notebook.py).
            if name == "evaluation":
                os.environ.setdefault("NBLLM_EVAL_N", "40")
                os.environ.setdefault("MPLBACKEND",
                                      "module://matplotlib_inline.backend_inline")
            print(f"executing notebooks/{name}.ipynb (no up-to-date executed copy in "
                  "build/notebooks/)")
            started = time.perf_counter()
            execute_notebook(source, EXECUTED, timeout=900, html=False)
            print(f"  {time.perf_counter() - started:.0f} s")
        shutil.copyfile(copy, EXAMPLES / f"{name}.ipynb")


if __name__ == "__main__":
    fetch_widget_js()
    anywidget_js()
    executed_notebooks()
