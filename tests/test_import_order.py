"""``df.llm`` and ``ddf.llm`` exist whatever the import order and the probes.

Each test runs a fresh interpreter, since what is under test is the state of
``sys.modules`` and ``sys.meta_path`` from the first import on: both import
orders, a ``find_spec`` probe before the import (transformers makes one for
pandas when a model loads), a model load before the import, and
``%load_ext nbllm`` with a magic in a real IPython shell before pandas.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

# dask is the [dask] extra: the minimum-versions run (make test-lowest) has none.
needs_dask = pytest.mark.skipif(importlib.util.find_spec("dask") is None,
                                reason="dask (the nbllm[dask] extra) is not installed")

CHECK_PANDAS = """
    import pandas as pd
    from nbllm.notebook.pandas_accessor import DataFrameLLMAccessor, SeriesLLMAccessor
    frame = pd.DataFrame({"text": ["x"]})
    assert isinstance(frame.llm, DataFrameLLMAccessor), type(frame.llm)
    assert isinstance(frame["text"].llm, SeriesLLMAccessor)
"""
CHECK_DASK = """
    import dask.dataframe as dd
    import pandas as pd
    from nbllm.notebook.dask_accessor import DaskLLMAccessor
    ddf = dd.from_pandas(pd.DataFrame({"text": ["x"]}), npartitions=1)
    assert isinstance(ddf.llm, DaskLLMAccessor), type(ddf.llm)
"""
NO_HOOK_OF_OURS = """
    import sys
    ours = [f for f in sys.meta_path
            if any(str(m).startswith("nbllm")
                   for m in (getattr(f, "__module__", ""), type(f).__module__))]
    assert not ours, ours
"""


def run_python(*parts):
    """Run the code parts in one fresh interpreter; fail with its stderr."""
    code = "\n".join(textwrap.dedent(part) for part in parts)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("order", ["nbllm first", "pandas first"])
def test_df_llm_in_either_import_order(order):
    first = "import nbllm\n" if order == "nbllm first" else "import pandas\nimport nbllm\n"
    run_python(first, CHECK_PANDAS, NO_HOOK_OF_OURS)


def test_import_nbllm_imports_pandas_and_registers_df_llm():
    run_python("""
        import sys
        import nbllm
        assert "pandas" in sys.modules
        frame = sys.modules["pandas"].DataFrame({"text": ["x"]})
        assert type(frame.llm).__name__ == "DataFrameLLMAccessor"
        assert "torch" not in sys.modules and "dask" not in sys.modules
    """)


def test_a_find_spec_probe_before_pandas_keeps_df_llm():
    run_python("""
        import importlib.util
        import nbllm
        assert importlib.util.find_spec("pandas") is not None
    """, CHECK_PANDAS)


@needs_dask
@pytest.mark.parametrize("order", ["nbllm first", "dask first"])
def test_ddf_llm_in_either_import_order(order):
    if order == "nbllm first":
        first = """
            import sys
            import nbllm
            assert "dask" not in sys.modules, "import nbllm imported dask"
        """
    else:
        first = "import dask.dataframe\nimport nbllm\n"
    run_python(first, CHECK_DASK, NO_HOOK_OF_OURS)


@needs_dask
def test_a_find_spec_probe_before_dask_keeps_ddf_llm():
    run_python("""
        import importlib.util
        import sys
        import nbllm
        assert importlib.util.find_spec("dask.dataframe") is not None
        assert "dask.dataframe" not in sys.modules
        assert importlib.util.find_spec("dask.dataframe") is not None
    """, CHECK_DASK)


@needs_dask
def test_dask_dataframe_imported_through_its_parent_gets_ddf_llm():
    run_python("""
        import nbllm
        import dask
        from dask import dataframe
    """, CHECK_DASK)


@needs_dask
def test_a_model_load_before_pandas_and_dask_keeps_the_accessors(tiny_folder):
    run_python(f"""
        import nbllm
        from nbllm.engine.loading import models
        models.get_model({tiny_folder!r}, "cpu", "float32")
        import importlib.util
        importlib.util.find_spec("pandas"), importlib.util.find_spec("dask.dataframe")
    """, CHECK_PANDAS, CHECK_DASK, NO_HOOK_OF_OURS)


def test_load_ext_then_a_magic_then_pandas(tiny_folder):
    run_python(f"""
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "nbllm")
        result = ip.run_cell_magic(
            "zeroshot", "--labels negative,positive --model {tiny_folder}",
            "I love it.")
        assert result is not None
        ok = ip.run_cell("import pandas as pd\\n"
                         "frame = pd.DataFrame({{'text': ['x']}})\\n"
                         "assert type(frame.llm).__name__ == 'DataFrameLLMAccessor'")
        ok.raise_error()
    """, NO_HOOK_OF_OURS)


def test_the_old_import_hook_is_gone():
    run_python("""
        import importlib.util
        import nbllm
        assert importlib.util.find_spec("nbllm.notebook.import_hooks") is None
    """, NO_HOOK_OF_OURS)
