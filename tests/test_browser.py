"""The panel in a real browser: JupyterLab on localhost, driven by headless Chromium.

The test starts its own JupyterLab server (``make test`` and ``.ci/run`` get
it that way), opens a notebook that shows the panel, types labels, clicks
Classify and waits for the probability table.  It saves screenshots and the
measured Classify times under ``test-artifacts/``.

Chromium is Debian's ``/usr/bin/chromium`` (Playwright's own browser download
does not work offline).  Without it the test is skipped with the reason; under
``CI=true`` it fails instead, so CI never skips it silently.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("NBLLM_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("NBLLM_TEST_ARTIFACTS",
                                Path(__file__).resolve().parents[1] / "test-artifacts"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TEXTS = [
    "@united thank you for the quick rebooking, great service!",
    "@AmericanAir 3 hours on the tarmac and no information. Never again.",
    "@JetBlue best flight I've had in years, lovely crew",
    "@USAirways on hold for two hours and then disconnected",
    "@SouthwestAir free drinks and we landed early, love it",
    "@united lost my bag again, third time this year",
    "@VirginAmerica the new seats are so comfortable",
    "@AmericanAir cancelled my flight and no hotel voucher",
    "@JetBlue thanks for the upgrade, you made my day",
    "@united rude gate agent and a dirty plane",
] * 2 + [
    # Prices: two dollar signs must not turn the text between them into maths.
    "@united change fee $788. Was $188 when I booked",
    "@JetBlue $25 for wifi and $12 for a sandwich",
]


def require(condition, reason):
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run in CI: {reason}")
    pytest.skip(reason)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_notebook(folder):
    source = (
        "import nbllm\n"
        "panel = nbllm.Panel()\n"
        f"panel.texts.value = {chr(10).join(TEXTS)!r}\n"
        "panel"
    )
    notebook = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "panel",
                   "metadata": {}, "outputs": [], "source": source}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    (folder / "panel.ipynb").write_text(json.dumps(notebook))


@pytest.fixture(scope="module")
def jupyter_lab(real_model, tmp_path_factory):
    """A JupyterLab server on loopback; yields its base URL with the token."""
    require(Path(CHROMIUM).exists(),
            f"Chromium not found at {CHROMIUM}; install it with 'apt-get install "
            "chromium' (make test does this when run as root)")
    require(shutil.which("jupyter-lab") or (Path(sys.executable).parent / "jupyter-lab").exists(),
            "JupyterLab is not installed; pip install -e '.[test]'")
    root = tmp_path_factory.mktemp("lab")
    write_notebook(root)
    port, token = free_port(), "nbllm-test-token"
    log = open(root / "lab.log", "w")
    # The kernel gets NBLLM_CACHE_DIR from real_model: the converted model is there.
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter-lab"), "--no-browser",
         f"--port={port}", "--ip=127.0.0.1", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", "--allow-root",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=log, stderr=subprocess.STDOUT,
        env=dict(os.environ, JUPYTER_PLATFORM_DIRS="1", NBLLM_CACHE_DIR=real_model.cache_dir),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("JupyterLab did not start:\n" + (root / "lab.log").read_text()[-3000:])
            time.sleep(0.5)
    yield url, token
    server.terminate()
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


def test_panel_classifies_in_the_browser(jupyter_lab):
    try:
        from playwright import sync_api
    except ImportError:
        require(False, "playwright is not installed; pip install -e '.[test]'")
    url, token = jupyter_lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    timings = {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        try:
            drive_panel(sync_api, page, url, token, timings)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    timings["texts"] = len(TEXTS)
    (ARTIFACTS / "panel_timings.json").write_text(json.dumps(timings, indent=2))
    print(f"panel Classify of {len(TEXTS)} texts: {timings}")


def drive_panel(sync_api, page, url, token, timings):
    """Open the notebook, show the panel, add labels, Classify twice."""
    page.goto(f"{url}/lab/tree/panel.ipynb?token={token}")
    cell = page.locator(".jp-Notebook .jp-Cell").first
    cell.wait_for(timeout=90_000)
    panel = page.locator(".nbllm-panel")
    # Wait until the kernel is connected and idle: a cell run before that
    # makes JupyterLab ask which kernel to start.
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first \
        .wait_for(state="attached", timeout=90_000)
    # Run the cell that shows the panel; try again if the run got lost.
    for attempt in range(4):
        select_kernel = page.locator(".jp-Dialog button", has_text="Select")
        if select_kernel.count():
            select_kernel.first.click()
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        try:
            panel.wait_for(timeout=30_000)
            break
        except sync_api.TimeoutError:
            page.screenshot(path=str(ARTIFACTS / f"panel-wait-{attempt}.png"))
    panel.wait_for(timeout=30_000)

    tags = panel.locator(".jupyter-widget-tagsinput")

    def add_label(label):
        # A click on the tags box focuses its (then zero-width) input. The
        # tag is committed on the input's change event: leaving it with Tab.
        tags.click()
        page.keyboard.type(label)
        page.keyboard.press("Tab")
        panel.locator(".jupyter-widget-tag", has_text=label).first.wait_for(
            timeout=10_000)

    add_label("negative")
    add_label("positive")

    table = panel.locator("table.nbllm-table")
    started = time.perf_counter()
    panel.locator("button", has_text="Classify").click()
    table.wait_for(timeout=180_000)
    timings["cold_seconds"] = round(time.perf_counter() - started, 2)
    html = table.inner_html()
    assert "positive" in html and "negative" in html
    assert table.locator("tbody tr").count() == len(TEXTS)
    # MathJax leaves nbllm's output alone: the prices read as typed.
    shown = table.inner_text()
    assert "$25 for wifi and $12" in shown and "$788. Was $188" in shown, shown
    assert panel.locator("mjx-container, .MathJax").count() == 0
    page.screenshot(path=str(ARTIFACTS / "panel.png"), full_page=True)

    # Warm: the model is loaded; new labels mean nothing comes from the cache.
    add_label("neutral")
    started = time.perf_counter()
    panel.locator("button", has_text="Classify").click()
    panel.locator("table.nbllm-table th", has_text="neutral").wait_for(timeout=180_000)
    timings["warm_seconds"] = round(time.perf_counter() - started, 2)
    assert not panel.locator("button", has_text="Classify").is_disabled()
    page.screenshot(path=str(ARTIFACTS / "panel-warm.png"), full_page=True)
