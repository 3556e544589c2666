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


def run_quickstart(real_model, out_dir, html=True):
    # The kernel inherits NBLLM_CACHE_DIR and loads the copy real_model converted.
    from nbllm.tools.run_notebook import execute_notebook

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NBLLM_CACHE_DIR", real_model.cache_dir)
        return execute_notebook(NOTEBOOK, out_dir, timeout=600, html=html)


@pytest.fixture(scope="module")
def quickstart(real_model, tmp_path_factory):
    """The quickstart executed once (shared by the tests that read its outputs)."""
    return run_quickstart(real_model, tmp_path_factory.mktemp("quickstart"))


def test_quickstart_runs_and_shows_tables(quickstart):
    nb, written = quickstart
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


# What may differ between two runs: timings, and the session's cache counters
# (%nbllm); progress bars (only a run that scores shows them) and the status
# lines (empty once a cell is done) are left out.
_PROGRESS_BAR = re.compile(r"\|[^|]*\| *\d+/\d+ \[")
_MASKS = [(re.compile(r"\d+(\.\d+)? ?(s|ms)\b"), "<time>"),
          (re.compile(r"\d+ (entries|hits|misses)\b"), r"<n> \1")]


def text_outputs(nb):
    """(cell, kind, text) of every output as text/plain, text/html or a stream,
    with timings and counters masked."""
    found = []
    for number, cell in enumerate(nb.cells):
        for output in outputs_of(cell):
            if output["output_type"] == "stream":
                texts = [("stream", output["text"])]
            elif output["output_type"] == "error":
                texts = [("error", f"{output['ename']}: {output['evalue']}")]
            else:
                data = output.get("data", {})
                texts = [(kind, data.get(kind, "")) for kind in ("text/plain", "text/html")]
                if not any(text for _, text in texts) or _PROGRESS_BAR.search(texts[0][1]):
                    continue
            for kind, text in texts:
                for pattern, replacement in _MASKS:
                    text = pattern.sub(replacement, text)
                if kind == "stream" and found and found[-1][:2] == (number, "stream"):
                    # A progress bar left out above may have split one printout
                    # into two stream outputs: they are one text.
                    found[-1] = (number, kind, found[-1][2] + text)
                else:
                    found.append((number, kind, text))
    return found


def test_quickstart_gives_the_same_output_on_a_second_run(quickstart, real_model,
                                                          tmp_path):
    """A rerun (its answers, its results now cached) shows what the first showed."""
    again, _ = run_quickstart(real_model, tmp_path, html=False)
    first, second = text_outputs(quickstart[0]), text_outputs(again)
    assert len(first) >= 30  # every table, printout and widget of the tour
    assert first == second
    printed = "".join(text for _, kind, text in second if kind == "stream")
    assert printed.count("after 20 answers: accuracy") == 1
    assert "resumed" not in "".join(text for _, _, text in second)


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
