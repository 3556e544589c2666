"""The Labeler and compare_prompts in a real browser (JupyterLab + Chromium).

The way tests/test_browser.py runs (its server fixture and helpers): the
Labeler says what it does from the moment its cell runs ("loading …", then
"scoring k / 60 texts…") and draws a real plot whose tick labels and values
are the rounds' numbers; compare_prompts' table fits a ~1,000 px output with
one model and with two, and its hint agrees with its accuracy.  Screenshots,
light and dark, go to ``test-artifacts/``.
"""

import json
import re
import time
import urllib.request

import pytest

from test_browser import (  # noqa: F401 - jupyter_lab is the server fixture
    ARTIFACTS, contrast, jupyter_lab, lab_page, open_and_run, set_theme)

pytestmark = pytest.mark.slow

LABELER_SOURCE = (
    "import nbllm\n"
    "from nbllm.tools.tweets import load_tweets\n"
    "tweets = load_tweets(60, labels=('negative', 'positive'), split='eval', random_state=7)\n"
    "tweets.llm.labeler('text', labels=['negative', 'positive'], batch=5,\n"
    "                   path='answers-status.json')"
)

LONG_PROMPT = ("You read tweets sent to airlines by their passengers and decide, with care "
               "and without guessing, whether the passenger is pleased or not; sarcasm "
               "counts as negative. <b>Tweet</b>: {text}\nAnswer with one of {labels}: ")


def compare_source(tiny_folder):
    return (
        "import nbllm\n"
        "from IPython.display import display\n"
        "from nbllm.tools.tweets import load_tweets\n"
        "t = load_tweets(20, labels=('negative', 'positive'), split='eval', random_state=3)\n"
        "labels = ['negative', 'positive']\n"
        f"prompts = [None, 'Tweet: {{text}}\\nSentiment ({{labels}}): ', {LONG_PROMPT!r}]\n"
        "display(nbllm.compare_prompts(t['text'], labels, prompts, y=t['label'],\n"
        f"                             models=['smollm2-135m', {tiny_folder!r}]))\n"
        "display(nbllm.compare_prompts(t['text'], labels, [None], y=t['label'],\n"
        "                             use_chat_template=True))"
    )


def upload(url, token, name, source):
    """Put a one-cell notebook on the server (the contents API)."""
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    body = json.dumps({"type": "notebook", "format": "json", "content": notebook})
    request = urllib.request.Request(f"{url}/api/contents/{name}?token={token}",
                                     data=body.encode(), method="PUT",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).read()


def open_watch_and_run(sync_api, page, url, token, name, watched, selector):
    """Open a notebook, start recording ``watched`` texts, run its cell; wait
    for ``selector``; return the seconds from the run to ``selector``."""
    started = []
    open_and_run(sync_api, page, url, token, name, selector,
                 before_run=lambda page: (watch(page, watched),
                                          started.append(time.perf_counter())))
    return time.perf_counter() - started[0]


def watch(page, selector):
    """Record each new text of ``selector`` elements from now on (every 50 ms)."""
    page.evaluate("""(selector) => {
        window.nbllmSeen = []; window.nbllmStart = performance.now();
        window.nbllmPoll = setInterval(() => {
            for (const e of document.querySelectorAll(selector)) {
                const line = e.innerText.trim();
                if (line && !window.nbllmSeen.some(s => s.line === line))
                    window.nbllmSeen.push({line, ms: performance.now() - window.nbllmStart});
            }
        }, 50);
    }""", selector)


def seen(page):
    return page.evaluate("() => { clearInterval(window.nbllmPoll); return window.nbllmSeen; }")


def test_labeler_status_from_creation_and_its_plot(jupyter_lab):
    from playwright import sync_api

    url, token = jupyter_lab
    upload(url, token, "labeler-status.ipynb", LABELER_SOURCE)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    timings = {}
    with lab_page(1400, 1500, "labeler-status-failure.png") as page:
        timings["widget_seconds"] = round(open_watch_and_run(
            sync_api, page, url, token, "labeler-status.ipynb",
            ".jp-OutputArea .nbllm-status", ".nbllm-labeler"), 2)
        labeler = page.locator(".nbllm-labeler")
        status = labeler.locator(".nbllm-status")
        if status.count():
            page.screenshot(path=str(ARTIFACTS / "labeler-loading.png"))
        cards = labeler.locator(".nbllm-card")
        cards.first.wait_for(timeout=180_000)
        lines = [s["line"] for s in seen(page)]
        timings["status_lines"] = lines
        assert any(line.startswith("\u23f3 loading smollm2-135m") for line in lines), lines
        counts = [line for line in lines if re.fullmatch(
            r"\u23f3 scoring \d+ / 60 texts\u2026", line)]
        assert counts, lines
        assert labeler.locator(".nbllm-status").count() == 0  # gone with the cards
        note = labeler.locator(".nbllm-note").inner_text()
        assert "calibrated for these labels" in note and "df.llm.classify" in note

        # The first scoring's thread has finished: Improve is enabled again.
        page.wait_for_function("() => { const b = [...document.querySelectorAll("
                               "'.nbllm-labeler button')].find(b => b.innerText"
                               ".includes('Improve')); return b && !b.disabled; }",
                               timeout=60_000)
        page.wait_for_timeout(500)
        for round_ in (1, 2):
            for answered in range(5 * round_ - 4, 5 * round_ + 1):
                cards.first.locator("button", has_text="2. positive").click()
                labeler.get_by_text(f"{answered} / 60 answered").wait_for(timeout=60_000)
            cards.first.wait_for(timeout=30_000)
            labeler.locator("button", has_text="Improve").click()
            labeler.get_by_text(f"improved from {5 * round_} answers").wait_for(
                timeout=120_000)
            if round_ == 1:  # the snippet opened now must follow the next Improve
                labeler.locator("button", has_text="Copy as code").click()
            snippet = labeler.locator(".nbllm-code textarea")
            snippet.wait_for(timeout=30_000)
            answers = re.findall(r"^    \(.*\),$", snippet.input_value(), re.M)
            # Random checks are held out of the fit the snippet rebuilds.
            checks = int(re.search(r"from (\d+) random checks?", labeler.inner_text()).group(1))
            assert len(answers) == 5 * round_ - checks, snippet.input_value()
        plot = labeler.locator("svg.nbllm-plot")
        plot.wait_for(timeout=30_000)
        # SVG text has no innerText: its text content is what is drawn.
        ticks = plot.locator("text.nbllm-xtick").all_text_contents()
        assert ticks == ["5", "10"], ticks
        values = plot.locator("text.nbllm-value").all_text_contents()
        # Each round had a random check (every 5th row): the headline is theirs.
        now = re.search(r"accuracy on new rows (\d+%) \(95% interval",
                        labeler.inner_text()).group(1)
        assert len(values) == 2 and values[-1] == now, (values, now)
        assert plot.locator("text.nbllm-plot-title").text_content() == \
            "Accuracy on new rows (random checks)"
        assert plot.locator("line.nbllm-interval").count() == 2
        yticks = plot.locator("text.nbllm-ytick").all_text_contents()
        assert yticks[-1] == "100%" and all(t.endswith("%") for t in yticks)
        box = plot.bounding_box()
        assert box["width"] >= 400 and box["height"] >= 200, box
        assert "never used to choose or fit" in labeler.inner_text()
        # An answer keeps the headline on show (it used to vanish until Improve).
        cards.first.locator("button", has_text="2. positive").click()
        labeler.get_by_text("11 / 60 answered").wait_for(timeout=60_000)
        assert f"accuracy on new rows {now}" in labeler.inner_text()
        plot.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "labeler-plot.png"), full_page=True)
        labeler.locator(".nbllm-code").screenshot(
            path=str(ARTIFACTS / "labeler-code-after-improve.png"))
        plot.screenshot(path=str(ARTIFACTS / "labeler-plot-only.png"))
        set_theme(page, dark=True)
        page.screenshot(path=str(ARTIFACTS / "labeler-plot-dark.png"), full_page=True)
        plot.screenshot(path=str(ARTIFACTS / "labeler-plot-only-dark.png"))
    (ARTIFACTS / "labeler_status.json").write_text(json.dumps(timings, indent=2))


def test_compare_prompts_fits_1000px_and_its_hint_agrees(jupyter_lab, tiny_folder):
    from playwright import sync_api

    url, token = jupyter_lab
    upload(url, token, "compare.ipynb", compare_source(tiny_folder))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # A window whose output area is about 1,000 px wide.
    with lab_page(1430, 1300, "compare-failure.png") as page:
        open_watch_and_run(sync_api, page, url, token, "compare.ipynb",
                           ".jp-OutputArea .nbllm-status", ".nbllm-status")
        set_theme(page, dark=False)  # an earlier test may have left it dark
        tables = page.locator("table.nbllm-compare")
        tables.nth(1).wait_for(timeout=240_000)
        lines = [s["line"] for s in seen(page)]
        assert any(line.startswith("\u23f3 prompt 1 / 6") for line in lines), lines
        output = page.locator(".jp-OutputArea-output").filter(has=tables.first).first
        out_box = output.bounding_box()
        assert 900 <= out_box["width"] <= 1010, out_box
        for k in range(2):
            table = tables.nth(k)
            t_box = table.bounding_box()
            assert t_box["x"] + t_box["width"] <= out_box["x"] + out_box["width"] + 1, \
                (k, t_box, out_box)
            for cls in ("nbllm-accuracy", "nbllm-logloss", "nbllm-agreement"):
                cell = table.locator(f"td.{cls}").first.bounding_box()
                assert cell["x"] + cell["width"] <= out_box["x"] + out_box["width"], cls
        assert output.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
        first = tables.first
        assert first.locator("th", has_text="model").count() == 1
        long_cell = first.locator("td.nbllm-prompt span").nth(2)
        assert long_cell.get_attribute("title") == LONG_PROMPT
        assert "<b>" not in first.inner_html().replace("&lt;b&gt;", "")
        sent = [cell.split() for cell in first.locator("td.nbllm-sent").all_inner_texts()]
        # The way, then the option value that reproduces the row.
        assert {way for way, _ in sent} <= {"raw", "chat"}, sent
        assert {setting for _, setting in sent} == {"use_chat_template='auto'"}, sent
        for header in first.locator("th").all():  # no header breaks over lines
            assert header.bounding_box()["height"] < 30, header.inner_text()
        # The reason is said once per way of sending, under the table.
        notes = page.locator(".nbllm-sent-note").all_inner_texts()
        assert all(note.count("sent ") == 1 for note in notes), notes
        check_hints(page, tables)
        tables.nth(1).scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)
        first.screenshot(path=str(ARTIFACTS / "compare-table.png"))
        set_theme(page, dark=True)
        page.screenshot(path=str(ARTIFACTS / "compare-dark.png"), full_page=True)


def check_hints(page, tables):
    """With y, a hint recommends the other way only where it was more accurate."""
    for k in range(2):
        table = tables.nth(k)
        sent = [cell.split()[0] for cell in table.locator("td.nbllm-sent").all_inner_texts()]
        accuracy = [float(a) for a in table.locator("td.nbllm-accuracy").all_inner_texts()]
        container = table.locator("xpath=..")
        for hint in container.locator(".nbllm-hint").all_inner_texts():
            row, text = re.fullmatch(r"#(\d+): (.*)", hint).groups()
            way = sent[int(row)]
            assert text.startswith("sent as a chat message" if way == "raw" else "sent raw"), \
                (way, hint)
            better, own = re.search(r"all 20 texts: ([\d.]+) against ([\d.]+);", text).groups()
            assert float(better) > float(own) == accuracy[int(row)], hint
            assert "label mass" not in text, hint
    # The same default prompt and texts, sent raw ('auto': first table, #0) and
    # as chat (second table): a hint to send it raw exactly when raw was more
    # accurate, quoting the first table's accuracy.
    raw = tables.nth(0).locator("td.nbllm-accuracy").first.inner_text()
    chat = tables.nth(1).locator("td.nbllm-accuracy").first.inner_text()
    second = tables.nth(1).locator("xpath=..").locator(".nbllm-hint")
    if float(raw) > float(chat):
        assert second.count() == 1, (raw, chat)
        assert f"all 20 texts: {raw} against {chat}; try use_chat_template='auto'" in \
            second.inner_text()
    else:
        assert second.count() == 0, (raw, chat, second.all_inner_texts())


EXPLAIN_SOURCE = (
    "import nbllm\n"
    "clf = nbllm.ZeroShotClassifier().fit(None, ['negative', 'positive'])\n"
    "clf.explain(['@united thank you for the quick rebooking, great service!',\n"
    "             '@AmericanAir 3 hours on the tarmac and no <b>information</b>.'])"
)


def test_the_explanation_highlight_reads_in_both_themes(jupyter_lab):
    """An explanation's highlighted words: escaped, coloured by contribution,
    with the theme's own text colour, readable in light and dark (issue 39)."""
    from playwright import sync_api

    url, token = jupyter_lab
    upload(url, token, "explain.ipynb", EXPLAIN_SOURCE)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with lab_page(1300, 900, "explain-failure.png") as page:
        open_and_run(sync_api, page, url, token, "explain.ipynb", ".nbllm-explain")
        shown = page.locator(".nbllm-explain").first
        # The tweet's markup is text, not HTML.
        assert "<b>information</b>" in shown.inner_text()
        assert shown.locator("b", has_text="information").count() == 0
        for dark in (False, True):
            set_theme(page, dark)
            words = shown.locator("span[title]")
            assert words.count() >= 15
            colours = words.evaluate_all(
                "ws => ws.map(w => [getComputedStyle(w).color, "
                "getComputedStyle(w).backgroundColor])")
            # Some words for, some against: both hues appear.
            assert any("230, 97, 1" in bg for _, bg in colours), colours
            assert any("33, 102, 172" in bg for _, bg in colours), colours
            page_bg = page.evaluate(
                "() => getComputedStyle(document.querySelector('.jp-OutputArea-output'))"
                ".backgroundColor")
            if "0, 0, 0, 0" in page_bg:  # transparent: the theme's layout colour shows
                page_bg = page.evaluate(
                    "() => getComputedStyle(document.body).getPropertyValue("
                    "'--jp-layout-color0')")
                page_bg = page.evaluate(
                    "(c) => { const d = document.createElement('div'); d.style.color = c; "
                    "document.body.append(d); const v = getComputedStyle(d).color; "
                    "d.remove(); return v; }", page_bg.strip())
            assert contrast(colours[0][0], page_bg) >= 4.5, (colours[0][0], page_bg)
            name = "dark" if dark else "light"
            shown.screenshot(path=str(ARTIFACTS / f"explain-{name}.png"))
        set_theme(page, dark=False)
