"""Malformed magic options, and cell content that must stay data.
"""

import ast
import re
from pathlib import Path

import numpy as np
import pytest

import nbllm  # noqa: F401  (registers the df.llm accessor)
from entry_points import (  # noqa: F401  (fixtures among them)
    from_folder,
    usage_error,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread", "notebook_state")


@pytest.mark.parametrize("line, message", [
    ('--labels ""', "--labels: labels must contain at least one label; got none"),
    ("--labels ,", "--labels: labels must be non-empty strings; got ''"),
    ("--labels a,b --threshold x",
     "zeroshot: argument --threshold: invalid float value: 'x'"),
    ("--labels a,b --input", "zeroshot: argument -i/--input: expected one argument"),
    ("--labels a,b --rows 0:2", "--rows needs --input: it picks rows of that variable"),
    ("--labels a,b --truncation bogus",
     "zeroshot: argument --truncation: invalid choice: 'bogus' (choose from 'right', "
     "'left', 'middle', 'error')"),
])
def test_more_malformed_magic_options_give_one_line(ip, tiny_folder, capsys, line,
                                                    message):
    res = ip.run_cell(f"%%zeroshot {line} --model {tiny_folder}\nsome text")
    usage_error(res, capsys, message)


@pytest.mark.parametrize("line, message", [
    ("-k x", "fewshot: argument -k/--max-samples: invalid int value: 'x'"),
])
def test_more_malformed_fewshot_options_give_one_line(ip, tiny_folder, capsys, line,
                                                      message):
    res = ip.run_cell(f"%%fewshot {line} --model {tiny_folder}\na: good\n---\nx")
    usage_error(res, capsys, message)


def test_cell_lines_that_look_like_code_are_only_classified(ip, tiny_folder, tmp_path,
                                                             monkeypatch):
    # Each payload would create its marker file if it ran ($PWNEDi names it).
    marks = [tmp_path / f"pwned-{i}" for i in range(6)]
    for i, mark in enumerate(marks):
        monkeypatch.setenv(f"PWNED{i}", str(mark))
    lines = [
        "__import__('os').system('touch $PWNED0')",
        "{__import__('os').system('touch $PWNED1')}",
        "!touch $PWNED2",
        "$(touch $PWNED3) ${__import__('os').system('touch $PWNED3')}",
        "import os; os.system('touch $PWNED4')",
        "{text} {labels} {0.__class__} %time open(__import__('os').environ['PWNED5'], 'w')",
    ]
    res = ip.run_cell(f"%%zeroshot --labels a,b --model {tiny_folder}\n" + "\n".join(lines))
    assert res.success, res.error_in_exec
    assert res.result.texts == lines
    np.testing.assert_allclose(res.result.probas, from_folder(
        tiny_folder, ["a", "b"]).predict_proba(lines), rtol=0, atol=1e-9)
    assert not any(m.exists() for m in marks)
    # %%fewshot: labels and texts of inline examples are data too.
    code_label = "__import__('os').system('touch $PWNED0')"
    res = ip.run_cell(f"%%fewshot --model {tiny_folder}\n{code_label}: {lines[1]}\n"
                      f"b: {lines[2]}\n---\n{lines[4]}")
    assert res.success, res.error_in_exec
    assert res.result.texts == [lines[4]]
    assert sorted(res.result.classes) == sorted([code_label, "b"])
    assert sorted(res.result.estimator.examples_for([lines[4]])[0]) == sorted(
        [(lines[1], code_label), (lines[2], "b")])
    assert not any(m.exists() for m in marks)


@pytest.mark.parametrize("rows, expected", [
    ("1:3", ["d", "c"]), (":2", ["e", "d"]), ("3:", ["b", "a"]), ("-2:", ["b", "a"]),
])
def test_rows_picks_rows_of_the_input_by_position(ip, tiny_folder, rows, expected):
    import pandas as pd

    frame = pd.DataFrame({"text": ["one", "two", "three", "four", "five"]},
                         index=list("edcba"))
    ip.user_ns.update(frame=frame, series=frame["text"], items=frame["text"].tolist())
    for source in ("--input frame --column text", "--input series"):
        res = ip.run_cell(f"%zeroshot --labels a,b --model {tiny_folder} {source} "
                          f"--rows={rows}")  # '=': a negative start is not an option
        assert res.success, res.error_in_exec
        assert list(res.result.frame.index) == expected
    res = ip.run_cell(f"%zeroshot --labels a,b --model {tiny_folder} --input items "
                      f"--rows={rows}")
    assert res.result.texts == frame["text"].loc[expected].tolist()


@pytest.mark.parametrize("rows", ["1", "a:b", "1:2:3"])
def test_bad_rows_give_one_line(ip, tiny_folder, capsys, rows):
    ip.user_ns["items"] = ["one", "two"]
    res = ip.run_cell(f"%zeroshot --labels a,b --model {tiny_folder} --input items "
                      f"--rows {rows}")
    usage_error(res, capsys, f"--rows: expected START:END, e.g. 0:20; got {rows!r}")


def test_inline_prompt_placeholders_are_not_expanded_from_user_variables(ip, tiny_folder):
    """IPython would fill {text} and {labels} on a magic's line from variables of
    those names; the magics turn that off, so the template stays the template."""
    ip.user_ns.update(text="SHADOW", labels="SHADOW")
    res = ip.run_cell(f"%%zeroshot --labels a,b --model {tiny_folder} "
                      "--prompt 'Say {labels} for: {text}\\nAnswer: '\nhello")
    assert res.success, res.error_in_exec
    assert res.result.estimator.prompt == "Say {labels} for: {text}\nAnswer: "
    res = ip.run_cell(f"%%fewshot --labels a,b --model {tiny_folder} "
                      "--prompt '{examples} {labels} {text}:'\na: good\n---\nhello")
    assert res.result.estimator.prompt == "{examples} {labels} {text}:"


@pytest.mark.parametrize("module", ["notebook.magics", "notebook.panel.panel", "notebook.classify",
                                    "notebook.pandas_accessor", "notebook.inline_examples",
                                    "engine.scoring.prompts"])
def test_cell_and_widget_content_never_reaches_eval_or_exec(module):
    """The magics (and the panel, the API and prompt rendering behind them)
    hold no eval/exec/compile call nor IPython's code runners."""
    import importlib

    source = Path(importlib.import_module(f"nbllm.{module}").__file__).read_text()
    assert not re.search(r"(?<![\w.])(eval|exec|compile|__import__)\s*\(", source)
    tree = ast.parse(source)
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert not names & {"eval", "exec", "compile", "__import__", "execfile"}
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not attributes & {"run_cell", "run_code", "ex", "ev", "safe_execfile",
                             "user_expressions", "var_expand"}
