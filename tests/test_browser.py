"""The panel in a real browser: JupyterLab on localhost, driven by headless Chromium.

The test starts its own JupyterLab server (``make test`` and ``.ci/run`` get
it that way), opens a notebook that shows the panel, types labels, clicks
Classify and waits for the probability table.  It saves screenshots and the
measured Classify times under ``test-artifacts/``.

Chromium is Debian's ``/usr/bin/chromium`` (Playwright's own browser download
does not work offline).  Without it the test is skipped with the reason; under
``CI=true`` it fails instead, so CI never skips it silently.
"""

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from nbllm.notebook.panel.labels import HINT

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
    # Ten more, each once: these screenshots are the README's and the docs'
    # table and panel images, where a repeated row looked like a bug.
    "@SouthwestAir the pilot kept us updated the whole delay, much appreciated",
    "@AmericanAir my seat would not recline and the screen was broken",
    "@JetBlue smooth boarding and the snacks were great",
    "@USAirways missed my connection because of your late departure",
    "@VirginAmerica mood lighting and friendly staff, what a trip",
    "@united charged me twice for the same checked bag",
    "@SouthwestAir the agent found me an earlier flight home, thank you",
    "@AmericanAir the app crashed at check-in and the line was an hour",
    "@JetBlue landed twenty minutes early, perfect",
    "@USAirways my wheelchair request was ignored at the gate",
] + [
    # Prices: two dollar signs must not turn the text between them into maths.
    "@united change fee $788. Was $188 when I booked",
    "@JetBlue $25 for wifi and $12 for a sandwich",
    # Long: the table cuts it to its cell's width (CSS ellipsis), in full on hover.
    "@united " + "the flight was delayed, then the gate changed, then the crew ran out "
    "of time and we waited again; " * 6 + "finally home",
]
PRICES = (20, 21)  # positions of the two price texts
assert len(set(TEXTS)) == len(TEXTS), "a text twice: the docs' images would show it"


@contextlib.contextmanager
def launched_chromium(require):
    """Debian's Chromium launched headless through playwright, closed on exit;
    ``require(condition, reason)`` says what to do when either is missing
    (each test file skips or fails in its own way)."""
    require(Path(CHROMIUM).exists(), f"Chromium not found at {CHROMIUM}")
    try:
        from playwright import sync_api
    except ImportError:
        require(False, "playwright is not installed; pip install -e '.[test]'")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def lab_page(width, height, failure_shot, **context_options):
    """A page of a headless Chromium window ``width`` x ``height``, for
    JupyterLab; a failure inside the block leaves a screenshot named
    ``failure_shot`` in ARTIFACTS before it is raised."""
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": width, "height": height},
                                      **context_options)
        page = context.new_page()
        try:
            yield page
        except Exception:
            page.screenshot(path=str(ARTIFACTS / failure_shot), full_page=True)
            raise
        finally:
            browser.close()


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


LABELER_SOURCE = (
    "import nbllm\n"
    "from nbllm.tools.tweets import load_tweets\n"
    "tweets = load_tweets(60, labels=('negative', 'positive'), split='eval', random_state=5)\n"
    "lab = nbllm.Labeler(tweets, 'text', labels=['negative', 'positive'], batch=5,\n"
    "                    path='answers.json')\n"
    "lab"
)


# %nbllm and %nbllm cache (the converted model is in the kernel's cache folder).
MAGICS_SOURCE = (
    "%load_ext nbllm\n"
    "from IPython.display import display\n"
    "display(get_ipython().run_line_magic('nbllm', ''))\n"
    "display(get_ipython().run_line_magic('nbllm', 'cache'))"
)


def write_notebook(folder, name="panel.ipynb", source=None):
    source = source or (
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
    (folder / name).write_text(json.dumps(notebook))


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
    write_notebook(root, "labeler.ipynb", LABELER_SOURCE)
    write_notebook(root, "panel-empty.ipynb", "import nbllm\nnbllm.Panel()")
    write_notebook(root, "magics.ipynb", MAGICS_SOURCE)
    # No "get notified about Jupyter news?" toast over the screenshots.
    settings = root / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    port, token = free_port(), "nbllm-test-token"
    log = open(root / "lab.log", "w")
    # The kernel gets NBLLM_CACHE_DIR from real_model: the converted model is there.
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter-lab"), "--no-browser",
         f"--port={port}", "--ip=127.0.0.1", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", "--allow-root",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         # window.jupyterapp: the test switches the theme through JupyterLab's command.
         "--LabApp.expose_app_in_browser=True"],
        stdout=log, stderr=subprocess.STDOUT,
        env=dict(os.environ, JUPYTER_PLATFORM_DIRS="1", NBLLM_CACHE_DIR=real_model.cache_dir,
                 JUPYTERLAB_SETTINGS_DIR=str(root / "lab-settings")),
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
    # The copy buttons write to the clipboard, which the test reads back.
    with lab_page(1400, 1600, "failure.png",
                  permissions=["clipboard-read", "clipboard-write"]) as page:
        drive_panel(sync_api, page, url, token, timings)
    timings["texts"] = len(TEXTS)
    (ARTIFACTS / "panel_timings.json").write_text(json.dumps(timings, indent=2))
    print(f"panel Classify of {len(TEXTS)} texts: {timings}")


def test_labels_typed_without_enter_then_a_click_on_the_texts_box(jupyter_lab):
    """Labels typed and not Entered, then a click on the texts box: the labels
    become tags, the focus is in the texts box, three typed lines go there and
    Classify classifies them (issue 38: the click used to be swallowed)."""
    from playwright import sync_api

    url, token = jupyter_lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    lines = ["@united thank you, great crew", "@JetBlue lost my bag again",
             "@SouthwestAir landed early, love it"]
    with lab_page(1400, 1200, "panel-click-away-failure.png") as page:
        panel = open_and_run(sync_api, page, url, token, "panel-empty.ipynb",
                             ".nbllm-panel")
        panel.locator(".jupyter-widget-tagsinput").click()
        page.keyboard.type("negative, positive")  # no Enter, no Tab
        texts = panel.locator("textarea[placeholder='one text per line']")
        texts.click()
        tags = panel.locator(".jupyter-widget-tag")
        # The kernel splits the tag: a round trip, slow on a busy machine.
        deadline = time.time() + 30
        while [t for t in tags.all_inner_texts() if t.strip()] != ["negative", "positive"]:
            assert time.time() < deadline, tags.all_inner_texts()
            page.wait_for_timeout(100)
        page.wait_for_timeout(500)  # the tags' redraw after the split is done
        assert page.evaluate("() => document.activeElement.tagName") == "TEXTAREA"
        page.keyboard.type("\n".join(lines))
        assert texts.input_value() == "\n".join(lines)
        page.screenshot(path=str(ARTIFACTS / "panel-click-away.png"), full_page=True)
        panel.locator("button", has_text="Classify").click()
        table = panel.locator("table.nbllm-table")
        table.wait_for(timeout=180_000)
        assert table.locator("tbody tr").count() == 3
        panel.get_by_text("3 texts classified").wait_for(timeout=30_000)
        assert "no texts" not in panel.inner_text()
        page.screenshot(path=str(ARTIFACTS / "panel-click-away-classified.png"),
                        full_page=True)


def test_nbllm_and_its_cache_listing_fit_beside_the_file_browser(jupyter_lab):
    """%nbllm reads from the left; %nbllm cache's table and lines fit the
    output with the file browser open, in a 1,100 px window."""
    from playwright import sync_api

    url, token = jupyter_lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with lab_page(1100, 1100, "nbllm-cache-failure.png") as page:
        listing = open_and_run(sync_api, page, url, token, "magics.ipynb",
                               ".nbllm-cache")
        page.evaluate("() => window.jupyterapp.commands.execute('filebrowser:activate')")
        page.locator(".jp-FileBrowser").first.wait_for(state="visible", timeout=30_000)
        page.wait_for_timeout(500)  # the notebook's width settles
        for dark in (False, True):
            set_theme(page, dark)
            status = page.locator("table.nbllm-status")
            cells = status.locator("td, th")
            aligned = cells.evaluate_all("cs => cs.map(c => getComputedStyle(c).textAlign)")
            assert set(aligned) == {"left"}, aligned
            table = listing.locator("table.nbllm-table")
            assert table.count() == 1, listing.inner_text()  # the converted model
            for output in (listing, status):
                area = output.locator("xpath=ancestor::div[contains(@class, "
                                      "'jp-OutputArea-output')][1]")
                room = box(area)
                shown = box(output)
                assert shown["x"] + shown["width"] <= room["x"] + room["width"] + 1, \
                    (shown, room)
                assert area.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), \
                    area.evaluate("e => [e.scrollWidth, e.clientWidth]")
            theme = "dark" if dark else "light"
            page.screenshot(path=str(ARTIFACTS / f"nbllm-cache-{theme}.png"),
                            full_page=True)
        set_theme(page, False)


def set_theme(page, dark):
    """JupyterLab's light or dark theme (the server keeps it for later pages)."""
    name = "JupyterLab Dark" if dark else "JupyterLab Light"
    page.evaluate("(name) => window.jupyterapp.commands.execute('apputils:change-theme', "
                  "{theme: name})", name)
    page.locator(f"body[data-jp-theme-light='{str(not dark).lower()}']").wait_for(
        state="attached", timeout=30_000)
    page.wait_for_timeout(1000)  # the theme's CSS settles


def luminance(colour):
    """WCAG relative luminance of a CSS ``rgb(...)`` / ``rgba(...)`` colour."""
    import re

    values = [int(v) / 255 for v in re.findall(r"\d+", colour)[:3]]
    r, g, b = ((v / 12.92) if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
               for v in values)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b):
    """WCAG contrast ratio of two CSS colours (1 to 21)."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def check_toggle_contrast(panel):
    """The chosen mode stands out: its words on its background, and its
    background against the other mode's."""
    chosen = panel.locator(".widget-toggle-button.mod-active").first
    other = panel.locator(".widget-toggle-button:not(.mod-active)").first
    words, fill = style(chosen, "color"), style(chosen, "backgroundColor")
    other_fill = style(other, "backgroundColor")
    measured = {"words": round(contrast(words, fill), 2),
                "against_other": round(contrast(fill, other_fill), 2)}
    assert measured["words"] >= 4.5 and measured["against_other"] >= 3, measured
    return measured


def open_and_run(sync_api, page, url, token, name, selector, before_run=None):
    """Open a notebook, run its first cell, return the locator of its widget.

    ``before_run(page)``, when given, is called once the kernel is idle, just
    before the cell runs (to start watching what the cell shows)."""
    # ?reset: a fresh workspace, not the tabs an earlier test left open.
    page.goto(f"{url}/lab/tree/{name}?reset&token={token}")
    cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").first
    cell.wait_for(timeout=90_000)
    panel = page.locator(selector)
    # Wait until the kernel is connected and idle: a cell run before that
    # makes JupyterLab ask which kernel to start.
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first \
        .wait_for(state="attached", timeout=90_000)
    if before_run is not None:
        before_run(page)
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
            page.screenshot(path=str(ARTIFACTS / f"{name}-wait-{attempt}.png"))
    panel.wait_for(timeout=30_000)
    return panel


def drive_panel(sync_api, page, url, token, timings):
    """Open the notebook, show the panel, add labels, Classify twice."""
    panel = open_and_run(sync_api, page, url, token, "panel.ipynb", ".nbllm-panel")

    tags = panel.locator(".jupyter-widget-tagsinput")

    def add_label(label):
        # A click on the tags box focuses its (then zero-width) input. The
        # tag is committed on the input's change event: leaving it with Tab.
        tags.click()
        page.keyboard.type(label)
        page.keyboard.press("Tab")
        panel.locator(".jupyter-widget-tag", has_text=label).first.wait_for(
            timeout=10_000)

    check_layout(page, panel)  # before any label: the empty box and its placeholder
    check_labels_box(page, panel)

    watch_status(page)
    table = panel.locator("table.nbllm-table")
    started = time.perf_counter()
    panel.locator("button", has_text="Classify").click()
    table.wait_for(timeout=180_000)
    timings["cold_seconds"] = round(time.perf_counter() - started, 2)
    check_status_was_shown(page)
    html = table.inner_html()
    assert "positive" in html and "negative" in html
    assert table.locator("tbody tr").count() == len(TEXTS)
    # MathJax leaves nbllm's output alone: the prices read as typed.
    shown = table.inner_text()
    assert "$25 for wifi and $12" in shown and "$788. Was $188" in shown, shown
    assert panel.locator("mjx-container, .MathJax").count() == 0
    check_colours_and_width(page, table)
    page.screenshot(path=str(ARTIFACTS / "panel.png"), full_page=True)
    table.screenshot(path=str(ARTIFACTS / "table.png"))

    check_copy_as_code(page, panel)
    check_preview(panel)

    # Warm: the model is loaded; new labels mean nothing comes from the cache.
    add_label("neutral")
    started = time.perf_counter()
    panel.locator("button", has_text="Classify").click()
    panel.locator("table.nbllm-table th", has_text="neutral").wait_for(timeout=180_000)
    timings["warm_seconds"] = round(time.perf_counter() - started, 2)
    # Idle again: the buttons come back and the bar goes (just after the table).
    panel.locator(".widget-hprogress").first.wait_for(state="hidden", timeout=10_000)
    assert not panel.locator("button", has_text="Classify").is_disabled()
    page.screenshot(path=str(ARTIFACTS / "panel-warm.png"), full_page=True)

    check_low_rows(page, panel)
    timings["toggle_contrast_light"] = check_toggle_contrast(panel)
    check_dark_theme(page, panel)
    timings["toggle_contrast_dark"] = check_toggle_contrast(panel)


def test_labeler_cards_and_improve_in_the_browser(jupyter_lab):
    """Answer the five cards by clicking, then Improve: the progress line and the
    estimate follow; the cards refill with the next least-sure rows."""
    from playwright import sync_api

    url, token = jupyter_lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with lab_page(1400, 1400, "labeler-failure.png") as page:
        labeler = open_and_run(sync_api, page, url, token, "labeler.ipynb",
                               ".nbllm-labeler")
        cards = labeler.locator(".nbllm-card")
        cards.first.wait_for(timeout=180_000)
        assert cards.count() == 5
        page.screenshot(path=str(ARTIFACTS / "labeler.png"), full_page=True)
        first_text = cards.first.locator(".nbllm-card-text").inner_text()
        for answered in range(1, 6):
            cards.first.locator("button", has_text="2. positive").click()
            labeler.get_by_text(f"{answered} / 60 answered").wait_for(timeout=30_000)
        cards.first.wait_for(timeout=30_000)  # refilled with the next five
        assert cards.count() == 5
        assert first_text not in labeler.locator(".nbllm-card-text").all_inner_texts()
        labeler.locator("button", has_text="Improve").click()
        labeler.get_by_text("improved from 5 answers").wait_for(timeout=120_000)
        # Every 5th queued row is a random check: the headline is the checks'
        # accuracy with its interval (issue 37).
        assert re.search(r"accuracy on new rows \d+% \(95% interval \d+%\u2013\d+%, from \d+ "
                         r"random checks?\)", labeler.inner_text()), labeler.inner_text()
        assert labeler.locator("mjx-container, .MathJax").count() == 0
        page.screenshot(path=str(ARTIFACTS / "labeler-improved.png"), full_page=True)


def box(locator):
    found = locator.bounding_box()
    assert found is not None, f"not on screen: {locator}"
    return found


def check_layout(page, panel):
    """The labels caption lines up with the other captions; Preview's text
    number sits beside Preview; few-shot captions are not cut off."""
    caption = box(panel.get_by_text("labels", exact=True).first)
    prompt_caption = box(panel.locator("label", has_text="prompt").first)
    right = caption["x"] + caption["width"]
    assert abs(right - (prompt_caption["x"] + prompt_caption["width"])) <= 12, \
        (caption, prompt_caption)
    tags = box(panel.locator(".jupyter-widget-tagsinput"))
    assert tags["width"] > 300  # not a tiny box
    assert panel.locator(".jupyter-widget-tagsinput input").first.get_attribute(
        "placeholder") == HINT
    preview, number = (box(panel.locator("button", has_text="Preview")),
                       box(panel.locator(".widget-inline-hbox", has_text="of text #")))
    assert 0 <= number["x"] - (preview["x"] + preview["width"]) <= 20, (preview, number)
    assert not panel.locator(".widget-hprogress").first.is_visible()
    panel.locator(".widget-toggle-button", has_text="few-shot").click()
    for text in ("max samples", "or from variable"):
        label = panel.locator("label", has_text=text).first
        label.wait_for()
        cut = label.evaluate("e => e.scrollWidth > e.clientWidth + 1")
        assert not cut, f"the caption {text!r} is cut off"
    # The few-shot prompt shows every line, its last "Label:" included.
    prompt = panel.locator(".widget-textarea", has_text="prompt").first.locator("textarea")
    assert prompt.input_value().rstrip().endswith("Label:")
    assert prompt.evaluate("e => e.scrollHeight <= e.clientHeight + 1"), \
        prompt.evaluate("e => [e.scrollHeight, e.clientHeight]")
    assert_no_button_cut(panel)
    page.screenshot(path=str(ARTIFACTS / "panel-few-shot.png"), full_page=True)
    panel.locator(".widget-toggle-button", has_text="zero-shot").click()


def watch_status(page):
    """Record every status line the panel shows from now on (polled every 50 ms)."""
    page.evaluate("""() => {
        window.nbllmSeen = [];
        window.nbllmPoll = setInterval(() => {
            const p = document.querySelector('.nbllm-panel');
            if (!p) return;
            for (const line of p.innerText.split('\\n')) {
                if ((line.includes('\u23f3') || / \\/ \\d+ texts/.test(line))
                        && !window.nbllmSeen.includes(line)) window.nbllmSeen.push(line);
            }
        }, 50);
    }""")


def check_status_was_shown(page):
    seen = page.evaluate("() => { clearInterval(window.nbllmPoll); return window.nbllmSeen; }")
    assert any(line.startswith("\u23f3 loading smollm2-135m") for line in seen), seen
    assert any(line.endswith(f"/ {len(TEXTS)} texts") for line in seen), seen


def style(locator, prop):
    return locator.evaluate(f"e => getComputedStyle(e).{prop}")


def check_colours_and_width(page, table):
    """One colour per label; long texts end in an ellipsis, in full on hover."""
    chips = {}
    for label in ("negative", "positive"):
        chip = table.locator(".nbllm-chip", has_text=label)
        if chip.count():
            chips[label] = style(chip.first, "backgroundColor")
    assert len(chips) == 2 and chips["negative"] != chips["positive"], chips
    long_cell = table.locator("td.nbllm-text").nth(len(TEXTS) - 1)
    assert style(long_cell, "textOverflow") == "ellipsis"
    assert long_cell.evaluate("e => e.scrollWidth > e.clientWidth")
    assert long_cell.get_attribute("title") == TEXTS[-1]
    # The text column takes the room the narrow columns leave.
    assert box(long_cell)["width"] > 0.4 * box(table)["width"], (box(long_cell), box(table))
    legend = table.locator("xpath=..").locator(".nbllm-legend")
    assert legend.count() == 0  # no label-mass column or flag here: no legend


def check_copy_as_code(page, panel):
    """Each snippet's Copy button puts exactly that snippet on the clipboard."""
    panel.locator("button", has_text="Copy as code").click()
    snippets = panel.locator(".nbllm-code")
    snippets.first.wait_for(timeout=20_000)
    assert snippets.count() == 2
    for i in range(2):
        snippet = snippets.nth(i)
        code = snippet.locator("textarea").input_value()
        snippet.locator("button.nbllm-copy").click()
        snippet.locator("button.nbllm-copy", has_text="Copied").wait_for(timeout=5_000)
        assert page.evaluate("() => navigator.clipboard.readText()") == code
    # A cell magic must start its cell: the title names %load_ext nbllm.
    assert snippets.nth(0).locator("b").inner_text() == \
        "As a cell magic (after %load_ext nbllm)"
    magic = snippets.nth(0).locator("textarea").input_value()
    assert magic.split("\n") == ["%%zeroshot --labels negative,positive --model "
                                  "smollm2-135m"] + TEXTS  # every typed text
    assert panel.locator("mjx-container, .MathJax").count() == 0
    page.screenshot(path=str(ARTIFACTS / "panel-code.png"), full_page=True)


def assert_no_button_cut(panel):
    """Every visible button of the panel shows its whole caption."""
    cut = panel.locator("button").evaluate_all(
        "bs => bs.filter(b => b.offsetParent && b.scrollWidth > b.clientWidth + 1)"
        ".map(b => [b.innerText, b.scrollWidth, b.clientWidth])")
    assert not cut, f"buttons cut off: {cut}"


def check_labels_box(page, panel):
    """``negative, positive`` pasted, then typed with Enter: two tags each time."""
    tags = panel.locator(".jupyter-widget-tagsinput")
    tag = panel.locator(".jupyter-widget-tag")
    field = tags.locator("input").first

    def two_tags():
        # The widget keeps an empty tag element of its own: only named tags count.
        # The kernel splits the tag: a round trip, slow on a busy machine.
        deadline = time.time() + 30
        while [t for t in tag.all_inner_texts() if t.strip()] != ["negative", "positive"]:
            assert time.time() < deadline, tag.all_inner_texts()
            page.wait_for_timeout(100)

    page.evaluate("() => navigator.clipboard.writeText('negative, positive')")
    tags.click()
    page.keyboard.press("Control+V")
    assert field.input_value() == "negative, positive"
    page.keyboard.press("Tab")
    two_tags()
    tags.click()
    for _ in range(2):  # Backspace in the empty field removes the tag before it
        page.keyboard.press("Backspace")
    panel.locator(".jupyter-widget-tag", has_text="negative").wait_for(
        state="detached", timeout=10_000)
    page.keyboard.type("negative, positive")
    page.keyboard.press("Enter")
    two_tags()
    assert field.input_value() == ""
    page.screenshot(path=str(ARTIFACTS / "panel-labels.png"), full_page=True)


def check_preview(panel):
    """A preview of a price text: its heading reads as typed, on one line,
    under the result table, which stays."""
    number = panel.locator(".widget-inline-hbox", has_text="of text #").locator("input")
    number.fill("999")  # an error first: its traceback button shows whole
    number.press("Tab")
    panel.locator("button", has_text="Preview").click()
    panel.locator("button", has_text="show traceback").wait_for(timeout=60_000)
    assert_no_button_cut(panel)
    number.fill(str(PRICES[1]))
    number.press("Tab")
    panel.locator("button", has_text="Preview").click()
    heading = panel.locator("h4.nbllm-heading")
    heading.wait_for(timeout=120_000)
    assert "$25 for wifi and $12" in heading.inner_text()
    assert style(heading, "whiteSpace") == "nowrap"
    table = panel.locator("table.nbllm-table").first  # the results (the preview has one too)
    assert table.is_visible()
    assert table.locator("tbody tr").count() == len(TEXTS)
    assert box(heading)["y"] > box(table)["y"] + box(table)["height"] - 1
    assert_no_button_cut(panel)
    heading.scroll_into_view_if_needed()
    panel.page.screenshot(path=str(ARTIFACTS / "panel-preview.png"), full_page=True)
    assert panel.locator(".nbllm-code").count() == 0 or not \
        panel.locator(".nbllm-code").first.is_visible()  # the old code is gone
    assert panel.locator("mjx-container, .MathJax").count() == 0


def check_low_rows(page, panel):
    """With a threshold of 1 every row is low: shaded cells and a legend."""
    threshold = panel.locator(".widget-inline-hbox", has_text="threshold").locator("input")
    threshold.fill("1")
    threshold.press("Tab")
    panel.locator("button", has_text="Classify").click()
    low = panel.locator("table.nbllm-table tr.nbllm-low td").first
    low.wait_for(timeout=120_000)
    assert style(low, "backgroundColor") == "rgba(255, 179, 0, 0.28)"
    legend = panel.locator(".nbllm-legend")
    assert legend.count() >= 1 and "label mass is under the threshold" in \
        legend.last.inner_text()
    page.screenshot(path=str(ARTIFACTS / "panel-low.png"), full_page=True)


def check_dark_theme(page, panel):
    """The same panel and table in JupyterLab Dark (for the eye: screenshots)."""
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', "
                  "{theme: 'JupyterLab Dark'})")
    page.locator("body[data-jp-theme-light='false']").wait_for(state="attached",
                                                                timeout=30_000)
    page.wait_for_timeout(1000)  # the theme's CSS settles
    cell = panel.locator("table.nbllm-table td").first
    assert style(cell, "color") != "rgb(0, 0, 0)"  # the theme's text colour, not black
    page.screenshot(path=str(ARTIFACTS / "panel-dark.png"), full_page=True)
    panel.locator("table.nbllm-table").screenshot(path=str(ARTIFACTS / "table-dark.png"))
    # Preview under the table, and the few-shot prompt, in the dark theme too.
    panel.locator("button", has_text="Preview").click()
    panel.locator("h4.nbllm-heading").wait_for(timeout=120_000)
    assert panel.locator("table.nbllm-table").first.locator("tbody tr").count() == len(TEXTS)
    page.screenshot(path=str(ARTIFACTS / "panel-preview-dark.png"), full_page=True)
    panel.locator(".widget-toggle-button", has_text="few-shot").click()
    panel.locator("label", has_text="max samples").first.wait_for()
    assert_no_button_cut(panel)
    page.screenshot(path=str(ARTIFACTS / "panel-few-shot-dark.png"), full_page=True)
