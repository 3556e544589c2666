"""The quickstart notebook, executed top to bottom by nbclient on a real ipykernel."""

import re
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
# The executed copies the documentation renders (make docs; gitignored).
KEPT = Path(__file__).resolve().parents[1] / "build" / "notebooks"


def keep(written):
    """Copy the executed notebook to build/notebooks/ for ``make docs``."""
    KEPT.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(written["ipynb"], KEPT / written["ipynb"].name)


def outputs_of(cell):
    return cell.get("outputs", [])


def test_quickstart_runs_and_shows_tables(real_model, tmp_path, monkeypatch):
    # The kernel inherits NBLLM_CACHE_DIR and loads the copy real_model converted.
    from nbllm.tools.run_notebook import execute_notebook

    monkeypatch.setenv("NBLLM_CACHE_DIR", real_model.cache_dir)
    nb, written = execute_notebook(NOTEBOOK, tmp_path, timeout=600)
    assert written["ipynb"].is_file() and written["html"].is_file()
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in outputs_of(c) if o.get("output_type") == "error"]
    assert errors == []
    html = [o["data"]["text/html"] for c in code for o in outputs_of(c)
            if "text/html" in o.get("data", {})]
    tables = [h for h in html if 'class="nbllm-table"' in h]
    # %%zeroshot x3, %%fewshot inline, the --raw table and the preview cells.
    assert len(tables) >= 5
    assert any("Free generation" in h for h in html)
    assert any("\u26a0 low" in h for h in html)
    printed = "".join(o.get("text", "") for c in code for o in outputs_of(c)
                      if o.get("output_type") == "stream")
    assert "300 tweets in" in printed and "few-shot accuracy" in printed
    assert re.search(r"after \d+ answers: accuracy 0\.\d\d on the other tweets", printed)
    assert any('class="nbllm-report' in h for h in html)  # lab.report()
    compared = [h for h in html if "nbllm-compare" in h]  # compare_prompts' table
    assert len(compared) == 1 and compared[0].count("<tr>") == 4  # header + 3 prompts
    keep(written)


EVALUATION = NOTEBOOK.with_name("evaluation.ipynb")


def test_evaluation_notebook_runs_and_renders_its_plots(real_model, tmp_path, monkeypatch):
    from nbllm.tools.run_notebook import execute_notebook

    monkeypatch.setenv("NBLLM_CACHE_DIR", real_model.cache_dir)
    # A small sample keeps it to a minute or two; the kernel inherits the env.
    monkeypatch.setenv("NBLLM_EVAL_N", "40")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb, written = execute_notebook(EVALUATION, tmp_path, timeout=600)
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in outputs_of(c) if o.get("output_type") == "error"]
    assert errors == []
    images = [o for c in code for o in outputs_of(c) if "image/png" in o.get("data", {})]
    # Reliability, confusion + histogram, accuracy against shots.
    assert len(images) >= 3
    tables = [o["data"]["text/html"] for c in code for o in outputs_of(c)
              if "text/html" in o.get("data", {})]
    metrics = [t for t in tables if "ece" in t and "log_loss" in t]
    assert len(metrics) >= 2  # zero-shot calibrations, then with the baselines
    assert "TF-IDF + LR, 500 labelled" in metrics[-1]
    assert "zero-shot, calibration=content_free" in metrics[0]
    keep(written)
