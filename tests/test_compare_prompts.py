"""nbllm.compare_prompts and the estimators' prompt_mode(), on the tiny model."""

import html as html_module
import re

import numpy as np
import pytest

import nbllm
from nbllm import ZeroShotClassifier

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")

LABELS = ["negative", "positive"]
TEXTS = ["I love it", "I hate it", "fine", "<b>$5</b> and $6"]
Y = ["positive", "negative", "positive", "negative"]
PROMPTS = [None, "Text: {text}\nOptions: {labels}\nAnswer: ",
           "Is this {labels}? {text}"]


def test_one_row_per_prompt_with_the_estimators_numbers(tiny_folder):
    table = nbllm.compare_prompts(TEXTS, LABELS, PROMPTS, y=Y, model=tiny_folder)
    assert len(table.rows) == 3
    for prompt, row, predicted in zip(PROMPTS, table.rows, table.predictions):
        clf = ZeroShotClassifier(tiny_folder, prompt=prompt, progress=False).fit(
            None, LABELS)
        probas = clf.predict_proba(TEXTS)
        assert row.prompt == clf.prompt_ and row.mode == clf.prompt_mode().reason
        assert row.mean_label_mass == pytest.approx(
            clf.label_mass(clf.label_logprobs(TEXTS)).mean())
        truth = np.array([LABELS.index(v) for v in Y])
        assert row.accuracy == pytest.approx((probas.argmax(1) == truth).mean())
        assert row.log_loss == pytest.approx(-np.log(probas[np.arange(4), truth]).mean())
        assert list(predicted) == [LABELS[i] for i in probas.argmax(1)]
        assert sum(row.distribution.values()) == 4
    assert table.rows[0].agreement is None
    assert table.rows[1].agreement == pytest.approx(
        (table.predictions[1] == table.predictions[0]).mean())
    assert list(table.frame.columns)[:3] == ["prompt", "model", "mode"]


def test_the_table_is_escaped_and_kept_from_mathjax(tiny_folder):
    html = nbllm.compare_prompts(TEXTS, ["<i>", "b&c"], ["{text} {labels} <script>"],
                                 model=tiny_folder)._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<i>" not in html and "tex2jax_ignore mathjax_ignore" in html
    assert "accuracy" not in html  # no y: no accuracy column


def test_every_prompt_on_every_model(tiny_folder, tmp_path):
    from tiny import save_tiny

    other = save_tiny(tmp_path / "other")
    table = nbllm.compare_prompts(TEXTS, LABELS, PROMPTS[:2], models=[tiny_folder, other])
    assert [r.model for r in table.rows] == [tiny_folder] * 2 + [other] * 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompts=[]), "prompts must hold at least one prompt; got none"),
    (dict(prompts=[None], y=["positive"]), "y has 1 label for 4 texts"),
    (dict(prompts=[None], y=["good"] * 4), "y holds labels that are not in labels: 'good'"),
])
def test_bad_input(tiny_folder, kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        nbllm.compare_prompts(TEXTS, LABELS, model=tiny_folder, **kwargs)


@pytest.mark.parametrize("prompt, setting, expected", [
    ("Text: {text} ({labels})\nLabel: ", "auto",
     ("raw", "sent raw, the label after a space (use_chat_template='auto')")),
    ("Text: {text} ({labels})\nLabel:", "auto",
     ("raw", "sent raw, the label after a space (use_chat_template='auto')")),
    ("Text: {text} ({labels})\nLabel:", False,
     ("raw", "sent raw as typed (use_chat_template=False, skorch's scoring)")),
    ("Text: {text} ({labels})\nLabel:", True,
     ("chat", "sent as a chat message (use_chat_template=True)")),
])
def test_prompt_mode_says_why(tiny_folder, prompt, setting, expected):
    clf = ZeroShotClassifier(tiny_folder, prompt=prompt, use_chat_template=setting,
                             progress=False).fit(None, LABELS)
    assert (clf.prompt_mode().mode, clf.prompt_mode().reason) == expected


def test_the_trailing_space_pair_scores_alike(tiny_folder):
    """'auto' cannot be swung by a space nobody sees."""
    pair = [ZeroShotClassifier(tiny_folder, prompt=p, progress=False).fit(None, LABELS)
            for p in ("{labels}? {text}\nSentiment: ", "{labels}? {text}\nSentiment:")]
    np.testing.assert_allclose(pair[0].predict_proba(TEXTS), pair[1].predict_proba(TEXTS),
                               atol=1e-9)


def test_the_result_table_says_how_the_prompt_was_sent(ip, tiny_folder):
    res = ip.run_cell(f"%%zeroshot --labels a,b --model {tiny_folder}\nhello")
    html = res.result._repr_html_()
    assert res.result.prompt_mode == ("sent raw, the label after a space "
                                      "(use_chat_template='auto')")
    assert ('<span class="nbllm-mode"> \u00b7 sent raw, the label after a space '
            "(use_chat_template=&#x27;auto&#x27;)</span></caption>") in html


def test_several_prompt_options_compare_in_one_table(ip, tiny_folder, capsys):
    from nbllm.notebook.compare import PromptComparison

    res = ip.run_cell(f"%%zeroshot --labels a,b --model {tiny_folder} "
                      "--prompt '{text} is {labels}:' --prompt 'Say {labels}\\n{text}' -o t\n"
                      "hello\nworld")
    assert res.success, res.error_in_exec
    table = res.result
    assert isinstance(table, PromptComparison) and ip.user_ns["t"] is table
    assert [r.prompt for r in table.rows] == ["{text} is {labels}:", "Say {labels}\n{text}"]
    one = ip.run_cell(f"%%zeroshot --labels a,b --model {tiny_folder} "
                      "--prompt '{text} is {labels}:'\nhello\nworld").result
    np.testing.assert_array_equal(table.predictions[0], np.asarray(one.labels))
    res = ip.run_cell(f"%%fewshot --labels a,b --model {tiny_folder} --prompt x1 "
                      "--prompt x2\na: good\n---\nhello")
    assert not res.success
    assert str(res.error_in_exec) == ("several --prompt compare zero-shot prompts; "
                                      "%%fewshot and --multi-label take one")


@pytest.mark.parametrize("chat, mass, other, expected", [
    (False, 0.01, 0.5, "sent as a chat message (use_chat_template=True), the same prompt "
                       "got 50\u00d7 more label mass on the first 16 texts (0.5 against "
                       "0.01); label mass is not accuracy: give y to compare accuracy"),
    (True, 0.002, 0.1, "sent raw, the label after a space (use_chat_template='auto'), the "
                       "same prompt got 50\u00d7 more label mass on the first 16 texts (0.1 "
                       "against 0.002); label mass is not accuracy: give y to compare "
                       "accuracy"),
    (False, 0.5, 0.01, ""),   # the current way is better: no advice
    (True, 0.1, 0.002, ""),
    (False, 0.1, 0.5, ""),    # better, but not ten times: no advice
])
def test_without_y_a_hint_only_when_the_other_way_got_far_more_mass(chat, mass, other,
                                                                    expected):
    from nbllm.notebook.compare import mode_hint

    assert mode_hint(chat, mass, other, 16) == expected


@pytest.mark.parametrize("chat, accuracy, other, expected", [
    (True, 0.533, 0.8, "sent raw, the label after a space (use_chat_template='auto'), "
                       "the same prompt was more accurate on all 60 texts: 0.800 against "
                       "0.533; try use_chat_template='auto'"),
    (False, 0.5, 0.6, "sent as a chat message (use_chat_template=True), the same prompt "
                      "was more accurate on all 60 texts: 0.600 against 0.500; try "
                      "use_chat_template=True"),
    (False, 0.8, 0.533, ""),  # the case: raw was more accurate, no advice
    (True, 0.7, 0.7, ""),     # as accurate: no advice
])
def test_with_y_a_hint_only_when_the_other_way_was_more_accurate(chat, accuracy, other,
                                                                 expected):
    from nbllm.notebook.compare import accuracy_hint

    assert accuracy_hint(chat, accuracy, other, 60) == expected


HINT_TEXTS = TEXTS + ["great", "awful", "meh", "so good", "never again", "thanks!",
                      "late again", "ok I guess"]


@pytest.mark.parametrize("setting, other", [("auto", True), (True, "auto"),
                                            (False, True)])
def test_with_y_the_hint_follows_accuracy_on_every_text_not_label_mass(
        tiny_folder, monkeypatch, setting, other):
    """y made to favour each way in turn: the hint follows accuracy only."""
    from nbllm.notebook import compare

    monkeypatch.setattr(compare, "HINT_RATIO", 1.0)  # mass alone would always advise

    def predictions(value):
        clf = ZeroShotClassifier(tiny_folder, use_chat_template=value,
                                 progress=False).fit(None, LABELS)
        return list(clf.predict(HINT_TEXTS))

    own, others = predictions(setting), predictions(other)
    assert own != others  # the two ways disagree somewhere, so accuracies can differ
    for y, advised in ((others, True), (own, False)):
        row = nbllm.compare_prompts(HINT_TEXTS, LABELS, [None], y=y, model=tiny_folder,
                                    use_chat_template=setting).rows[0]
        assert row.setting == f"use_chat_template={setting!r}"
        if advised:
            assert row.accuracy < 1.0
            assert row.hint.endswith(
                f"was more accurate on all {len(HINT_TEXTS)} texts: 1.000 against "
                f"{row.accuracy:.3f}; try use_chat_template={other!r}")
        else:
            assert row.accuracy == 1.0 and row.hint == ""


@pytest.mark.parametrize("setting", [True, False])
def test_without_y_the_hint_agrees_with_the_measured_masses(tiny_folder, monkeypatch,
                                                            setting):
    from nbllm.notebook import compare

    monkeypatch.setattr(compare, "HINT_RATIO", 1.0)  # any better way gets a hint
    row = nbllm.compare_prompts(TEXTS, LABELS, [None], model=tiny_folder,
                                use_chat_template=setting).rows[0]
    other_setting = "auto" if setting else True
    other = ZeroShotClassifier(tiny_folder, use_chat_template=other_setting,
                               progress=False).fit(None, LABELS)
    other_mass = other.label_mass(other.label_logprobs(TEXTS)).mean()
    assert row.sent == ("chat" if setting else "raw")
    if other_mass > row.mean_label_mass:
        assert row.hint.startswith("sent raw" if setting else "sent as a chat message")
        assert f"(use_chat_template={other_setting!r})" in row.hint
        assert "more label mass on the first 4 texts" in row.hint
    else:
        assert row.hint == ""
    monkeypatch.setattr(compare, "HINT_RATIO", 1e12)  # nothing is that far apart
    assert nbllm.compare_prompts(TEXTS, LABELS, [None], model=tiny_folder,
                                 use_chat_template=setting).rows[0].hint == ""


def test_the_table_says_how_it_was_sent_once_and_cuts_long_prompts(tiny_folder, tmp_path):
    from tiny import save_tiny

    long = "Classify <b>this</b> & that: " + "very " * 60 + "{text} {labels}: "
    table = nbllm.compare_prompts(TEXTS, LABELS, [None, long], y=Y, model=tiny_folder)
    html = table._repr_html_()
    assert html.count("<th>") == 8 and "<th>model</th>" not in html
    assert ">raw<" in html or ">chat<" in html
    reasons = {r.mode for r in table.rows}
    for reason in reasons:
        assert html.count(f"{html_module.escape(reason)}</p>") == 1
    assert f'title="{html_module.escape(long)}"' in html  # the whole prompt on hover
    shown = html.replace(f'title="{html_module.escape(long)}"', "")
    assert "very " * 60 not in shown
    # The start and the end of a long prompt show, around an ellipsis.
    assert "Classify &lt;b&gt;this&lt;/b&gt; &amp; that: very" in shown
    assert "very {text} {labels}: </span>" in shown and " \u2026 very" in shown
    assert "caption>4 texts, 2 prompts, labels negative, positive, model " in html
    # Every row names the option value that reproduces it.
    assert "<br><code>use_chat_template=&#x27;auto&#x27;</code></td>" in html
    other = save_tiny(tmp_path / "other")
    two = nbllm.compare_prompts(TEXTS, LABELS, [None, long], y=Y,
                                models=[tiny_folder, other])
    assert "<th>model</th>" in two._repr_html_()
    assert "caption>4 texts, 2 prompts \u00d7 2 models, labels" in two._repr_html_()
    assert repr(two).startswith("PromptComparison: 4 texts, 2 prompts \u00d7 2 models\n")


def test_two_prompts_alike_at_both_ends_are_shown_in_full(tiny_folder):
    # Within the tiny model's 256 tokens, longer than a cell shows uncut.
    middle = "word " * 22
    prompts = ["Tweet: {text}\n" + middle * 2 + "Is it {labels}? ",
               "Tweet: {text}\n" + middle * 2 + "Or is it {labels}? "]
    same_ends = ["{text} " + middle + "one " + middle + "{labels}: ",
                 "{text} " + middle + "two " + middle + "{labels}: "]
    for pair in (prompts, same_ends):
        html = nbllm.compare_prompts(TEXTS, LABELS, pair, model=tiny_folder)._repr_html_()
        cells = re.findall(r'<td class="nbllm-prompt"><span title="[^"]*">([^<]*)</span>',
                           html)
        assert len(cells) == 2 and cells[0] != cells[1], cells
    # Cut the same, these two show in full.
    html = nbllm.compare_prompts(TEXTS, LABELS, same_ends, model=tiny_folder)._repr_html_()
    assert "one " + middle.strip() in html and "two " + middle.strip() in html


def test_headers_numbers_and_each_label_count_do_not_break_inside(tiny_folder):
    html = nbllm.compare_prompts(TEXTS, LABELS, [None], y=Y, model=tiny_folder)._repr_html_()
    assert ".nbllm-compare th{white-space:nowrap;" in html
    assert (".nbllm-compare td.nbllm-predicted span,.nbllm-compare td.nbllm-sent,"
            ".nbllm-compare td.nbllm-num{white-space:nowrap}") in html
    counts = re.search(r'<td class="nbllm-predicted">(.*?)</td>', html).group(1)
    assert re.fullmatch(r"<span>negative \d+</span>, <span>positive \d+</span>", counts)


def test_compare_prompts_says_what_it_is_doing(tiny_folder):
    from nbllm.engine import status as engine_status

    seen = []
    with engine_status.listening(seen.append):
        nbllm.compare_prompts(TEXTS, LABELS, PROMPTS[:2], model=tiny_folder)
    assert seen[0] == "prompt 1 / 2: preparing\u2026"
    assert "prompt 2 / 2: scored 4 / 4 texts\u2026" in seen
    assert "prompt 1 / 2: trying the other way of sending it on 4 texts\u2026" in seen


def test_multi_label_keeps_the_former_rule_and_says_so(tiny_folder):
    from nbllm import MultiLabelZeroShotClassifier

    question = MultiLabelZeroShotClassifier(tiny_folder, progress=False).fit(
        None, [["a"], ["b"]])
    assert (question.prompt_mode().mode, question.prompt_mode().reason) == (
        "chat", "sent as chat: the prompt does not end with a space "
                "(use_chat_template='auto')")
    completion = MultiLabelZeroShotClassifier(
        tiny_folder, prompt="{text} about {label}? Answer: ", progress=False).fit(
        None, [["a"], ["b"]])
    assert (completion.prompt_mode().mode, completion.prompt_mode().reason) == (
        "raw", "sent raw: the prompt ends with a space (use_chat_template='auto')")


@pytest.mark.parametrize("texts, message", [
    (["I love it", None, float("nan")],
     "texts contain 2 missing value(s) (None or NaN) at position(s) 1, 2; drop or fill "
     "them, or pass skip_missing=True"),
    (None, "texts must be a list-like of texts, got None"),
    ("I love it", "texts must be a list-like of texts, got a single string; wrap it in a "
                  "list: [text]"),
])
def test_texts_are_checked_at_the_entry_as_classify_checks_them(tiny_folder, texts, message):
    for call in (lambda: nbllm.compare_prompts(texts, LABELS, [None], model=tiny_folder),
                 lambda: nbllm.classify(texts, LABELS, model=tiny_folder)):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            call()


def test_skip_missing_leaves_missing_texts_out_as_classify_does(tiny_folder):
    texts = ["I love it", None, "I hate it", float("nan")]
    y = ["positive", "negative", "negative", "positive"]
    with pytest.warns(UserWarning, match=re.escape(
            "2 missing text(s) (None or NaN) were skipped; their predictions are None")):
        table = nbllm.compare_prompts(texts, LABELS, [None], y=y, model=tiny_folder,
                                      skip_missing=True)
    whole = nbllm.compare_prompts(["I love it", "I hate it"], LABELS, [None],
                                  y=["positive", "negative"], model=tiny_folder)
    assert table.n_texts == 2 and table.rows[0].accuracy == whole.rows[0].accuracy
    assert table.rows[0].distribution == whole.rows[0].distribution
    predicted = whole.predictions[0].tolist()
    assert table.predictions[0].tolist() == [predicted[0], None, predicted[1], None]
    message = "texts must hold at least one text; all 2 are missing (None or NaN)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        nbllm.compare_prompts([None, None], LABELS, [None], model=tiny_folder,
                              skip_missing=True)


def test_compare_predicts_by_the_one_rule(tiny_folder):
    table = nbllm.compare_prompts(TEXTS, LABELS, [None], model=tiny_folder)
    clf = ZeroShotClassifier(tiny_folder, progress=False).fit(None, LABELS)
    expected = clf.result_policy().predictions(LABELS, clf.predict_proba(TEXTS))
    assert table.predictions[0].tolist() == expected.tolist() == clf.predict(TEXTS).tolist()


def test_compare_takes_no_multi_label(tiny_folder):
    message = ("compare_prompts compares single-label predictions; multi_label=True is "
               "not supported")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        nbllm.compare_prompts(TEXTS, LABELS, [None], model=tiny_folder, multi_label=True)
