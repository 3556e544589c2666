"""Status lines while nbllm works: the engine's reports, the cell's line, the kernel.

A first cell must not sit silent while the model loads: "loading …" shows at
once in the running cell, is replaced by what follows ("scoring 2 text(s)…")
and goes when the result is there.
"""

import queue
import warnings

import pytest

from nbllm.engine import status as engine_status
from nbllm.engine.loading.gguf import conversion_message
from nbllm.notebook.status import CellStatus, showing_status
from nbllm.warnings_to_user import collecting, warn

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")


class FakeHandle:
    def __init__(self, log):
        self.log = log

    def update(self, data, raw):
        self.log.append(("update", data))


def fake_display(log):
    def display(data, raw, display_id):
        assert raw is True and display_id is True
        log.append(("display", data))
        return FakeHandle(log)
    return display


def test_cell_status_is_one_line_replaced_then_removed():
    log = []
    line = CellStatus(fake_display(log))
    line("loading <b>model</b>\u2026")
    line("scoring 2 text(s)\u2026")
    line.clear()
    assert [kind for kind, _ in log] == ["display", "update", "update"]
    first = log[0][1]
    assert first["text/plain"] == "loading <b>model</b>\u2026"
    assert "loading &lt;b&gt;model&lt;/b&gt;\u2026" in first["text/html"]
    assert "tex2jax_ignore mathjax_ignore" in first["text/html"]
    assert log[2][1] == {"text/plain": "", "text/html": ""}
    assert line.messages == ["loading <b>model</b>\u2026", "scoring 2 text(s)\u2026"]


def test_showing_status_says_loading_first_and_clears_at_the_end(tmp_path):
    from tiny import save_tiny

    folder = save_tiny(tmp_path / "unloaded")
    log = []
    with showing_status(folder, display=fake_display(log)):
        engine_status.report("scoring 1 text(s)\u2026")
    plain = [data["text/plain"] for _, data in log]
    assert plain == [f"loading {folder}\u2026", "scoring 1 text(s)\u2026", ""]


def test_a_listener_already_set_gets_the_lines_and_no_cell_line_is_made():
    got, log = [], []
    with engine_status.listening(got.append):
        with showing_status(object(), display=fake_display(log)):  # a model object
            engine_status.report("scoring")
    assert got == ["scoring"] and log == []


def test_outside_a_kernel_nothing_is_shown(capsys):
    with showing_status(None):
        engine_status.report("scoring")
    assert capsys.readouterr() == ("", "")


def test_reports_without_a_listener_go_nowhere():
    engine_status.report("nobody listens")  # no error, no output
    assert engine_status.listening_now() is False


def test_collecting_sends_warnings_to_the_collector_only():
    got = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with collecting(got.append):
            warn("first")
        warn("second")
    assert got == ["first"]
    assert [str(w.message) for w in caught] == ["second"]


def test_conversion_message_estimates_from_the_file_size(tmp_path):
    gguf = tmp_path / "model.gguf"
    with open(gguf, "wb") as f:
        f.truncate(200 * 10**6)  # 200 MB, sparse
    assert conversion_message("my-model", gguf) == (
        "converting my-model from GGUF, once (usually about 22 s; later loads use the "
        "converted copy)\u2026")
    small = tmp_path / "small.gguf"
    small.write_bytes(b"GGUF")
    assert "usually about 5 s" in conversion_message("tiny", small)


def _run_in_kernel(client, code, timeout=120):
    """Execute ``code``; return the iopub messages of that execution."""
    msg_id = client.execute(code)
    messages = []
    while True:
        try:
            msg = client.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no reply from the kernel; so far {messages}") from None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages


def test_a_kernel_cell_shows_loading_then_scoring_then_only_the_result(tmp_path):
    """In a real ipykernel: the status line arrives as a display, is updated in
    place (same display_id) and emptied; the cell's result is the table."""
    from jupyter_client.manager import start_new_kernel
    from tiny import save_tiny

    folder = save_tiny(tmp_path / "kernel tiny")
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        _run_in_kernel(client, "import os; os.environ['HF_HUB_OFFLINE'] = '1'\n"
                               "import torch; torch.set_num_threads(1)\n%load_ext nbllm")
        messages = _run_in_kernel(
            client, f"%%zeroshot --labels a,b --model '{folder}'\nhello\nworld")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    shown = [(m["msg_type"], m["content"]) for m in messages
             if m["msg_type"] in ("display_data", "update_display_data", "execute_result",
                                  "error")]
    kinds = [kind for kind, _ in shown]
    assert "error" not in kinds, shown
    assert kinds[0] == "display_data" and kinds[-1] == "execute_result"
    display_id = shown[0][1]["transient"]["display_id"]
    lines = [content["data"]["text/plain"] for kind, content in shown[:-1]]
    assert lines[0] == f"loading {folder}\u2026"
    assert "scoring 2 text(s)\u2026" in lines
    assert lines[-1] == ""  # removed once the result is there
    assert all(content["transient"]["display_id"] == display_id
               for kind, content in shown[1:-1])
    assert 'class="nbllm-table' in shown[-1][1]["data"]["text/html"]
