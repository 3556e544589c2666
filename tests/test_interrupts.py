"""Stop and KeyboardInterrupt mid-run: finished batches stay cached, the rerun
resumes, the model stays usable.
"""


import pickle

import numpy as np
import pytest

import nbllm  # noqa: F401  (registers the df.llm accessor)
from nbllm.estimators import multi_label as multilabel
from nbllm.notebook import classify as api
from nbllm.engine.scoring.result_cache import result_cache
from nbllm.notebook.stopping import Interrupted
from entry_points import (  # noqa: F401  (fixtures among them)
    LABELS,
    assert_idle,
    error_line,
    fitted,
    from_folder,
    make_panel,
    messages_of,
    zero,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")


def _stop_after(n_calls):
    """An on_rows callback that raises KeyboardInterrupt on its n-th call.

    ``done`` holds the rows of every call, that one included: a batch is put
    in the cache before it is reported."""
    done = []

    def on_rows(rows, values):
        done.append(len(rows))
        if len(done) == n_calls:
            raise KeyboardInterrupt

    on_rows.done = done
    return on_rows


def assert_model_usable(clf):
    import torch

    assert clf.model_.training is False
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


INTERRUPT_TEXTS = ["I love it.", "The train was late again.", "ok", "What a surprise!",
                   "The package arrived damaged."]


@pytest.mark.parametrize("kind", ["zero", "few", "multi"])
def test_interrupt_in_on_rows_keeps_finished_batches(kind, monkeypatch):
    monkeypatch.setattr(multilabel, "_STEP", 1)
    expected = fitted(kind, use_caching=False).predict_proba(INTERRUPT_TEXTS)
    clf = fitted(kind, batch_size=1)
    stop = _stop_after(3)
    with pytest.raises(KeyboardInterrupt):
        clf.label_scores(INTERRUPT_TEXTS, on_rows=stop)  # every kind's streaming method
    assert stop.done == [1, 1, 1]
    assert_model_usable(clf)
    again = fitted(kind, batch_size=1)
    np.testing.assert_allclose(again.predict_proba(INTERRUPT_TEXTS), expected, rtol=1e-5)
    per_row = len(again.classes_) if kind == "multi" else 1  # one question per label
    assert again.n_cache_hits_ == 3 * per_row
    assert again.n_cache_misses_ == 2 * per_row
    # Recomputed from scratch, the model still gives the same numbers.
    fresh = fitted(kind, use_caching=False).predict_proba(INTERRUPT_TEXTS)
    np.testing.assert_allclose(fresh, expected, rtol=1e-12)


def test_interrupt_in_api_classify_on_rows_keeps_finished_batches():
    expected = zero(use_caching=False).fit(None, LABELS).predict_proba(INTERRUPT_TEXTS)
    clf = zero(batch_size=2).fit(None, LABELS)
    stop = _stop_after(2)
    with pytest.raises(KeyboardInterrupt) as raised:  # still one: a script stops
        api.classify(INTERRUPT_TEXTS, estimator=clf, on_rows=stop)
    assert stop.done == [2, 2]
    message = ("stopped: 4 of 5 texts classified. The finished texts are in the result "
               "cache: run the same call again to resume (only the 1 left are scored).")
    assert isinstance(raised.value, Interrupted) and str(raised.value) == message
    assert (raised.value.done, raised.value.total) == (4, 5)
    # IPython shows this one line instead of the traceback.
    assert raised.value._render_traceback_() == [f"KeyboardInterrupt: {message}"]
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert str(pickle.loads(pickle.dumps(raised.value))) == message
    assert_model_usable(clf)
    result = api.classify(INTERRUPT_TEXTS, estimator=zero(batch_size=2).fit(None, LABELS))
    assert result.estimator.n_cache_hits_ == 4
    np.testing.assert_allclose(result.probas, expected, rtol=1e-5)


@pytest.mark.parametrize("at_call, n_finished", [(1, 0), (3, 1)],
                         ids=["in-the-prefix-pass", "in-the-second-batch"])
def test_interrupt_inside_a_forward_pass(at_call, n_finished):
    """A Stop that lands in the model itself: in the prefix pass or a batch."""
    expected = zero(use_caching=False).fit(None, LABELS).predict_proba(INTERRUPT_TEXTS)
    clf = zero(batch_size=1).fit(None, LABELS)
    clf.loaded_.state.get("prefix_kv", {}).clear()
    calls, finished = [], []

    def hook(module, args, kwargs):
        calls.append(1)
        if len(calls) == at_call:
            raise KeyboardInterrupt

    handle = clf.model_.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with pytest.raises(KeyboardInterrupt):
            clf.label_logprobs(INTERRUPT_TEXTS,
                                on_rows=lambda rows, values: finished.extend(rows))
    finally:
        handle.remove()
    assert len(finished) == n_finished  # the prefix pass, then one text per batch
    assert_model_usable(clf)
    again = zero(batch_size=1).fit(None, LABELS)
    np.testing.assert_allclose(again.predict_proba(INTERRUPT_TEXTS), expected, rtol=1e-5)
    assert again.n_cache_hits_ == len(finished)
    np.testing.assert_allclose(
        zero(use_caching=False).fit(None, LABELS).predict_proba(INTERRUPT_TEXTS),
        expected, rtol=1e-12)


def test_interrupt_in_the_panel_keeps_it_usable_and_the_finished_rows(tiny_folder,
                                                                     monkeypatch):
    real = api.build_estimator
    monkeypatch.setattr(api, "build_estimator",
                        lambda *a, **k: real(*a, **dict(k, batch_size=1)))
    panel = make_panel(tiny_folder, texts=INTERRUPT_TEXTS)

    def interrupt(change):
        if change["new"] == 2:
            raise KeyboardInterrupt

    panel.progress.observe(interrupt, "value")
    panel.classify_button.click()
    assert isinstance(panel.last_error, KeyboardInterrupt)
    assert error_line(panel) == (
        "Interrupted: stopped: 2 of 5 texts classified. The finished texts are in the "
        "result cache: run the same call again to resume (only the 3 left are scored).")
    assert_idle(panel)
    panel.progress.unobserve(interrupt, "value")
    hits = result_cache.hits
    panel.classify_button.click()
    assert panel.last_error is None, panel.last_error
    assert panel.status.value == "5 texts classified"
    assert result_cache.hits - hits == 2
    np.testing.assert_allclose(panel.last_result.probas,
                               from_folder(tiny_folder).predict_proba(INTERRUPT_TEXTS),
                               rtol=0, atol=1e-9)
    assert_idle(panel)


def test_lone_surrogates_are_replaced_with_a_warning():
    # Found by the fuzzer: tokenizers raise a TypeError on such strings.
    clf = fitted("zero")
    probas, messages = messages_of(clf.predict_proba, ["ok \ud800 fine", "plain"])
    assert messages == ["1 text(s) contain invalid Unicode (lone surrogates); those "
                        "characters were replaced with U+FFFD"]
    np.testing.assert_allclose(probas[0], clf.predict_proba(["ok \ufffd fine"])[0], rtol=1e-6)
