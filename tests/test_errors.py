"""One error policy, one stop mechanism, one typed session, one word per way in.

User errors are :class:`nbllm.UserError`s (each also its built-in type),
raised at the entry of each way in with a short traceback and a one- or
two-line message; the magics turn exactly those into ``UsageError``.
"""

import re
import threading
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError

import nbllm
from nbllm import exceptions, options
from nbllm.exceptions import ColumnError, LabelsError, UserError
from nbllm.notebook import classify as api
from nbllm.notebook.session import Session, session
from nbllm.notebook.stopping import Stopped, stoppable

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")

PACKAGE = Path(nbllm.__file__).parent
TEXTS = ["I love it.", "The train was late again this morning.", "ok"]
CELL = "\n".join(TEXTS)


def nbllm_frames(exc):
    """The frames of nbllm's own code in the exception's traceback."""
    return [frame for frame in traceback.extract_tb(exc.__traceback__)
            if Path(frame.filename).is_relative_to(PACKAGE)]


# ------------------------------------------------------------------ the classes
@pytest.mark.parametrize("cls, builtin", [
    (exceptions.InputError, ValueError),
    (exceptions.OptionError, ValueError),
    (exceptions.LabelsError, ValueError),
    (exceptions.ExamplesError, ValueError),
    (exceptions.PromptError, ValueError),
    (exceptions.TextsError, ValueError),
    (exceptions.ModelError, ValueError),
    (exceptions.FileFormatError, ValueError),
    (exceptions.LowProbabilityError, ValueError),
    (exceptions.InputTypeError, TypeError),
    (exceptions.ColumnError, KeyError),
    (exceptions.ModelFileNotFoundError, FileNotFoundError),
    (exceptions.MissingDependencyError, ImportError),
])
def test_every_user_error_is_also_its_builtin_type(cls, builtin):
    assert issubclass(cls, UserError) and issubclass(cls, builtin)
    with pytest.raises(builtin, match="^went wrong$"):
        raise cls("went wrong")


def test_a_column_error_shows_its_message_without_quotes():
    assert str(ColumnError("column 'x' not found")) == "column 'x' not found"


def test_user_error_is_exported_from_nbllm():
    assert nbllm.UserError is UserError and "UserError" in nbllm.__all__


# ------------------------------------------------------------ checked at the entry
FRAME = pd.DataFrame({"text": TEXTS, "other": [1, 2, 3]})
COLUMNS = "column 'nope' not found; columns are 'text', 'other'"
BAD_CALLS = [
    (dict(labels=[]), LabelsError, "labels must contain at least one label; got none"),
    (dict(labels="ab"), LabelsError,
     "labels must be a list of strings, got the single string 'ab'"),
    (dict(labels=["a", "a"]), LabelsError, "labels must be unique; repeated: 'a'"),
    (dict(labels=["a", "b"], truncation="top"), exceptions.OptionError,
     "truncation must be 'right', 'left', 'middle' or 'error'; got 'top'"),
    (dict(labels=["a", "b"], batch_size=0), exceptions.OptionError,
     "batch_size must be 'auto' or a positive integer; got 0"),
    (dict(labels=["a", "b"], raw=True, calibration="content_free"), exceptions.OptionError,
     "calibration='content_free' gives normalised probabilities; it cannot be combined "
     "with raw=True"),
    (dict(labels=["a"], examples=[("good", "a"), ("bad", "b")]), exceptions.ExamplesError,
     "examples use label(s) not in labels: 'b'"),
    (dict(labels=["a", "b"], examples=3), exceptions.ExamplesError,
     "examples must be a DataFrame with text and label columns or a non-empty list of "
     "(text, label) pairs"),
    (dict(labels=["a", "b"], colour="red"), exceptions.InputTypeError,
     "unexpected option(s) 'colour'; options are "),
]


def _raised(call):
    with pytest.raises(UserError) as info:
        call()
    return info.value


def _check(exc, cls, message):
    assert type(exc) is cls
    assert re.match(f"^{re.escape(message)}", str(exc)), str(exc)
    if cls is not exceptions.InputTypeError:
        assert str(exc) == message
    assert len(str(exc).splitlines()) <= 2
    frames = nbllm_frames(exc)
    assert len(frames) <= 2, traceback.format_list(frames)


@pytest.mark.parametrize("kwargs, cls, message", BAD_CALLS)
def test_bad_input_to_df_llm_classify_stops_at_the_entry(tiny_folder, kwargs, cls,
                                                          message):
    _check(_raised(lambda: FRAME.llm.classify("text", model=tiny_folder, **kwargs)),
           cls, message)


@pytest.mark.parametrize("kwargs, cls, message", BAD_CALLS)
def test_bad_input_to_series_llm_classify_stops_at_the_entry(tiny_folder, kwargs, cls,
                                                              message):
    _check(_raised(lambda: FRAME["text"].llm.classify(model=tiny_folder, **kwargs)),
           cls, message)


@pytest.mark.parametrize("kwargs, cls, message", BAD_CALLS)
def test_bad_input_to_nbllm_classify_stops_at_the_entry(tiny_folder, kwargs, cls,
                                                        message):
    _check(_raised(lambda: nbllm.classify(TEXTS, model=tiny_folder, **kwargs)),
           cls, message)


def test_a_missing_column_stops_at_the_entry():
    exc = _raised(lambda: FRAME.llm.classify("nope", ["a", "b"]))
    _check(exc, ColumnError, COLUMNS)
    assert isinstance(exc, KeyError)


def test_a_single_string_as_texts_stops_at_the_entry():
    exc = _raised(lambda: nbllm.classify("one text", ["a", "b"]))
    _check(exc, exceptions.TextsError,
           "texts must be a list-like of texts, got a single string; wrap it in a list: "
           "[text]")


def test_missing_texts_stop_at_the_entry_unless_skipped(tiny_folder):
    texts = ["a", None, "b", float("nan")]
    exc = _raised(lambda: nbllm.classify(texts, ["a", "b"], model=tiny_folder))
    _check(exc, exceptions.TextsError,
           "texts contain 2 missing value(s) (None or NaN) at position(s) 1, 3; drop or "
           "fill them, or pass skip_missing=True")
    with pytest.warns(UserWarning, match="2 missing text"):
        result = nbllm.classify(iter(texts), ["a", "b"], model=tiny_folder,
                                skip_missing=True, progress=False)
    assert np.isnan(result.probas[[1, 3]]).all() and not np.isnan(result.probas[[0, 2]]).any()


def test_bad_input_loads_no_model(monkeypatch):
    from nbllm.engine.loading import models

    def never(*args, **kwargs):
        raise AssertionError("a model was loaded for a call with bad input")

    monkeypatch.setattr(models, "_load", never)
    for kwargs, cls, _ in BAD_CALLS:
        with pytest.raises(cls):
            FRAME.llm.classify("text", model="somewhere/else", **kwargs)


# ------------------------------------------------------------------ the magics
def test_magic_turns_a_user_error_into_one_line(ip, tiny_folder, capsys):
    res = ip.run_cell(f"%%zeroshot --labels a,b --model {tiny_folder} --truncation left\n"
                      f"{CELL}")
    assert res.success
    message = "--multi-label gives each label its own yes/no probability; --raw and " \
              "--calibration do not apply"
    with pytest.raises(UsageError, match=f"^{re.escape(message)}$"):
        ip.run_cell_magic("zeroshot", f"--labels a,b --model {tiny_folder} --multi-label "
                                      "--raw", CELL)


def test_magic_names_labels_errors_by_class_not_by_message_text(ip, monkeypatch):
    def fail(*args, **kwargs):
        raise LabelsError("these are not labels")

    monkeypatch.setattr(api, "classify", fail)
    with pytest.raises(UsageError, match=f"^{re.escape('--labels: these are not labels')}$"):
        ip.run_cell_magic("zeroshot", "--labels a,b", CELL)


@pytest.mark.parametrize("bug", [ValueError("labels broken"), TypeError("a bug"),
                                 FileNotFoundError("a bug"), ImportError("a bug")])
def test_magic_keeps_the_traceback_of_anything_else(ip, monkeypatch, bug):
    def fail(*args, **kwargs):
        raise bug

    monkeypatch.setattr(api, "classify", fail)
    with pytest.raises(type(bug)) as info:
        ip.run_cell_magic("zeroshot", "--labels a,b", CELL)
    assert info.value is bug and not isinstance(info.value, UsageError)
    res = ip.run_cell(f"%%zeroshot --labels a,b\n{CELL}")
    assert res.error_in_exec is bug


def test_no_error_is_routed_by_its_message_text():
    """The magics tell user errors from bugs by class alone."""
    source = (PACKAGE / "notebook" / "magics.py").read_text()
    assert "str(exc).startswith" not in source
    assert "except (ValueError, TypeError, ImportError, FileNotFoundError)" not in source


# ------------------------------------------------------------------ one word per way in
def test_raw_probabilities_have_one_declaration_and_a_word_per_way_in():
    raw = options.PROBAS_SUM_TO_1
    words = {way: raw.setting_in(way, False)
             for way in (options.ESTIMATOR, options.PYTHON, options.MAGIC, options.PANEL)}
    assert words == {options.ESTIMATOR: "probas_sum_to_1=False",
                     options.PYTHON: "raw=True", options.MAGIC: "--raw",
                     options.PANEL: "'raw probabilities'"}
    # No hidden state says which way in the user came through.
    assert not hasattr(options, "way_in") and not hasattr(options, "current_way_in")


def test_an_error_naming_two_options_carries_them_and_each_way_words_it():
    with pytest.raises(exceptions.OptionError) as info:
        options.check_calibration_with_probas("batch", False)
    exc = info.value
    assert exc.option == "calibration"
    assert exc.named == {"calibration": "batch", "probas_sum_to_1": False}
    assert str(exc) == ("calibration='batch' gives normalised probabilities; it cannot be "
                        "combined with probas_sum_to_1=False")
    worded = {way: str(options.in_words(exc, way))
              for way in (options.PYTHON, options.MAGIC, options.PANEL)}
    assert worded == {
        options.PYTHON: "calibration='batch' gives normalised probabilities; it cannot be "
                        "combined with raw=True",
        options.MAGIC: "--calibration batch gives normalised probabilities; it cannot be "
                       "combined with --raw",
        options.PANEL: "calibration='batch' gives normalised probabilities; it cannot be "
                       "combined with 'raw probabilities'",
    }
    shown = options.in_words(exc, options.MAGIC)
    assert type(shown) is type(exc) and shown.named == exc.named and shown is not exc
    assert options.in_words(exc, options.ESTIMATOR) is exc


def test_an_option_check_names_its_option_in_each_way():
    with pytest.raises(exceptions.OptionError) as info:
        options.THRESHOLD_LOW_PROB.check(2)
    exc = info.value
    assert str(exc) == "threshold_low_prob must be between 0 and 1, got 2 instead"
    assert str(options.in_words(exc, options.PYTHON)) == \
        "threshold must be between 0 and 1, got 2 instead"
    assert str(options.in_words(exc, options.PANEL)) == \
        "'threshold' must be between 0 and 1, got 2 instead"


def test_magic_raw_calibration_clash_speaks_the_magics_words(ip, tiny_folder):
    message = ("--calibration content_free gives normalised probabilities; it cannot be "
               "combined with --raw")
    with pytest.raises(UsageError, match=f"^{re.escape(message)}$"):
        ip.run_cell_magic("zeroshot", f"--labels a,b --model {tiny_folder} --raw "
                                      "--calibration content_free", CELL)


# ------------------------------------------------------------------ the session
def test_session_is_typed_and_resets(ip, tiny_folder, tmp_path):
    assert session == Session()
    ip.run_line_magic("nbllm", f"model {tiny_folder}")
    ip.run_line_magic("nbllm", f"cache {tmp_path}")
    assert (session.model, session.cache_dir) == (tiny_folder, str(tmp_path))
    with pytest.raises(AttributeError, match="Session has no setting 'modle'"):
        session.modle = "x"
    result = ip.run_cell_magic("zeroshot", "--labels a,b", CELL)  # the session's model
    assert result.estimator.model_name == tiny_folder
    ip.run_cell_magic("zeroshot", "--labels a,b", CELL)
    entries, hits, misses = session.cache_counters
    assert entries == 3 and hits >= 3
    session.reset()
    assert session == Session() and session.cache_counters == (0, 0, 0)


# ------------------------------------------------------------------ one stop
def test_stoppable_keeps_the_batch_then_stops():
    seen, stop = [], threading.Event()
    on_rows = stoppable(lambda rows, values: seen.append(rows), stop)
    on_rows([0], None)
    stop.set()
    with pytest.raises(Stopped):
        on_rows([1], None)
    assert seen == [[0], [1]]
    assert stoppable(None, None) is None
    assert issubclass(Stopped, KeyboardInterrupt)


def test_classify_stops_after_the_batch_in_progress(tiny_folder):
    stop = threading.Event()
    batches = []

    def on_rows(rows, values):
        batches.append(list(rows))
        stop.set()  # a Stop clicked while the first batch runs

    result = nbllm.classify(TEXTS, ["a", "b"], model=tiny_folder, batch_size=1,
                            on_rows=on_rows, stop=stop, progress=False)
    assert result.stopped and len(batches) == 1
    assert result.pending.sum() == len(TEXTS) - 1
    assert np.isnan(result.probas[result.pending]).all()


def test_the_labeler_stops_with_the_same_exception(tiny_folder, tmp_path):
    frame = pd.DataFrame({"text": TEXTS})
    labeler = frame.llm.labeler("text", ["a", "b"], model=tiny_folder,
                                path=tmp_path / "answers.json")
    labeler.answer(0, "a")
    labeler._logprobs = None  # nothing scored yet: improve has to score
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        labeler.improve(stop=stop)
    assert labeler.answers.index.tolist() == [0]


@pytest.mark.parametrize("kwargs, cls, message", BAD_CALLS)
def test_bad_input_to_ddf_llm_classify_stops_at_the_entry(tiny_folder, kwargs, cls,
                                                           message):
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(FRAME, npartitions=1)
    _check(_raised(lambda: ddf.llm.classify("text", model=tiny_folder, **kwargs)),
           cls, message)
    _check(_raised(lambda: ddf.llm.classify("nope", ["a", "b"])), ColumnError, COLUMNS)


def test_the_labeler_widget_says_stopped(tiny_folder, tmp_path):
    class AlreadyStopped(threading.Event):
        """A Stop clicked before the run checks (clear() cannot undo it)."""

        def clear(self):
            self.set()

    frame = pd.DataFrame({"text": TEXTS})
    labeler = frame.llm.labeler("text", ["a", "b"], model=tiny_folder,
                                path=tmp_path / "answers.json")
    labeler.answer(0, "a")
    widget = labeler.widget
    widget.wait()  # its first scoring runs in a thread
    widget.threaded = False
    labeler._logprobs = None  # the cards scored the column: make Improve score it
    widget._stop = AlreadyStopped()
    widget.improve_button.click()
    assert widget.status.value == ("stopped: every answer and every row scored so far "
                                   "is kept; press Improve to go on")
    assert not widget.improve_button.disabled and widget.stop_button.disabled
