"""The display layer: ClassificationResult and GenerationPreview, no model needed.

Pure string asserts on the HTML and text reprs: escaping of every user or model
string, column order, predicted labels, truncation and the pandas frame.
"""

import re
import subprocess
import sys

import numpy as np
import pandas as pd
from IPython.core.formatters import DisplayFormatter

from nbllm.notebook.display import (
    MAX_HTML_ROWS,
    ClassificationResult,
    GenerationPreview,
    PALETTE,
    esc,
    label_colours,
    shorten,
)

SCRIPT = "<script>alert(1)</script>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"


def result(texts=("first text", "second text"), classes=("a", "b"),
           probas=((0.2, 0.8), (0.9, 0.1)), mass=(0.5, 0.25), **kwargs):
    return ClassificationResult(list(texts), list(classes), np.array(probas),
                                np.array(mass), **kwargs)


def preview(**kwargs):
    args = dict(
        text="the crew was lovely",
        prompt="Classify: the crew was lovely\nAnswer:",
        n_prompt_tokens=7,
        continuation=" positive, I think",
        classes=["negative", "positive"],
        probas=np.array([0.25, 0.75]),
        label_mass=0.42,
    )
    args.update(kwargs)
    return GenerationPreview(**args)


def header_cells(html):
    thead = re.search(r"<thead>(.*?)</thead>", html).group(1)
    return re.findall(r"<th>(.*?)</th>", thead)


def body_rows(html):
    tbody = re.search(r"<tbody>(.*?)</tbody>", html).group(1)
    return re.findall(r"<tr[^>]*>(.*?)</tr>", tbody)


def predicted_cells(html):
    return [
        " ".join(re.findall(r'<span class="nbllm-chip" style="background:#\w+">(.*?)</span>',
                            re.search(r'<td class="nbllm-pred">(.*?)</td>', row).group(1)))
        for row in body_rows(html)
    ]


# ----------------------------------------------------------------- helpers
def test_esc_escapes_markup_and_quotes():
    assert esc(SCRIPT) == ESCAPED_SCRIPT
    assert esc("say \"hi\" & 'bye'") == "say &quot;hi&quot; &amp; &#x27;bye&#x27;"
    assert esc(3) == "3"


def test_shorten_collapses_whitespace_and_cuts_with_an_ellipsis():
    assert shorten("  a \n b\t c ") == "a b c"
    assert shorten("x" * 80) == "x" * 80
    assert shorten("x" * 81) == "x" * 79 + "\u2026"
    assert shorten("abcdefgh", 5) == "abcd\u2026"


# ------------------------------------------------------ ClassificationResult
def test_frame_columns_values_and_index():
    res = result(index=pd.Index(["r1", "r2"], name="id"))
    frame = res.frame
    assert list(frame.columns) == ["text", "label", "proba_a", "proba_b"]
    assert list(frame.index) == ["r1", "r2"]
    assert frame.index.name == "id"
    assert frame["text"].tolist() == ["first text", "second text"]
    assert frame["label"].tolist() == ["b", "a"]
    np.testing.assert_array_equal(frame[["proba_a", "proba_b"]].to_numpy(),
                                  [[0.2, 0.8], [0.9, 0.1]])


def test_frame_has_label_mass_when_raw():
    frame = result(raw=True).frame
    assert list(frame.columns) == ["text", "label", "proba_a", "proba_b", "label_mass"]
    assert frame["label_mass"].tolist() == [0.5, 0.25]


def test_frame_default_index_is_a_range():
    assert result().frame.index.equals(pd.RangeIndex(2))


def test_labels_are_the_argmax_and_none_for_skipped_rows():
    res = result(texts=["x", "", "z"], classes=["a", "b", "c"],
                 probas=[[0.1, 0.2, 0.7], [np.nan] * 3, [0.5, 0.3, 0.2]],
                 mass=[1.0, np.nan, 1.0])
    assert res.labels == ["c", None, "a"]
    assert len(res) == 3
    assert res.low.tolist() == [False, False, False]


def test_low_compares_label_mass_with_the_threshold():
    res = result(mass=[0.5, 0.25], threshold=0.3)
    assert res.low.tolist() == [False, True]


def test_html_header_follows_the_classes_order():
    res = result(classes=["zeta", "alpha", "mid"],
                 probas=[[0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    assert header_cells(res._repr_html_()) == ["#", "text", "predicted",
                                               "zeta", "alpha", "mid"]


def test_html_predicted_label_and_bold_cell_are_the_argmax():
    probas = np.array([[0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.2, 0.7, 0.1]])
    classes = ["zeta", "alpha", "mid"]
    html = result(texts=["x", "y", "z"], classes=classes, probas=probas,
                  mass=[1, 1, 1])._repr_html_()
    assert predicted_cells(html) == [classes[j] for j in probas.argmax(axis=1)]
    for row, best in zip(body_rows(html), probas.argmax(axis=1)):
        cells = re.findall(r"<td( class=\"nbllm-best\")?>(\d\.\d{3})<span", row)
        assert [bool(c) for c, _ in cells] == [j == best for j in range(3)]


def test_html_proba_cells_show_value_and_bar():
    html = result()._repr_html_()
    colours = label_colours(["a", "b"])
    assert ('<td class="nbllm-best">0.800<span class="nbllm-bar" '
            f'style="width:48.0px;background:{colours["b"]}"></span></td>') in html
    assert ('<td>0.200<span class="nbllm-bar" '
            f'style="width:12.0px;background:{colours["a"]}"></span></td>') in html


def test_html_row_exact():
    html = result()._repr_html_()
    assert body_rows(html)[0] == (
        '<td>0</td><td class="nbllm-text" title="first text">first text</td>'
        f'<td class="nbllm-pred"><span class="nbllm-chip" style="background:{PALETTE[1]}">'
        'b</span></td>'
        f'<td>0.200<span class="nbllm-bar" style="width:12.0px;background:{PALETTE[0]}">'
        '</span></td>'
        '<td class="nbllm-best">0.800<span class="nbllm-bar" '
        f'style="width:48.0px;background:{PALETTE[1]}"></span></td>'
    )
    assert "<caption>2 text(s), 2 labels</caption>" in html


def test_html_escapes_script_in_text_label_and_title():
    text = f'He said "hi" {SCRIPT}'
    res = result(texts=[text, "plain"], classes=[SCRIPT, "b"],
                 probas=[[0.9, 0.1], [0.2, 0.8]])
    html = res._repr_html_()
    assert "<script>" not in html
    assert "</script>" not in html
    assert ESCAPED_SCRIPT in html
    # Full text on hover, quotes escaped so the attribute cannot be broken out of.
    assert (f'<td class="nbllm-text" title="He said &quot;hi&quot; {ESCAPED_SCRIPT}">'
            f"He said &quot;hi&quot; {ESCAPED_SCRIPT}</td>") in html
    assert header_cells(html)[3] == ESCAPED_SCRIPT
    assert predicted_cells(html) == [ESCAPED_SCRIPT, "b"]


def test_html_cuts_long_texts_by_css_and_keeps_the_full_text_in_the_title():
    # 40 words fit in the cell: the browser cuts them to its width.
    words = "word " * 40
    html = result(texts=[words, "y"])._repr_html_()
    assert f'<td class="nbllm-text" title="{words}">{words.strip()}</td>' in html
    assert "td.nbllm-text{max-width:0;width:100%;overflow:hidden;text-overflow:ellipsis}" \
        in html
    # A very long text is cut in the HTML too, to keep the output small.
    long = "x" * 5000
    html = result(texts=[long, "y"])._repr_html_()
    assert f'<td class="nbllm-text" title="{long}">{"x" * 299}\u2026</td>' in html


def test_html_escapes_previews_attached_to_a_result():
    res = result(previews=[preview(prompt=f"Classify {SCRIPT}: {{text}}",
                                   continuation=SCRIPT, text=SCRIPT)])
    html = res._repr_html_()
    assert "<script>" not in html
    assert f"Classify {ESCAPED_SCRIPT}: {{text}}" in html
    assert "Free generation" in html
    assert html.count('<div class="nbllm-preview tex2jax_ignore mathjax_ignore">') == 1


def test_html_truncates_after_max_html_rows():
    assert MAX_HTML_ROWS == 50
    n = 60
    probas = np.tile([0.3, 0.7], (n, 1))
    res = result(texts=[f"text {i}" for i in range(n)], probas=probas,
                 mass=np.ones(n))
    html = res._repr_html_()
    rows = body_rows(html)
    assert len(rows) == MAX_HTML_ROWS
    assert rows[-1].startswith('<td>49</td><td class="nbllm-text" title="text 49">')
    assert "text 50" not in html
    assert ("<p>\u2026 10 more rows; use <code>.frame</code> for all of them.</p>"
            in html)
    assert "<caption>60 text(s), 2 labels</caption>" in html
    assert len(res.frame) == n


def test_html_has_no_truncation_note_at_max_rows():
    n = MAX_HTML_ROWS
    res = result(texts=["t"] * n, probas=np.tile([0.3, 0.7], (n, 1)), mass=np.ones(n))
    assert "more rows" not in res._repr_html_()


def test_html_raw_and_low_rows():
    res = result(raw=True, threshold=0.3, probas=[[0.1, 0.4], [0.2, 0.05]],
                 mass=[0.5, 0.25])
    html = res._repr_html_()
    assert header_cells(html)[-1] == "label mass"
    rows = re.findall(r"<tr[^>]*>", re.search(r"<tbody>(.*?)</tbody>", html).group(1))
    assert rows == ["<tr>", '<tr class="nbllm-low">']
    assert (f'<td class="nbllm-pred"><span class="nbllm-chip" style="background:{PALETTE[0]}">'
            'a</span> <span class="nbllm-flag" title="label mass below threshold">'
            '\u26a0 low</span></td>') in html
    assert html.count("\u26a0 low</span>") == 1
    assert "<td>0.5</td>" in html and "<td>0.25</td>" in html
    assert ("<caption>2 text(s), 2 labels, raw label probabilities, 1 under the "
            "threshold 0.3</caption>") in html


def test_html_skipped_rows_show_dashes():
    res = result(probas=[[np.nan, np.nan], [0.9, 0.1]], mass=[np.nan, 1.0])
    html = res._repr_html_()
    first = body_rows(html)[0]
    assert first == ('<td>0</td><td class="nbllm-text" title="first text">first text</td>'
                     '<td class="nbllm-pred"></td><td>\u2013</td><td>\u2013</td>')


def test_text_repr_is_readable():
    res = result()
    assert repr(res) == (
        "ClassificationResult: 2 text(s), labels ['a', 'b']\n"
        "   0  b         [0.200 0.800]  first text\n"
        "   1  a         [0.900 0.100]  second text"
    )


def test_text_repr_raw_low_and_skipped():
    res = result(texts=["x", None], raw=True, threshold=0.3,
                 probas=[[0.1, 0.4], [np.nan, np.nan]], mass=[0.25, np.nan])
    assert repr(res) == (
        "ClassificationResult: 2 text(s), labels ['a', 'b'] (raw)\n"
        "   0  b         [0.100 0.400]  x  LOW\n"
        "   1  -         [nan nan]  None"
    )


def test_text_repr_truncates_after_20_rows():
    n = 25
    res = result(texts=[f"t{i}" for i in range(n)], probas=np.tile([0.3, 0.7], (n, 1)),
                 mass=np.ones(n))
    lines = repr(res).splitlines()
    assert lines[0] == "ClassificationResult: 25 text(s), labels ['a', 'b']"
    assert len(lines) == 22
    assert lines[-2] == "  19  b         [0.300 0.700]  t19"
    assert lines[-1] == "  ... 5 more rows"


def test_text_repr_widens_the_label_column():
    res = result(classes=["short", "a-much-longer-label"], probas=[[0.9, 0.1], [0.1, 0.9]])
    lines = repr(res).splitlines()
    assert lines[1] == "   0  short                [0.900 0.100]  first text"
    assert lines[2] == "   1  a-much-longer-label  [0.100 0.900]  second text"


def test_ipython_formats_both_html_and_plain_text():
    res = result()
    data, _ = DisplayFormatter().format(res)
    assert data["text/plain"] == repr(res)
    assert data["text/html"] == res._repr_html_()
    data, _ = DisplayFormatter().format(preview())
    assert set(data) >= {"text/plain", "text/html"}


def test_classes_are_stored_as_str():
    res = ClassificationResult(["x"], np.array(["a", "b"]), [[0.4, 0.6]], [1.0])
    assert res.classes == ["a", "b"]
    assert all(type(c) is str for c in res.classes)
    assert res.probas.dtype == np.float64


# --------------------------------------------------------- GenerationPreview
def test_preview_html_has_details_with_the_prompt():
    html = preview()._repr_html_()
    assert ('<details><summary>Prompt (7 tokens)</summary><pre class="nbllm-pre">'
            "Classify: the crew was lovely\nAnswer:</pre></details>") in html
    assert ('<h4 class="nbllm-heading" title="the crew was lovely">'
            "Preview: the crew was lovely</h4>") in html
    assert ('<b>Free generation</b><pre class="nbllm-pre"> positive, I think</pre>'
            in html)
    assert ('<p class="nbllm-legend">label mass 0.42: the probability the model gives '
            "to the labels together (near 1: it would answer with one of them); the "
            "probabilities above are shares of it.</p>") in html


def test_preview_html_lists_labels_in_the_tables_order_with_its_colours():
    html = preview()._repr_html_()
    rows = re.findall(r'<tr><td><span class="nbllm-chip" style="background:(#\w+)">(.*?)'
                      r'</span></td><td( class="nbllm-best")?>(\d\.\d{3})', html)
    colours = label_colours(["negative", "positive"])
    assert rows == [(colours["negative"], "negative", "", "0.250"),
                    (colours["positive"], "positive", ' class="nbllm-best"', "0.750")]
    # The same label keeps its colour in a result table.
    table = result(classes=["negative", "positive"])._repr_html_()
    assert f'<span class="nbllm-chip" style="background:{colours["positive"]}">positive' \
        in table


def test_preview_html_escapes_prompt_text_labels_and_continuation():
    p = preview(text=f"text {SCRIPT}", prompt=f"<b>Prompt</b> {SCRIPT}",
                continuation=f'"{SCRIPT}"', classes=[SCRIPT, "ok"])
    html = p._repr_html_()
    assert "<script>" not in html
    assert "<b>Prompt</b>" not in html
    assert (f'<pre class="nbllm-pre">&lt;b&gt;Prompt&lt;/b&gt; {ESCAPED_SCRIPT}</pre>'
            "</details>") in html
    assert f'<pre class="nbllm-pre">&quot;{ESCAPED_SCRIPT}&quot;</pre>' in html
    assert f'title="text {ESCAPED_SCRIPT}">Preview: text {ESCAPED_SCRIPT}</h4>' in html
    assert f'">{ESCAPED_SCRIPT}</span></td>' in html


def test_preview_text_repr():
    assert repr(preview()) == (
        "GenerationPreview for 'the crew was lovely'\n"
        "  prompt (7 tokens):\n"
        "    Classify: the crew was lovely\n"
        "    Answer:\n"
        "  free generation: ' positive, I think'\n"
        "  label probabilities: negative=0.250, positive=0.750 (label mass 0.42)"
    )


def test_preview_stores_plain_values():
    p = preview(classes=np.array(["x", "y"]), probas=[0.5, 0.5], label_mass=np.float32(1))
    assert p.classes == ["x", "y"]
    assert p.probas.dtype == np.float64
    assert type(p.label_mass) is float


def test_display_imports_no_torch():
    code = ("import sys, nbllm.notebook.display; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_html_output_is_kept_from_mathjax():
    """Texts full of prices ("$25 for wifi and $12") must not be typeset as maths;
    the browser test checks what JupyterLab then shows."""
    from nbllm.notebook.magics import status
    from nbllm.notebook.panel.panel import Panel

    classes = "tex2jax_ignore mathjax_ignore"
    prices = result(texts=("$25 for wifi and $12", "change $788. Was $188"))
    assert f'class="nbllm-result {classes}"' in prices._repr_html_()
    assert "$25 for wifi and $12" in prices._repr_html_()
    assert f'class="nbllm-preview {classes}"' in preview()._repr_html_()
    assert f'class="nbllm-status {classes}"' in status()._repr_html_()
    assert {"tex2jax_ignore", "mathjax_ignore"} <= set(Panel()._dom_classes)


# ------------------------------------------------------------ scannability
def test_label_colours_are_distinct_stable_and_meaningful():
    assert label_colours(["negative", "neutral", "positive"]) == {
        "negative": "#c62828", "neutral": "#455a64", "positive": "#2e7d32"}
    many = [f"label {i}" for i in range(10)]
    colours = label_colours(many)
    assert list(colours.values()) == list(PALETTE)
    # A meaning-coloured label takes its colour out of the palette for the others.
    mixed = label_colours(["billing", "positive", "tech"])
    assert mixed["positive"] == "#2e7d32"
    assert len(set(mixed.values())) == 3
    # More labels than colours: still a colour each (repeating).
    assert len(label_colours([str(i) for i in range(25)])) == 25


def test_legend_explains_label_mass_and_the_low_flag():
    plain = result()._repr_html_()
    assert '<p class="nbllm-legend">' not in plain
    raw = result(raw=True)._repr_html_()
    assert raw.count('<p class="nbllm-legend">') == 1
    assert ("label mass: how much probability the model gives to the labels together "
            "(near 1: it would answer with one of them; near 0: it would rather write "
            "something else, so its pick is a weak guess).") in raw
    low = result(threshold=0.3, mass=[0.5, 0.25])._repr_html_()
    assert ('<p class="nbllm-legend">\u26a0 low: the label mass is under the threshold '
            "0.3; treat their prediction with care.</p>") in low
    hidden = result(threshold=0.3, mass=[0.5, 0.25], hide_low=True)._repr_html_()
    assert "under the threshold 0.3; no prediction is given for them." in hidden


def test_low_rows_are_shaded_by_their_cells():
    # JupyterLab shades alternate rows (tr); the low colour sits on the cells.
    html = result(threshold=0.3, mass=[0.5, 0.25])._repr_html_()
    assert ".nbllm-table tr.nbllm-low>td{background:rgba(255,179,0,.28) !important}" in html


def test_multi_label_rows_show_one_chip_per_label():
    res = result(classes=["a", "b"], probas=[[0.9, 0.8], [0.1, 0.2]],
                 multi_label_threshold=0.5)
    assert predicted_cells(res._repr_html_()) == ["a b", ""]
