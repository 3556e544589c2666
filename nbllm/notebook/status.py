"""A live status line while nbllm works: "loading smollm2-135m…", "scoring 48 text(s)…".

The engine reports what it is doing (:mod:`nbllm.engine.status`); this module
shows it in the running cell of a Jupyter kernel and removes it when the
call is over.  The panel shows the same lines in its own status widget.
"""

import contextlib

from ..engine import status as engine_status
from .display import NO_MATH, esc

_STYLE = ("font-size:12px;color:var(--jp-ui-font-color2,#555);"
          "padding:2px 0;font-family:var(--jp-ui-font-family,sans-serif)")


class CellStatus:
    """One line in the current cell's output, replaced by each new message.

    Parameters
    ----------
    display : callable
        IPython's ``display`` (tests pass their own).
    """

    def __init__(self, display):
        self._display = display
        self.handle = None
        self.messages = []

    def __call__(self, message):
        self.messages.append(message)
        data = {
            "text/plain": message,
            "text/html": f'<div class="nbllm-status {NO_MATH}" style="{_STYLE}">'
                         f"\u23f3 {esc(message)}</div>",
        }
        if self.handle is None:
            self.handle = self._display(data, raw=True, display_id=True)
        else:
            self.handle.update(data, raw=True)

    def clear(self):
        """Remove the line (the cell keeps only the result)."""
        if self.handle is not None:
            self.handle.update({"text/plain": "", "text/html": ""}, raw=True)


def _spec(model):
    """The spec a call will load: the model given, the session's or the default."""
    from ..engine.loading.models import DEFAULT_MODEL
    from .session import session

    return str(model) if model is not None else (session.model or DEFAULT_MODEL)


def needs_loading(model):
    """Whether no model of this spec is loaded yet (without importing torch)."""
    from ..engine.loading.models import loaded_models

    if not isinstance(model, (str, type(None))):
        return False  # a model object is loaded already
    spec = _spec(model)
    return all(m.spec != spec for m in loaded_models())


def first_message(model):
    """What a call that scores with ``model`` does first: "loading …" when the
    model is not loaded yet, else None."""
    return f"loading {_spec(model)}\u2026" if needs_loading(model) else None


def _kernel_display():
    """IPython's display when running in a Jupyter kernel, else None."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return None  # a terminal or a script: the status would only be noise
    from IPython.display import display

    return display


@contextlib.contextmanager
def showing_status(model=None, display=None):
    """Show the engine's status lines for the duration of a call.

    A listener already set (the panel's) gets them; otherwise they go to a
    line in the running cell of a Jupyter kernel, removed at the end.  When
    ``model`` is not loaded yet, "loading …" shows at once, before the heavy
    imports.

    Parameters
    ----------
    model : str, model object or None
        What the call will use (None: the session's or the embedded model).
    display : callable, optional
        IPython's ``display``; by default it is used only inside a kernel.
    """
    display = display or _kernel_display()
    line = None
    if not engine_status.listening_now() and display is not None:
        line = CellStatus(display)
    with engine_status.listening(line) if line else contextlib.nullcontext():
        try:
            message = first_message(model)
            if message is not None:
                engine_status.report(message)
            yield
        finally:
            if line is not None:
                line.clear()
