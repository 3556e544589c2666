"""nbllm.Labeler and its widget, headless, on the tiny model.

Every operation of the Python object, the answers file (kept at once, reloaded
after a "restart", damaged), bad input, and the widget's cards and buttons.
"""

import html
import json
import re
import threading

import numpy as np
import pandas as pd
import pytest

import nbllm
from nbllm.estimators.calibration import calibrate
from nbllm.notebook.labeler.choice import mix_checks, wilson
from nbllm.notebook.labeler.labeler import Labeler, answers_path, uncertainty
from nbllm.notebook.labeler.widget import LabelerWidget, accuracy_plot, estimator_code

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")

LABELS = ["negative", "positive"]
TEXTS = ["I love it", "I hate it", "fine I guess", "great stuff", "awful service",
         "the best day", "never again", "so so", "lovely crew", "lost my bag"]
TRUTH = ["positive", "negative", "positive", "positive", "negative",
         "positive", "negative", "negative", "positive", "negative"]
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def df():
    return pd.DataFrame({"text": TEXTS, "truth": TRUTH},
                        index=[f"r{i}" for i in range(len(TEXTS))])


@pytest.fixture
def make(tiny_folder, tmp_path):
    def build(data, **kwargs):
        kwargs.setdefault("path", tmp_path / "answers.json")
        return Labeler(data, "text", LABELS, model=tiny_folder, **kwargs)
    return build


def test_queue_is_least_sure_first_and_skips_answered_and_skipped(make, df):
    lab = make(df, batch=4)
    queue = lab.queue()
    assert list(queue.columns) == ["text", "label", "proba_negative", "proba_positive",
                                   "check"]
    assert len(queue) == 4 and set(queue.index) <= set(df.index)
    all_rows = lab.queue(n=len(df))
    assert all_rows["check"].tolist() == [k % 5 == 4 for k in range(len(df))]
    ranked = all_rows[~all_rows["check"]]  # the checks are drawn at random
    gaps = (ranked["proba_negative"] - ranked["proba_positive"]).abs().to_numpy()
    assert (np.diff(gaps) >= -1e-12).all()  # smallest gap between the labels first
    first, second = all_rows.index[:2]
    lab.answer(first, "positive")
    lab.skip(second)
    assert first not in lab.queue(n=len(df)).index
    assert second not in lab.queue(n=len(df)).index
    assert len(lab.queue(n=len(df))) == len(df) - 2


def test_strategies_order_by_entropy_or_at_random(make, df):
    probas = np.array([[0.9, 0.1], [0.5, 0.5], [0.7, 0.3]])
    assert list(np.argsort(-uncertainty(probas, "margin"))) == [1, 2, 0]
    assert list(np.argsort(-uncertainty(probas, "entropy"))) == [1, 2, 0]
    one = make(df, strategy="random", random_state=1).queue(n=10).index.tolist()
    again = make(df, strategy="random", random_state=1, path=None).queue(n=10).index
    assert sorted(one) == sorted(df.index) and one == again.tolist()


def test_answer_replaces_and_is_saved_at_once(make, df, tmp_path):
    lab = make(df)
    lab.answer("r0", "negative")
    lab.answer("r0", "positive")
    lab.answer("r1", "negative")
    saved = json.loads((tmp_path / "answers.json").read_text())
    assert [(a["position"], a["text"], a["label"]) for a in saved["answers"]] == [
        (0, "I love it", "positive"), (1, "I hate it", "negative")]
    assert lab.answers.to_dict("index") == {
        "r0": {"text": "I love it", "label": "positive"},
        "r1": {"text": "I hate it", "label": "negative"}}


@pytest.mark.parametrize("idx, label, message", [
    ("nope", "positive", "'nope' is not in the DataFrame's index"),
    ("r0", "neutral", "label must be one of 'negative', 'positive'; got 'neutral'"),
    (3, "positive", "3 is not in the DataFrame's index"),
])
def test_answer_bad_index_or_label(make, df, idx, label, message):
    lab = make(df)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        lab.answer(idx, label)
    assert lab.answers.empty


def test_answers_come_back_after_a_restart(tiny_folder, df, monkeypatch, tmp_path):
    monkeypatch.setenv("NBLLM_CACHE_DIR", str(tmp_path / "cache"))
    lab = Labeler(df, "text", LABELS, model=tiny_folder)
    assert lab.path == answers_path(df["text"].tolist(), LABELS)
    assert str(lab.path).startswith(str(tmp_path / "cache" / "labeler"))
    lab.answer("r2", "positive")
    lab.skip("r3")
    again = Labeler(df, "text", LABELS, model=tiny_folder)  # the same texts and labels
    assert again.answers.to_dict("index") == {"r2": {"text": "fine I guess",
                                                     "label": "positive"}}
    assert "r3" not in again.queue(n=10).index
    other = Labeler(df, "text", ["negative", "positive", "neutral"], model=tiny_folder)
    assert other.answers.empty  # other labels: another file


def test_resumed_answers_are_said_with_how_to_start_fresh(make, df, tmp_path):
    first = make(df)
    assert first.resumed == 0 and first.resumed_note == ""
    assert first.report().resumed == "" and "resumed" not in repr(first.report())
    first.answer("r0", "negative")
    first.answer("r1", "positive")
    path = tmp_path / "answers.json"
    note = (f"resumed 2 answers from {path}; to start fresh, make the Labeler with "
            "resume=False (or another path=)")
    again = make(df)
    assert again.resumed == 2 and again.resumed_note == note
    report = again.report()
    assert report.resumed == note and repr(report).endswith("\n" + note)
    assert f'<span class="nbllm-resumed">{html.escape(note)}</span>' in report._repr_html_()
    widget = LabelerWidget(again, threaded=False)
    assert html.escape(note) in widget.progress_line.value
    # resume=False: no answer read, and the file is replaced at the first answer.
    fresh = make(df, resume=False)
    assert fresh.resumed == 0 and fresh.answers.empty and fresh.report().resumed == ""
    fresh.answer("r3", "positive")
    assert list(make(df).answers.index) == ["r3"]
    with pytest.raises(ValueError, match=r"^resume must be True or False; got 'no'$"):
        make(df, resume="no")


def test_a_changed_text_drops_its_saved_answer(make, df, tmp_path):
    make(df).answer("r1", "negative")
    changed = df.copy()
    changed.loc["r1", "text"] = "something else now"
    with pytest.warns(UserWarning, match=re.escape(
            "1 saved answer(s) in") + ".*no longer match a row"):
        lab = make(changed)
    assert lab.answers.empty


def test_a_damaged_answers_file_is_a_clear_error(make, df, tmp_path):
    (tmp_path / "answers.json").write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(
            f"the answers file {str(tmp_path / 'answers.json')!r} cannot be read")):
        make(df)


def test_improve_fits_calibration_from_the_answers_without_rescoring(make, df,
                                                                     spy_score):
    lab = make(df)
    with pytest.raises(ValueError, match=r"^no answers yet: answer some rows of "
                                         r"queue\(\) first$"):
        lab.improve()
    lab.queue()
    scored = len(spy_score)
    for idx in ["r0", "r1", "r4", "r5"]:
        lab.answer(idx, df.at[idx, "truth"])
    predictions = lab.improve()
    assert len(spy_score) == scored  # the answers' scores come from the result cache
    clf = lab.estimator_
    assert clf.calibration == "fit" and list(clf.classes_) == LABELS
    expected = calibrate(clf.label_logprobs(TEXTS), "fit", clf.calibration_fit_)
    np.testing.assert_allclose(predictions[["proba_negative", "proba_positive"]]
                               .to_numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(clf.predict_proba(["a new text"]).sum(), 1.0)
    assert predictions.index.tolist() == df.index.tolist()
    assert predictions["label"].tolist() == [LABELS[i] for i in expected.argmax(1)]


def test_report_estimates_from_the_calibrated_probabilities(make, df):
    lab = make(df)
    before = lab.report()
    assert before.answered == 0 and before.total == 10
    assert before.estimated_accuracy is None and before.answered_accuracy is None
    for idx in ["r0", "r1", "r4", "r5"]:
        lab.answer(idx, df.at[idx, "truth"])
    lab.improve()
    report = lab.report()
    rest = [i for i in df.index if i not in {"r0", "r1", "r4", "r5"}]
    probas = lab.predictions.loc[rest, ["proba_negative", "proba_positive"]].to_numpy()
    assert report.estimated_accuracy == pytest.approx(probas.max(axis=1).mean())
    assert report.start_estimated_accuracy is None  # fewer than START_CHECKS checks
    assert report.checks == 0 and report.check_accuracy is None and report.choice is None
    assert report.answered_accuracy in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert sum(report.label_counts.values()) == 10
    assert report.rounds == [{"answers": 4, "checks": 0, "check_accuracy": None,
                              "low": None, "high": None,
                              "estimated_accuracy": report.estimated_accuracy}]
    assert "4 / 10" in report._repr_html_() and "answered=4/10" in repr(report)


def test_stop_in_improve_loses_no_answer(make, df, tmp_path):
    lab = make(df)  # nothing scored yet: improve has to score
    lab.answer("r0", "positive")
    stop = threading.Event()
    stop.set()
    with pytest.raises(KeyboardInterrupt):
        lab.improve(stop=stop)
    assert make(df).answers.index.tolist() == ["r0"]
    lab.improve()
    assert lab.estimator_.calibration == "fit"


def test_missing_texts_are_skipped_and_counted(make, df):
    with_nan = df.copy()
    with_nan.loc["r3", "text"] = np.nan
    with_nan.loc["r5", "text"] = None
    with pytest.warns(UserWarning, match=re.escape(
            "2 row(s) of column 'text' have no text; they are skipped")):
        lab = make(with_nan)
    assert lab.n_missing == 2
    assert {"r3", "r5"}.isdisjoint(lab.queue(n=10).index)
    predictions = lab.predictions
    assert predictions.loc["r3"].isna().all() and predictions.loc["r5"].isna().all()
    with pytest.raises(ValueError, match=r"^row 'r3' has no text to label$"):
        lab.answer("r3", "positive")


@pytest.mark.parametrize("build, error, message", [
    (lambda df: df.iloc[:0], ValueError, "the DataFrame has no rows"),
    (lambda df: df.assign(text=None), ValueError,
     "column 'text' has no texts (all 10 are missing)"),
    (lambda df: df.set_axis(["x"] * 10), ValueError,
     "the DataFrame's index has repeated values; answers are kept by index: use "
     "df.reset_index(drop=True)"),
    (lambda df: df["text"], TypeError, "data must be a pandas DataFrame; got Series"),
])
def test_bad_data(make, df, build, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        make(build(df))


def test_bad_column_labels_and_options(tiny_folder, df, tmp_path):
    with pytest.raises(KeyError, match=re.escape("column 'body' not found; columns are "
                                                 "text, truth")):
        Labeler(df, "body", LABELS, model=tiny_folder)
    with pytest.raises(ValueError, match=re.escape("labels must be unique; repeated: 'a'")):
        Labeler(df, "text", ["a", "a"], model=tiny_folder)
    with pytest.raises(ValueError, match=re.escape(
            "strategy must be one of margin, entropy, random; got 'least'")):
        Labeler(df, "text", LABELS, strategy="least")
    with pytest.raises(ValueError, match=re.escape("batch must be a positive integer; "
                                                   "got 0")):
        Labeler(df, "text", LABELS, batch=0)
    with pytest.raises(ValueError, match=re.escape(
            "examples= is not a Labeler option: the Labeler chooses the examples "
            "and the calibration from your answers")):
        Labeler(df, "text", LABELS, examples=[("a", "b")])


def test_accessor_and_session_model(ip, tiny_folder, df, tmp_path):
    ip.run_line_magic("nbllm", f"model {tiny_folder}")
    lab = df.llm.labeler("text", labels=LABELS, path=tmp_path / "a.json")
    assert isinstance(lab, nbllm.Labeler)
    assert lab.estimator_.model_name == tiny_folder  # the magics' session model
    with pytest.raises(KeyError, match="column 'nope' not found"):
        df.llm.labeler("nope", labels=LABELS)


# ------------------------------------------------------------------ the widget
def test_widget_cards_answer_skip_and_improve(make, df):
    lab = make(df.assign(text=[SCRIPT] + TEXTS[1:]), batch=3)
    widget = LabelerWidget(lab, threaded=False)
    assert lab._repr_mimebundle_() is not None
    cards = widget.cards.children
    assert len(cards) == 3
    html = "".join(c.children[0].value for c in widget.cards.children)
    assert SCRIPT not in html and "tex2jax_ignore" in widget._dom_classes
    first = cards[0]
    buttons = first.children[1].children
    assert [b.description for b in buttons] == ["1. negative", "2. positive", "Skip"]
    buttons[1].click()
    assert lab.answers.loc[first.row_index, "label"] == "positive"
    assert len(widget.cards.children) == 2
    assert widget.progress_line.value == "<b>1 / 10</b> answered"
    widget.cards.children[0].children[1].children[-1].click()  # Skip
    widget.cards.children[0].children[1].children[0].click()   # the last card: refill
    assert len(widget.cards.children) == 3
    widget.improve_button.click()
    assert widget.status.value == "improved from 2 answers"
    assert widget.progress.layout.display == "none"
    assert not widget.improve_button.disabled and widget.stop_button.disabled
    assert "random check" in widget.cards.children[2].children[0].value  # the 5th row
    for card in list(widget.cards.children):  # the checks counted too
        card.children[1].children[0].click()
    assert lab.report().checks >= 1
    widget.improve_button.click()
    assert "accuracy on new rows" in widget.progress_line.value
    headline = widget.progress_line.value
    # An answer or a Skip keeps the estimate on show until the next Improve.
    widget.cards.children[0].children[1].children[-1].click()
    assert "accuracy on new rows" in widget.progress_line.value
    assert widget.progress_line.value.split("answered", 1)[1] == \
        headline.split("answered", 1)[1]
    assert widget.plot.value.startswith('<svg class="nbllm-plot"')
    checked = [r for r in lab.rounds if r["check_accuracy"] is not None]
    assert svg_texts(widget.plot.value, "nbllm-value") == [
        f"{r['check_accuracy']:.0%}" for r in checked]


def test_widget_errors_are_one_escaped_line(make, df):
    lab = make(df)
    widget = LabelerWidget(lab, threaded=False)
    widget.improve_button.click()
    # In the widget's words: its user clicks cards and never calls queue().
    assert html.unescape(re.sub("<[^>]+>", "", widget.status.value)) == \
        "no answers yet: click a label on a card, then Improve"
    assert widget.status.value.startswith('<span class="nbllm-error"')
    assert not widget.improve_button.disabled


def test_copy_as_code_rebuilds_the_fitted_classifier(make, df, tiny_folder):
    lab = make(df)
    for idx in ["r0", "r1", "r4"]:
        lab.answer(idx, df.at[idx, "truth"])
    lab.improve()
    code = estimator_code(lab)
    namespace = {}
    exec(compile(code, "<labeler code>", "exec"), namespace)
    np.testing.assert_allclose(namespace["clf"].predict_proba(TEXTS),
                               lab.estimator_.predict_proba(TEXTS), atol=1e-9)
    widget = LabelerWidget(lab, threaded=False)
    widget.code_button.click()
    assert widget.code.code == code  # shown in a CodeBox, with its Copy button
    assert widget.code.title == "The fitted classifier, in Python"
    # Another answer and Improve: the snippet shown follows, without a click.
    lab.answer("r5", df.at["r5", "truth"])
    widget.improve_button.click()
    assert widget.status.value == "improved from 4 answers"
    assert widget.code.code == estimator_code(lab) != code
    assert "('the best day', 'positive')" in widget.code.code
    widget.code.show("", None)  # no snippet shown: Improve shows none
    widget.improve_button.click()
    assert widget.code.code is None


def test_save_as_shows_a_short_name_and_the_full_path_on_hover(make, df, tmp_path,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NBLLM_CACHE_DIR", str(tmp_path / "cache"))
    lab = make(df, path=None)
    assert not lab.path_given and lab.path.parent == tmp_path / "cache" / "labeler"
    for idx in ["r0", "r1"]:
        lab.answer(idx, df.at[idx, "truth"])
    lab.improve()
    widget = LabelerWidget(lab, threaded=False)
    assert widget.save_path.value == "labeler.classifier.json"  # not the hashed name
    assert widget.save_path.tooltip == f"saved to {tmp_path / 'labeler.classifier.json'}"
    widget.save_button.click()
    assert widget.status.value == (
        f"saved to {tmp_path / 'labeler.classifier.json'}; load it with "
        "ZeroShotClassifier.load(&#x27;labeler.classifier.json&#x27;)")
    assert nbllm.ZeroShotClassifier.load(tmp_path / "labeler.classifier.json").calibration \
        == "fit"
    widget.save_path.value = "sub/x.json"
    assert widget.save_path.tooltip == f"saved to {tmp_path / 'sub' / 'x.json'}"
    named = LabelerWidget(make(df), threaded=False)  # beside a named answers file
    assert named.save_path.value == str(tmp_path / "answers.classifier.json")


def svg_texts(svg, cls):
    import xml.etree.ElementTree as ET

    root = ET.fromstring(svg)
    return [e.text for e in root.iter("{http://www.w3.org/2000/svg}text")
            if e.get("class") == cls]


def test_accuracy_plot_has_axes_ticks_from_the_data_values_and_a_title():
    assert accuracy_plot([]) == ""
    rounds = [{"answers": 5, "check_accuracy": 0.712, "low": 0.65, "high": 0.77},
              {"answers": 10, "check_accuracy": 0.804, "low": 0.75, "high": 0.85},
              {"answers": 20, "check_accuracy": 0.867, "low": 0.8, "high": 0.9}]
    svg = accuracy_plot(rounds, start=0.74)
    assert svg_texts(svg, "nbllm-plot-title") == [
        "Accuracy on new rows (random checks)"]
    assert svg_texts(svg, "nbllm-xtick") == ["5", "10", "20"]
    assert svg_texts(svg, "nbllm-value") == ["71%", "80%", "87%"]
    assert svg_texts(svg, "nbllm-ytick") == ["60%", "70%", "80%", "90%", "100%"]
    assert svg_texts(svg, "nbllm-start-label") == ["zero-shot start 74%"]
    assert svg.count("<polyline") == 1 and svg.count('class="nbllm-interval"') == 3
    # The start's label sits above its line, clear of it (11px text).
    import xml.etree.ElementTree as ET
    root = ET.fromstring(svg)
    line = next(e for e in root.iter() if e.get("class") == "nbllm-start")
    label = next(e for e in root.iter() if e.get("class") == "nbllm-start-label")
    assert float(label.get("y")) <= float(line.get("y1")) - 4
    top = accuracy_plot([{"answers": 5, "check_accuracy": 1.0, "low": 0.3, "high": 1.0}])
    value = next(e for e in ET.fromstring(top).iter() if e.get("class") == "nbllm-value")
    assert float(value.get("y")) > 40  # written below a point at 100%, clear of the title
    one = accuracy_plot(rounds[:1])  # one round: one point, still a plot
    assert svg_texts(one, "nbllm-xtick") == ["5"] and "<polyline" not in one
    many = [{"answers": 5 * k, "check_accuracy": 0.3 + 0.02 * k} for k in range(1, 31)]
    ticks = svg_texts(accuracy_plot(many), "nbllm-xtick")
    assert len(ticks) <= 9 and ticks[0] == "5" and ticks[-1] == "150"
    assert svg_texts(accuracy_plot(many), "nbllm-ytick")[0] == "20%"


def test_creating_a_labeler_loads_no_model_and_the_first_scoring_says_so(make, df,
                                                                         monkeypatch):
    from nbllm.engine.loading import models
    from nbllm.engine import status as engine_status

    loads = []
    real = models._new_entry
    monkeypatch.setattr(models, "_new_entry",
                        lambda *a, **k: loads.append(a[0]) or real(*a, **k))
    models.clear_registry()  # so that a load would show
    lab = make(df)
    assert loads == [] and not lab.scored
    seen = []
    with engine_status.listening(seen.append):
        lab.queue()
    assert seen[-1] == "scoring 10 / 10 texts\u2026"
    assert "scoring 0 / 10 texts\u2026" in seen
    assert lab.scored


def test_widget_shows_its_status_before_the_work_and_the_calibrated_note(make, df):
    lab = make(df)
    seen = []

    class Recording(LabelerWidget):
        def show_status(self, message):
            seen.append(message)
            super().show_status(message)

    widget = Recording(lab, threaded=False)
    assert seen[0].startswith(("loading ", "scoring 10 texts"))
    assert "scoring 10 / 10 texts\u2026" in seen and seen[-1] == ""
    assert widget.status_line.value == "" and len(widget.cards.children) == lab.batch
    assert "calibrated for these labels" in widget.note.value
    assert "df.llm.classify" in widget.note.value
    for idx in ["r0", "r1", "r4"]:
        lab.answer(idx, df.at[idx, "truth"])
    seen.clear()
    widget.improve_button.click()
    assert seen[0] == "improving\u2026"
    assert "fitting the calibration to 3 answers\u2026" in seen
    assert widget.plot.value == ""  # no random check answered yet: nothing measured


def test_checks_are_recorded_held_out_of_the_fit_and_old_files_read(make, df, tmp_path):
    lab = make(df, batch=5)
    queue = lab.queue()
    check = queue.index[queue["check"]].tolist()
    assert len(check) == 1  # the 5th place: a row drawn at random
    for idx in queue.index:
        lab.answer(idx, df.at[idx, "truth"])
    saved = json.loads((tmp_path / "answers.json").read_text())
    assert saved["version"] == 2
    assert [a["index"] for a in saved["answers"] if a["check"]] == check
    lab.improve()
    # The fit saw the four other answers only; the check judges it.
    assert sorted(lab.estimator_._fit_inputs[0]) == sorted(
        df.loc[[i for i in queue.index if i not in check], "text"])
    report = lab.report()
    right = int(lab.predictions.at[check[0], "label"] == df.at[check[0], "truth"])
    assert (report.checks, report.check_accuracy) == (1, right)
    assert report.check_interval == pytest.approx(wilson(right, 1))
    # A version-1 file (before the checks) reads: its answers train.
    old = {"version": 1, "column": "text", "labels": LABELS, "skipped": [],
           "answers": [{"position": 0, "index": "r0", "text": TEXTS[0],
                        "label": "positive"}]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    again = make(df, path=tmp_path / "old.json")
    assert again.answers.index.tolist() == ["r0"] and again._checks == set()


def test_wilson_interval_covers_the_true_accuracy_at_its_stated_rate():
    """Many simulated labelling runs: a column of 1,000 rows of fixed
    correctness (the truth: the classifier's accuracy on rows like these), a
    margin-like queue that prefers the wrong rows, and the Labeler's own
    check mixing.  The 95% interval of the checks must cover the truth in
    about 95% of runs."""
    rng = np.random.default_rng(0)
    covered, runs, n = 0, 400, 1000
    for _ in range(runs):
        correct = rng.random(n) < rng.uniform(0.6, 0.9)
        unsure = rng.random(n) + np.where(correct, 0.0, 0.5)  # wrong rows look unsure
        order_all = list(np.argsort(-unsure))
        answered, checks = set(), []
        while len(answered) < 100:
            order = [i for i in order_all[:200] if i not in answered]
            open_rows = [i for i in range(n) if i not in answered]
            queued, drawn = mix_checks(order, open_rows, 10, rng, done=len(answered))
            answered.update(queued)
            checks += sorted(drawn)
        assert len(checks) == 20
        low, high = wilson(int(correct[checks].sum()), len(checks))
        covered += low <= correct.mean() <= high
    assert 0.91 <= covered / runs <= 0.985
    assert wilson(0, 0) == (None, None)
    assert wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)


@pytest.fixture
def big_df():
    words = ["good", "bad", "fine", "awful", "great", "poor", "nice", "sad"]
    texts = [f"{words[i % 8]} day number {i}" for i in range(28)]
    truth = ["positive" if i % 8 in (0, 2, 4, 6) else "negative" for i in range(28)]
    return pd.DataFrame({"text": texts, "truth": truth})


def test_improve_chooses_by_cross_validation_and_the_choice_is_kept_everywhere(
        make, big_df, tmp_path):
    from nbllm import FewShotClassifier, ZeroShotClassifier
    from nbllm.notebook.labeler.choice import MIN_ANSWERS, candidate_prompts

    lab = make(big_df)
    for idx in big_df.index[:MIN_ANSWERS]:
        lab.answer(idx, big_df.at[idx, "truth"])  # not queued: no checks
    lab.improve()
    chosen = lab.choice_
    assert chosen is not None and len(chosen.hits) == MIN_ANSWERS
    names = [name for name, _ in candidate_prompts(LABELS)]
    assert chosen.prompt_name in names
    assert chosen.calibration in (None, "content_free", "fit")
    clf = lab.estimator_
    assert isinstance(clf, FewShotClassifier if chosen.examples else ZeroShotClassifier)
    assert clf.calibration == chosen.calibration
    report = lab.report()
    assert report.choice == chosen.summary()
    assert re.fullmatch(r".+: \d\.\d\d \u00b1 \d\.\d\d on your 20 answers", report.choice)
    # The predictions are the chosen classifier's, on every row.
    np.testing.assert_allclose(
        lab.predictions[["proba_negative", "proba_positive"]].to_numpy(),
        clf.predict_proba(big_df["text"].tolist()), atol=1e-9)
    # Copy as code and save/load rebuild it.
    namespace = {}
    exec(compile(estimator_code(lab), "<labeler code>", "exec"), namespace)
    np.testing.assert_allclose(namespace["clf"].predict_proba(TEXTS),
                               clf.predict_proba(TEXTS), atol=1e-9)


def test_the_few_shot_choice_is_copied_as_code_and_saved(make, big_df, tmp_path,
                                                          monkeypatch):
    from nbllm import FewShotClassifier
    from nbllm.notebook.labeler import choice

    # Only the few-shot candidates can win here: the zero-shot ones score nothing.
    real = choice.cv_hits
    monkeypatch.setattr(choice, "cv_hits", lambda lp, y, *a: real(lp, y, *a)
                        if lp.shape[0] and lab._few_shot_scoring else np.zeros(len(y), bool))
    lab = make(big_df)
    lab._few_shot_scoring = False
    original = lab._few_shot

    def few_shot(*args):
        lab._few_shot_scoring = True
        return original(*args)

    lab._few_shot = few_shot
    for idx in big_df.index[:choice.MIN_ANSWERS]:
        lab.answer(idx, big_df.at[idx, "truth"])
    lab.improve()
    clf = lab.estimator_
    assert isinstance(clf, FewShotClassifier) and lab.choice_.examples == choice.EXAMPLES
    assert "with 5 examples" in lab.report().choice
    namespace = {}
    code = estimator_code(lab)
    assert "FewShotClassifier(" in code and "example_selection='grouped'" in code
    exec(compile(code, "<labeler code>", "exec"), namespace)
    np.testing.assert_allclose(namespace["clf"].predict_proba(TEXTS),
                               clf.predict_proba(TEXTS), atol=1e-9)
    path = tmp_path / "chosen.json"
    clf.save(path)
    np.testing.assert_allclose(FewShotClassifier.load(path).predict_proba(TEXTS),
                               clf.predict_proba(TEXTS), atol=1e-9)


def test_candidate_prompts_name_the_task_from_the_labels_alone():
    from nbllm.notebook.labeler.choice import candidate_prompts, few_shot_prompt, task_name

    assert task_name(["negative", "positive"]) == "sentiment"
    assert task_name(["Joy", "anger", "fear", "other"]) == "emotion"
    assert task_name(["sports", "politics"]) == "category"
    prompts = dict(candidate_prompts(["negative", "positive"], user_prompt="Mine: {text}"))
    assert list(prompts) == ["your prompt", "prompt A", "prompt B", "the default prompt",
                             "prompt C"]
    assert prompts["prompt A"] == "Categories: {labels}\n\nText: {text}\nSentiment: "
    assert prompts["prompt C"].startswith("Is this text negative or positive?")
    # Braces in a label are literal, not placeholders.
    assert "{{x}} or y" in dict(candidate_prompts(["{x}", "y"]))["prompt C"]
    assert few_shot_prompt(prompts["prompt A"]) == (
        "Categories: {labels}\n\n{examples}\n\nText: {text}\nSentiment: ")
    assert few_shot_prompt("Mine: {text}") is None


def test_choose_keeps_the_first_candidate_unless_a_paired_test_says_otherwise():
    from nbllm.notebook.labeler.choice import Candidate, choose

    def made(name, right):
        return Candidate(name, hits=np.asarray(right, dtype=bool))

    first = made("a", [1] * 17 + [0] * 15)           # 17 / 32
    near = made("b", [0] * 4 + [1] * 21 + [0] * 7)   # 21 / 32: +8 rows, -4: noise
    assert choose([first, near]) is first
    clearly = made("c", [1] * 30 + [0] * 2)          # +13 rows, -0
    assert choose([first, near, clearly]) is clearly
    assert clearly.summary() == "c, calibration fitted: 0.94 \u00b1 0.04 on your 32 answers"


def test_a_rescoring_round_shows_its_first_queue_before_the_rest(make, big_df,
                                                                   monkeypatch):
    from nbllm.notebook.labeler import choice, labeler as labeler_module

    monkeypatch.setattr(labeler_module, "FRONT", 1)
    lab = make(big_df, batch=3)
    for idx in big_df.index[:choice.MIN_ANSWERS]:
        lab.answer(idx, big_df.at[idx, "truth"])
    # Only prompt A can win: the others score no hit.
    real = choice.cv_hits
    monkeypatch.setattr(choice, "cv_hits", lambda lp, y, calibration, ref, folds:
                        real(lp, y, calibration, ref, folds) if calibration == "fit"
                        and lab._scoring_prompt == "prompt A" else np.zeros(len(y), bool))
    original = choice.candidate_prompts

    def named(*args):
        for name, template in original(*args):
            lab._scoring_prompt = name
            yield name, template
    monkeypatch.setattr(choice, "candidate_prompts", named)
    seen = []

    def first_queue():
        waiting = [p for p in range(len(big_df)) if lab._waiting(p)]
        queue = lab.queue()
        seen.append((len(waiting), queue))
        lab.answer(queue.index[0], big_df.at[queue.index[0], "truth"])  # meanwhile

    lab.improve(on_queue=first_queue)
    assert lab.choice_.prompt_name == "prompt A"
    (waiting, queue), = seen
    open_rows = len(big_df) - choice.MIN_ANSWERS
    assert 0 < waiting < open_rows  # shown before every row was rescored
    positions = [big_df.index.get_loc(i) for i in queue.index]
    assert not any(np.isnan(lab._fitted_logprobs[p]).any() for p in positions)
    assert not any(lab._waiting(p) for p in range(len(big_df)))  # then all rescored
    assert len(lab.answers) == choice.MIN_ANSWERS + 1  # the answer given meanwhile
    np.testing.assert_allclose(
        lab.predictions[["proba_negative", "proba_positive"]].to_numpy(),
        lab.estimator_.predict_proba(big_df["text"].tolist()), atol=1e-9)
