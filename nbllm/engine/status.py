"""What the engine is doing, for whoever shows it (a notebook cell, the panel).

The engine never prints.  It reports short lines ("loading smollm2-135m…")
to the listener of the current context, if there is one; the notebook layer
sets a listener around its calls.  A context variable keeps listeners of
different threads (the panel's worker, a cell) apart.
"""

import contextvars

from ..warnings_to_user import context_set

_listener = contextvars.ContextVar("nbllm_status_listener", default=None)


def listening(callback):
    """Send the engine's status lines to ``callback(message)`` within the block."""
    return context_set(_listener, callback)


def report(message):
    """Tell the current listener what is happening now (nothing without one)."""
    callback = _listener.get()
    if callback is not None:
        callback(message)


def listening_now():
    """Whether a listener is set in the current context."""
    return _listener.get() is not None
