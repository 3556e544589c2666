"""The anywidget front ends of the panel and the Labeler (nbllm/notebook/panel/front_end.py).

The traitlets travel to the front end and back unchanged; the ES modules
fetch nothing and put user text in the page as text only.  The modules are
run in a real Chromium page with a stand-in for anywidget's model (the
whole JupyterLab round trip is tests/test_browser.py's); without Chromium
those tests are skipped, as the browser test is.
"""

import json

import pytest

from nbllm.notebook.panel.front_end import _CODE_ESM, _ENTER_ESM, CodeBox, EnterAddsTag
from test_browser import launched_chromium, require

HOSTILE = {"title": "As <i>Python</i>",
           "code": "print('<b>&</b>')\n<img src=x onerror=alert(1)>",
           "note": "a <script>alert(1)</script> note"}


def test_the_snippet_travels_to_the_front_end_and_back():
    box = CodeBox(**HOSTILE)
    state = json.loads(json.dumps(box.get_state(), default=str))  # what the comm sends
    assert {k: state[k] for k in HOSTILE} == HOSTILE  # as typed: the front end escapes
    other = CodeBox()
    other.set_state({k: state[k] for k in HOSTILE})
    assert (other.title, other.code, other.note) == (box.title, box.code, box.note)
    other.show("As a cell magic", None, "no magic")
    assert other.get_state()["code"] is None
    assert (other.title, other.note) == ("As a cell magic", "no magic")
    assert {"tex2jax_ignore", "mathjax_ignore"} <= set(box._dom_classes)  # $ is not maths


def test_the_front_ends_are_inline_and_fetch_nothing():
    for widget, esm in ((CodeBox(), _CODE_ESM), (EnterAddsTag(), _ENTER_ESM)):
        assert widget._esm == esm
        assert "import " not in esm and "://" not in esm and "fetch(" not in esm
        assert "innerHTML" not in esm and "insertAdjacentHTML" not in esm


@pytest.fixture(scope="module")
def page():
    with launched_chromium(require) as browser:
        context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
        page = context.new_page()
        # A secure context (as JupyterLab on localhost): the clipboard API works.
        page.route("http://localhost/", lambda route: route.fulfill(
            body="<html><body></body></html>", content_type="text/html"))
        page.goto("http://localhost/")
        yield page


# Render a module with a stand-in model: get/set/on/off, as anywidget's.
RENDER = """async ([esm, state, html]) => {
    document.body.innerHTML = html;
    const url = URL.createObjectURL(new Blob([esm], {type: "text/javascript"}));
    const widget = (await import(url)).default;
    const handlers = {};
    const model = {
        get: (k) => state[k],
        on: (e, f) => { (handlers[e] = handlers[e] || []).push(f); },
        off: (e, f) => { handlers[e] = (handlers[e] || []).filter((g) => g !== f); },
    };
    window.nbllmSet = (k, v) => {
        state[k] = v;
        (handlers["change:" + k] || []).forEach((f) => f());
    };
    const el = document.createElement("div");
    window.nbllmCleanup = widget.render({model, el});
    // As ipywidgets does: the view is put in the page after it is rendered.
    (document.querySelector("#host") || document.body).appendChild(el);
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
}"""


def test_the_code_box_shows_user_text_as_text_and_copies_it(page):
    page.evaluate(RENDER, [_CODE_ESM, dict(HOSTILE), ""])
    box = page.locator(".nbllm-code")
    assert box.count() == 1
    assert page.locator("img, script, i, .nbllm-code b b").count() == 0  # nothing parsed
    assert box.locator("b").inner_text() == HOSTILE["title"]
    assert box.locator(".nbllm-code-note").inner_text() == HOSTILE["note"]
    assert box.locator("textarea").input_value() == HOSTILE["code"]
    box.locator("button.nbllm-copy").click()
    box.locator("button.nbllm-copy", has_text="Copied").wait_for(timeout=5_000)
    assert page.evaluate("() => navigator.clipboard.readText()") == HOSTILE["code"]
    # A new snippet redraws the box; None shows the title and the note only.
    page.evaluate("() => window.nbllmSet('code', null)")
    assert box.locator("textarea, button").count() == 0
    assert box.locator(".nbllm-code-note").inner_text() == HOSTILE["note"]
    page.evaluate("() => { window.nbllmSet('title', ''); window.nbllmSet('note', ''); }")
    assert box.count() == 0  # an empty box (no code asked for yet) shows nothing


def test_enter_commits_the_typed_tag_before_the_page_sees_the_key(page):
    panel = ('<div class="nbllm-panel"><div class="jupyter-widget-tagsinput">'
             '<input id="tag"></div><div id="host"></div></div>')
    page.evaluate(RENDER, [_ENTER_ESM, {}, panel])
    page.evaluate("""() => {
        window.changes = 0; window.seen = 0;
        document.querySelector('#tag').addEventListener('change', () => window.changes++);
        document.addEventListener('keydown', () => window.seen++);  // JupyterLab's place
    }""")
    page.locator("#tag").press("Enter")  # empty: nothing to commit, the key goes on
    assert page.evaluate("() => [window.changes, window.seen]") == [0, 1]
    page.locator("#tag").fill("negative, positive")
    page.locator("#tag").press("Enter")
    assert page.evaluate("() => [window.changes, window.seen]") == [1, 1]
    page.evaluate("() => window.nbllmCleanup()")  # the view removed: the listener too
    page.locator("#tag").fill("neutral")
    page.locator("#tag").press("Enter")
    assert page.evaluate("() => window.seen") == 2
    assert page.evaluate("() => document.querySelector('.nbllm-panel').dataset.nbllmEnter") \
        is None


def test_a_click_elsewhere_commits_the_typed_tag_and_keeps_its_focus(page):
    """Labels typed without Enter, then a click on the texts box: the tag is
    committed before the click moves the focus, which stays where it was aimed
    although the box focuses its own field again on commit (as ipywidgets'
    TagsInput does, with the redraw after it)."""
    panel = ('<div class="nbllm-panel"><div class="jupyter-widget-tagsinput">'
             '<span id="chip">a tag</span><input id="tag"></div>'
             '<textarea id="texts"></textarea><div id="host"></div></div>')
    page.evaluate(RENDER, [_ENTER_ESM, {}, panel])
    page.evaluate("""() => {
        window.changes = [];
        const tag = document.querySelector('#tag');
        tag.addEventListener('change', () => {
            window.changes.push(tag.value); tag.value = ''; tag.focus(); });
    }""")
    page.locator("#tag").fill("negative, positive")
    page.dispatch_event("#chip", "mousedown")  # inside the box: still being typed
    assert page.evaluate("() => window.changes") == []
    page.locator("#tag").focus()
    page.locator("#texts").click()
    assert page.evaluate("() => window.changes") == ["negative, positive"]
    page.keyboard.type("a text")
    assert page.locator("#texts").input_value() == "a text"
    page.locator("#tag").focus()  # an empty box commits nothing
    page.locator("#texts").click()
    assert page.evaluate("() => window.changes") == ["negative, positive"]
    page.evaluate("() => window.nbllmCleanup()")  # the view removed: the listener too
    page.locator("#tag").fill("neutral")
    page.dispatch_event("#texts", "mousedown")  # the press alone: no focus change
    assert page.evaluate("() => window.changes") == ["negative, positive"]
