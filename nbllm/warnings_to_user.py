"""Warnings that point at the user's code, not at nbllm's source lines.

A warning raised deep in nbllm (one label, a cut text, a missing placeholder)
would otherwise show ``nbllm/estimators/base.py:240`` and that line of code.
:func:`warn` walks up the stack past every frame inside the nbllm package and,
for the magics, IPython's own machinery, so the warning names the user's own
call (a notebook cell, a script line).

In a Jupyter kernel, Python would still print the warning as
``/tmp/ipykernel_…/….py:1: UserWarning: …`` followed by the cell's source line
(for a magic, ``get_ipython().run_cell_magic(...)``); there :func:`warn`
writes the warning as one line, ``UserWarning: …``, to the cell's stderr.  It
still goes through Python's warning filters, so ``warnings.filterwarnings``
silences it or turns it into an error as usual.

A front end that shows warnings itself (the panel, whose work runs in a
thread where a printed warning would land in whichever cell ran last) sets a
collector with :func:`collecting`; within it, warnings go to the collector
instead of Python's warning machinery.

A warning that names options (an :class:`~nbllm.exceptions.OptionWarning`,
``"use probas_sum_to_1=False"``) is worded by the way in the user came
through, at its boundary (:func:`words_for_warnings`): ``raw=True`` in
``df.llm``, ``--raw`` in a magic.  The code that warns does not know the way.
"""

import contextlib
import contextvars
import os
import sys
import warnings

from . import options

_collector = contextvars.ContextVar("nbllm_warning_collector", default=None)

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _internal(filename):
    """Whether a frame's file is nbllm's, or IPython's magic machinery."""
    if filename.startswith("<decorator-gen"):  # IPython's magic wrappers
        return True
    path = os.path.abspath(filename)
    if path.startswith(_PACKAGE):
        return True
    ipython = sys.modules.get("IPython")
    return bool(ipython and getattr(ipython, "__file__", None)
                and path.startswith(os.path.dirname(ipython.__file__) + os.sep))


def _outside_nbllm():
    """The stacklevel of the first frame, from warn's caller up, that is the user's."""
    frame, level = sys._getframe(2), 2
    while frame is not None and _internal(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level if frame is not None else 2


@contextlib.contextmanager
def context_set(variable, value):
    """Set a context variable for the duration of a block (this thread or task only)."""
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def collecting(callback, way=options.ESTIMATOR):
    """Within the block, send nbllm's warnings to ``callback(message)``, the
    options they name said as way in ``way`` says them."""
    return context_set(_collector, lambda message: callback(
        str(options.in_words(message, way))))


@contextlib.contextmanager
def words_for_warnings(way):
    """Within the block, say the options that warnings name as way in ``way`` does.

    The outermost way in wins: a magic that calls :func:`nbllm.classify`
    keeps the magic's words, and the panel's collector keeps its own.
    """
    if _collector.get() is not None:
        yield
        return
    with collecting(_show, way):
        yield


def _in_kernel():
    """Whether this runs in a Jupyter kernel (IPython with a kernel attached)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def warn(message, category=UserWarning):
    """``warnings.warn`` at the user's frame (the first one outside nbllm),
    or the collector set by :func:`collecting`; in a Jupyter kernel, shown as
    one line without the file name and source line."""
    callback = _collector.get()
    if callback is not None:
        callback(message)
        return
    _show(message, category, level=_outside_nbllm())


def _show(message, category=UserWarning, level=None):
    """Python's warning at the user's frame (see :func:`warn`)."""
    level = _outside_nbllm() if level is None else level + 1

    if not _in_kernel():
        warnings.warn(message, category, stacklevel=level)
        return
    # The filters still decide (ignore, error, ...); only the display changes.
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn(message, category, stacklevel=level)
    for shown in caught:
        sys.stderr.write(f"{shown.category.__name__}: {shown.message}\n")
