"""Execute a notebook headless on a real Jupyter kernel and save the results.

Used by ``make demo`` (the quickstart notebook) and by the notebook tests::

    python -m nbllm.tools.run_notebook notebooks/quickstart.ipynb
"""

import argparse
import time
from pathlib import Path


def execute_notebook(path, out_dir=None, timeout=900, html=True):
    """Run every cell of ``path`` with nbclient; write the executed copy.

    Parameters
    ----------
    path : str or Path
        The notebook to run; cells run in its folder.
    out_dir : str or Path or None
        Where to write ``<name>.executed.ipynb`` (and ``.html``); default:
        next to the notebook.
    timeout : int
        Seconds allowed per cell.
    html : bool
        Also export HTML (needs nbconvert).

    Returns
    -------
    (nbformat.NotebookNode, dict)
        The executed notebook and the paths written, keyed 'ipynb' / 'html'.
    """
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError as exc:
        raise ImportError(
            "running notebooks needs nbllm's notebook extra: pip install 'nbllm[notebook]'"
        ) from exc

    path = Path(path)
    out_dir = Path(out_dir) if out_dir else path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    written = {"ipynb": out_dir / f"{path.stem}.executed.ipynb"}
    nbformat.write(nb, written["ipynb"])
    if html:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nb)
        written["html"] = out_dir / f"{path.stem}.executed.html"
        written["html"].write_text(body, encoding="utf-8")
    return nb, written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebook")
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    _, written = execute_notebook(args.notebook, args.out_dir)
    print(f"\nexecuted {args.notebook} in {time.perf_counter() - started:.0f} s")
    for kind, where in written.items():
        print(f"  {kind}: {Path(where).resolve()}")


if __name__ == "__main__":
    main()
