"""One option table (nbllm.options): everything else derives from it or equals it.

The classifiers' ``__init__`` signatures stay literal (scikit-learn reads
them), so they, their docstrings, the magics' arguments, the panel's widgets
and the notebook functions' keywords are checked against the table here; a
fresh interpreter with one default changed in the table sees every way in
follow it.
"""

import ast
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nbllm import options
from nbllm.estimators import (FewShotClassifier, MultiLabelZeroShotClassifier,
                              ZeroShotClassifier)
from nbllm.notebook import classify as api
from nbllm.notebook import magic_syntax
from nbllm.notebook.magics import NbllmMagics
from nbllm.notebook.pandas_accessor import DataFrameLLMAccessor, SeriesLLMAccessor

CLASSIFIERS = [ZeroShotClassifier, FewShotClassifier, MultiLabelZeroShotClassifier]
DOCS = Path(__file__).resolve().parents[1] / "docs"


def flag_action(magic, option):
    """The argparse action of ``option``'s flag in ``magic``'s parser."""
    parser = getattr(NbllmMagics, magic).parser
    return next(a for a in parser._actions if option.flag in a.option_strings)


# ------------------------------------------------------------------ classifiers
@pytest.mark.parametrize("cls", CLASSIFIERS, ids=lambda c: c.__name__)
def test_every_signature_default_is_the_tables(cls):
    signature = inspect.signature(cls.__init__).parameters
    params = {name: p.default for name, p in signature.items() if name != "self"}
    assert list(params) == [o.name for o in options.taken_by(cls.__name__)] or \
        set(params) == {o.name for o in options.taken_by(cls.__name__)}
    for name, default in params.items():
        assert default == options.BY_NAME[name].default, name


@pytest.mark.parametrize("cls", CLASSIFIERS, ids=lambda c: c.__name__)
def test_every_docstring_entry_is_the_tables(cls):
    entries = dict(re.findall(r"^    (\w+(?:, \w+)*) : (.*)$", cls.__doc__, re.M))
    documented = set()
    for names, rest in entries.items():
        for name in names.split(", "):
            if name in options.BY_NAME:
                documented.add(name)
                option = options.BY_NAME[name]
                kind, default = rest.rsplit(", default=", 1)
                assert default == (option.doc_default or repr(option.default)), name
                if option.choices is not None and option.doc_type is None:
                    assert kind == "{" + ", ".join(map(repr, option.choices)) + "}"
    assert documented == {o.name for o in options.taken_by(cls.__name__)}


def literal_defaults(path):
    """(function, parameter, value) for each parameter named as an option
    whose default is written as a literal in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            pairs = list(zip(args.args[len(args.args) - len(args.defaults):], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d]
            found += [(node.name, arg.arg, default.value) for arg, default in pairs
                      if isinstance(default, ast.Constant)
                      and (arg.arg in options.BY_NAME or arg.arg in options.BY_KEYWORD)]
    return found


@pytest.mark.parametrize("place", [
    "estimators/docs.py", "engine/scoring/text_scorer.py", "notebook/classify.py",
    "notebook/pandas_accessor.py", "notebook/dask_accessor.py", "notebook/magics.py",
    "notebook/panel/panel.py", "notebook/panel/code.py", "notebook/magic_syntax.py"])
def test_no_default_is_written_out_beside_the_table(place):
    """Only the classifiers' signatures spell a default; these places read the table."""
    assert literal_defaults(Path(options.__file__).parent / place) == []


def test_the_classifiers_signatures_do_spell_their_defaults():
    root = Path(options.__file__).parent / "estimators"
    spelled = {name for path in ("single_label.py", "few_shot.py", "multi_label.py")
               for _, name, _ in literal_defaults(root / path)}
    assert {"truncation", "max_samples", "threshold", "probas_sum_to_1"} <= spelled


# ------------------------------------------------------------------ magics
@pytest.mark.parametrize("magic", list(options.MAGICS))
def test_every_magic_argument_comes_from_the_table(magic):
    for option in options.flags_of(magic):
        action = flag_action(magic, option)
        assert action.dest == option.keyword
        assert action.default == option.default_for(options.MAGIC), option.name
        choices = option.magic_choices or option.choices
        if choices != (True, False):
            assert tuple(action.choices or ()) == tuple(choices or ()), option.name
            assert action.help.startswith(option.help_text)
        if option.short:
            assert option.short in action.option_strings


def test_a_magic_default_is_the_estimators_unless_the_table_overrides_it():
    for option in options.TABLE:
        if option.magics and not {options.MAGIC, options.NOTEBOOK} & set(option.overrides):
            assert option.to_estimator(option.default_for(options.MAGIC)) == option.default


def test_every_flag_is_in_the_notebook_guides_magic_options():
    # The guide's option list is generated from the table and the magics'
    # parsers (docs/_ext/nbllm_docs.py); tests/test_docs_site.py reads it in
    # the built site.
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import nbllm_docs
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    text = (DOCS / "notebook.md").read_text(encoding="utf-8")
    section = text[text.index("## Cell magics"):text.index("## Results in HTML")]
    assert "```{nbllm-magic-options}" in section
    generated = nbllm_docs.magic_options_markdown()
    for option in options.TABLE:
        if option.flag:
            assert f"`{option.flag}`" in generated, option.flag
    for magic in ("zeroshot", "fewshot"):
        for action in flag_parser(magic)._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}`" in generated, flag


def flag_parser(magic):
    return getattr(NbllmMagics, magic).parser


def test_the_estimator_guides_signatures_say_the_tables_defaults():
    text = (DOCS / "estimators.md").read_text(encoding="utf-8")
    section = text[text.index("## Parameters at a glance"):]
    section = section[:section.index("## Models")]
    written = dict(re.findall(r"(\w+)=([^,`;)\s]+)", section))
    # Options no estimator takes (--multi-label, --explain) are the notebook's own.
    assert set(written) == {o.name for o in options.TABLE if o.estimators}
    for name, default in written.items():
        option = options.BY_NAME[name]
        assert default == (option.doc_default or repr(option.default)), name


# ------------------------------------------------------------------ panel
@pytest.mark.usefixtures("notebook_state")
def test_every_panel_widget_comes_from_the_table():
    from nbllm.notebook.panel.panel import Panel

    panel = Panel(threaded=False)
    assert set(panel.option_widgets) == {o for o in options.TABLE if o.widget}
    for option, widget in panel.option_widgets.items():
        assert widget.description == option.widget and widget.tooltip == option.help_text
        assert widget.value == option.default_for(options.PANEL), option.name
        if option.choices and hasattr(widget, "options") and option.choices != (True, False):
            assert tuple(widget.options) == option.choices


# ------------------------------------------------------------------ Python
@pytest.mark.parametrize("function, way", [
    (api.build_estimator, options.PYTHON),
    (DataFrameLLMAccessor.classify, options.PYTHON),
    (SeriesLLMAccessor.classify, options.PYTHON),
], ids=["build_estimator", "df.llm", "series.llm"])
def test_every_keyword_default_is_the_tables(function, way):
    checked = 0
    for name, param in inspect.signature(function).parameters.items():
        if name in options.BY_KEYWORD and param.default is not inspect.Parameter.empty:
            assert param.default == options.BY_KEYWORD[name].default_for(way), name
            checked += 1
    assert checked


def test_ddf_llm_keyword_defaults_are_the_tables():
    pytest.importorskip("dask.dataframe")
    from nbllm.notebook.dask_accessor import DaskLLMAccessor

    params = inspect.signature(DaskLLMAccessor.classify).parameters
    assert params["raw"].default == options.PROBAS_SUM_TO_1.default_for(options.DASK)
    assert params["progress"].default is False  # the table's Dask override
    assert options.PROGRESS.default_for(options.DASK) is False


def test_the_notebooks_random_state_is_declared_in_the_table():
    assert options.RANDOM_STATE.default is None  # skorch's, the estimators'
    for way in (options.PYTHON, options.MAGIC, options.PANEL):
        assert options.RANDOM_STATE.default_for(way) == 0


# ------------------------------------------------------------------ magic syntax
@pytest.mark.parametrize("labels", [["a", "b"], ["very, good", "bad"], ['say "hi"', "x y"]])
def test_labels_written_are_read_back(labels):
    assert magic_syntax.read_labels(magic_syntax.unquote(
        magic_syntax.write_labels(labels))) == labels


@pytest.mark.parametrize("template", ["Text: {text}\nLabel:", "It's {text}\t{labels}",
                                      'say "hi" {text}'])
def test_templates_written_are_read_back(template):
    written = magic_syntax.write_template(template)
    assert magic_syntax.read_template(magic_syntax.unquote(written)) == template


def test_option_values_are_written_as_the_flags():
    assert magic_syntax.write_option(options.PROBAS_SUM_TO_1, False) == "--raw"
    assert magic_syntax.write_option(options.PROBAS_SUM_TO_1, True) == ""
    assert magic_syntax.write_option(options.THRESHOLD_LOW_PROB, 0.05) == "--threshold 0.05"
    assert magic_syntax.write_option(options.DEVICE, "cuda:1") == "--device cuda:1"


# ------------------------------------------------------------------ one change
CHANGED_TABLE = """
    import importlib.util, inspect, sys
    # Run nbllm/options.py (and what it imports), change the table, then run
    # nbllm/__init__.py and the notebook modules with the changed table.
    spec = importlib.util.find_spec("nbllm")
    package = importlib.util.module_from_spec(spec)
    sys.modules["nbllm"] = package
    import nbllm.options as options
    assert "nbllm.notebook" not in sys.modules
    options.MAX_SAMPLES.default = 7
    options.TRUNCATION.default = "left"
    options.THRESHOLD.default = 0.25
    spec.loader.exec_module(package)

    from nbllm.notebook import classify as api
    from nbllm.notebook.magics import NbllmMagics
    from nbllm.notebook.panel.panel import Panel
    from nbllm.notebook.pandas_accessor import DataFrameLLMAccessor, SeriesLLMAccessor
    from nbllm.estimators import FewShotClassifier

    def default(magic, flag):
        parser = getattr(NbllmMagics, magic).parser
        return next(a for a in parser._actions if flag in a.option_strings).default

    assert default("fewshot", "--max-samples") == 7
    assert default("zeroshot", "--truncation") == "left"
    parser = NbllmMagics.zeroshot.parser
    helps = {a.dest: a.help for a in parser._actions}
    assert "(default 0.25)" in helps["threshold"] and "defaults to 0.25" in helps["multi_label"]
    assert "(default left)" in helps["truncation"]
    assert Panel(threaded=False).max_samples.value == 7
    for function in (DataFrameLLMAccessor.classify, SeriesLLMAccessor.classify,
                     api.build_estimator):
        assert inspect.signature(function).parameters["max_samples"].default == 7
    assert inspect.signature(api.build_estimator).parameters["truncation"].default == "left"
    assert "max_samples : int, default=7" in FewShotClassifier.__doc__
    assert "default='left'" in FewShotClassifier.__doc__
"""


def test_one_default_changed_in_the_table_is_followed_by_every_way_in():
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(CHANGED_TABLE)],
                          capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
