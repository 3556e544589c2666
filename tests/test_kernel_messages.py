"""What a Jupyter front end receives, in order, from a real ipykernel (iopub).

The Labeler's status line must reach the front end before the model loads
and before the first batch is scored; a single label's warning must come
before the model runs, as one line without a temporary file name or source
line.  The kernel marks the model load and the start of scoring by printing
(flushed at once, so a stream message sits where the event happened); the
test checks the order of the messages, not their timing.
"""

import json
import os
import queue
import re

import pytest

TEXTS = ["I love it", "I hate it", "fine I guess", "great stuff", "awful service",
         "the best day", "never again", "so so"]

MARKERS = """
from nbllm.engine.loading import models
from nbllm.engine.scoring import scorer
_new_entry, _score = models._new_entry, scorer.LabelScorer.score
def _marked_load(*args, **kwargs):
    print("MARK model load", flush=True)
    return _new_entry(*args, **kwargs)
def _marked_score(self, *args, **kwargs):
    print("MARK scoring starts", flush=True)
    return _score(self, *args, **kwargs)
models._new_entry, scorer.LabelScorer.score = _marked_load, _marked_score
"""


class Kernel:
    """A real ipykernel; :meth:`run` returns every iopub message of a cell."""

    def __init__(self, cwd, env):
        from jupyter_client.manager import KernelManager

        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(cwd), env=env)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)

    def run(self, code, timeout=180):
        msg_id = self.client.execute(code)
        messages = []
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no kernel message for {timeout} s; so far: {messages[-5:]}")
            messages.append(msg)
            if (msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"
                    and msg["parent_header"].get("msg_id") == msg_id):
                break
        errors = [m["content"] for m in messages if m["msg_type"] == "error"]
        assert not errors, errors
        return messages

    def stop(self):
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel(tmp_path):
    env = dict(os.environ, NBLLM_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    env.pop("NBLLM_DISK_CACHE", None)
    started = Kernel(tmp_path, env)
    yield started
    started.stop()


def events(messages):
    """The messages as short events: 'status: …', 'MARK …', 'stderr: …'."""
    out = []
    for msg in messages:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            for line in content["text"].splitlines():
                out.append(line if line.startswith("MARK") else f"{content['name']}: {line}")
        elif kind in ("comm_open", "comm_msg"):
            value = content.get("data", {}).get("state", {}).get("value")
            if isinstance(value, str) and "nbllm-status" in value:
                out.append("status: " + value.split("\u23f3", 1)[-1].split("<", 1)[0].strip())
    return out


def first(found, prefix):
    hits = [i for i, event in enumerate(found) if event.startswith(prefix)]
    assert hits, f"no {prefix!r} in {found}"
    return hits[0]


def test_labeler_status_arrives_before_the_model_loads_and_scores(kernel, tiny_folder,
                                                                   tmp_path):
    kernel.run(MARKERS)
    messages = kernel.run(
        "import pandas as pd, nbllm\n"
        f"df = pd.DataFrame({{'text': {TEXTS!r}}})\n"
        f"lab = df.llm.labeler('text', labels=['negative', 'positive'], model={tiny_folder!r},"
        f" path={str(tmp_path / 'answers.json')!r}, batch=3)\n"
        "lab")
    messages += kernel.run("lab.widget.wait(120)\nprint('MARK done', lab.scored)")
    found = events(messages)
    assert "MARK done True" in found, found
    loading = first(found, "status: loading")
    assert loading < first(found, "MARK model load"), found
    # Each scoring (the content-free reference, then the column) is announced first.
    starts = [i for i, event in enumerate(found) if event == "MARK scoring starts"]
    assert len(starts) >= 2, found
    for before, start in zip([loading] + starts, starts):
        assert any(e.startswith("status: scoring") for e in found[before:start]), found
    assert first(found, f"status: scoring 0 / {len(TEXTS)} texts") < starts[-1], found
    # The counts: every row, as the batches come in.
    assert f"status: scoring {len(TEXTS)} / {len(TEXTS)} texts\u2026" in found, found
    # The three cards are filled once every row is scored.
    filled = [i for i, m in enumerate(messages) if m["msg_type"] == "comm_msg"
              and "nbllm-card-text" in json.dumps(m["content"])]
    scored = [i for i, m in enumerate(messages) if m["msg_type"] == "comm_msg"
              and f"scoring {len(TEXTS)} / {len(TEXTS)}" in json.dumps(m["content"])]
    assert len(filled) == 3 and scored and min(filled) > scored[0]
    (tmp_path / "labeler-kernel-events.json").write_text(json.dumps(found, indent=1))


def test_a_single_label_warns_in_the_magics_words_before_the_model_loads(kernel,
                                                                           tiny_folder):
    kernel.run(MARKERS + "\n%load_ext nbllm")
    found = events(kernel.run(f"%%zeroshot --labels positive --model {tiny_folder}\n"
                              "good\nbad"))
    warning = first(found, "stderr: UserWarning: Only one label ('positive')")
    assert "use --raw for the model's own probability" in found[warning], found
    assert warning < first(found, "MARK model load"), found
    stderr = " ".join(event for event in found if event.startswith("stderr"))
    assert "ipykernel_" not in stderr and "run_cell_magic" not in stderr, found


# Each scored batch is kept in the result cache first: mark it there, and make
# the run long enough for the interrupt to land in the middle.
SLOW_SCORING = """
import time
from nbllm.engine.scoring.result_cache import ResultCache
_put_many = ResultCache.put_many
def _slow_put_many(self, *args, **kwargs):
    print("MARK batch", flush=True)
    time.sleep(0.05)
    return _put_many(self, *args, **kwargs)
ResultCache.put_many = _slow_put_many
"""


def test_an_interrupted_classify_says_in_one_line_what_is_done_and_still_raises(
        kernel, tiny_folder):
    """The kernel's interrupt (what the stop button sends) in ``df.llm.classify``."""
    kernel.run(SLOW_SCORING + "import pandas as pd, nbllm\n"
               "df = pd.DataFrame({'text': [f'tweet number {i}' for i in range(400)]})")
    msg_id = kernel.client.execute(
        f"out = df.llm.classify('text', labels=['negative', 'positive'], "
        f"model={tiny_folder!r}, batch_size=1)")
    messages, batches, interrupted = [], 0, False
    while True:
        msg = kernel.client.get_iopub_msg(timeout=180)
        messages.append(msg)
        if msg["msg_type"] == "stream" and not interrupted:
            batches += msg["content"]["text"].count("MARK batch")
            if batches >= 20:
                kernel.manager.interrupt_kernel()
                interrupted = True
        if (msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"
                and msg["parent_header"].get("msg_id") == msg_id):
            break
    errors = [m["content"] for m in messages if m["msg_type"] == "error"]
    assert len(errors) == 1, errors
    error = errors[0]
    assert error["ename"] == "Interrupted"
    # One line instead of a traceback through nbllm and torch.
    assert len(error["traceback"]) == 1, error["traceback"]
    line = error["traceback"][0]
    done = int(re.fullmatch(
        r"KeyboardInterrupt: stopped: (\d+) of 400 texts classified\. The finished texts "
        r"are in the result cache: run the same call again to resume \(only the (\d+) "
        r"left are scored\)\.", line).group(1))
    assert 0 < done < 400 and f"only the {400 - done} left" in line
    stderr = "".join(m["content"]["text"] for m in messages
                     if m["msg_type"] == "stream" and m["content"]["name"] == "stderr")
    assert "Traceback" not in stderr and "torch" not in stderr
    # It raised: no half result was assigned; and the model is still usable.
    found = events(kernel.run("print('MARK out' if 'out' in dir() else 'MARK no out')"))
    assert "MARK no out" in found, found


# ------------------------------------------------ the same, in-process and fast
def test_in_a_kernel_a_warning_is_one_line_and_still_obeys_the_filters(monkeypatch,
                                                                      capsys):
    import warnings

    from nbllm import warnings_to_user

    monkeypatch.setattr(warnings_to_user, "_in_kernel", lambda: True)
    warnings_to_user.warn("Only one label ('spam'): use --raw")
    assert capsys.readouterr().err == "UserWarning: Only one label ('spam'): use --raw\n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings_to_user.warn("hidden")
    assert capsys.readouterr().err == ""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="^raised$"):
            warnings_to_user.warn("raised")


def test_a_single_label_warns_before_the_model_loads(tiny_folder, monkeypatch):
    from nbllm import ZeroShotClassifier
    from nbllm.engine.loading import models
    from nbllm.estimators import single_label

    happened = []
    real = models._new_entry
    monkeypatch.setattr(models, "_new_entry",
                        lambda *a, **k: happened.append("load") or real(*a, **k))
    monkeypatch.setattr(single_label, "warn", lambda message: happened.append("warn"))
    models.clear_registry()
    ZeroShotClassifier(tiny_folder, progress=False).fit(None, ["spam"])
    assert happened == ["warn", "load"]
