"""One way to stop a long run: a Stop button sets an event, the run stops after its batch.

The panel's and the Labeler's Stop buttons and ``nbllm.classify(...,
stop=event)`` share it.  :func:`stoppable` wraps a run's ``on_rows``
callback: once the event is set, the callback raises :class:`Stopped` after
the batch it reports is kept, and the estimators let it through, leaving the
finished batches in the result cache (a rerun picks up from there).
"""


class Stopped(KeyboardInterrupt):
    """A run stopped by its stop event (a Stop button).

    A ``KeyboardInterrupt``, as Ctrl-C is: code that keeps finished work on an
    interrupt keeps it on a Stop too.  :func:`nbllm.classify` turns it into a
    partial result (``result.stopped``); :meth:`nbllm.Labeler.improve` lets it
    through, since an improvement needs every row scored.
    """

    def __init__(self, message="stopped"):
        super().__init__(message)


class Interrupted(KeyboardInterrupt):
    """A run interrupted (Ctrl-C, Jupyter's interrupt) part way, told in a few lines.

    Still a ``KeyboardInterrupt``, so a script stops and no half result is
    returned as if complete.  In IPython the cell shows the message alone
    (``_render_traceback_``) instead of a traceback through nbllm and torch:
    how many texts were classified, and how to resume.

    Parameters
    ----------
    done, total : int
        Texts classified before the interrupt; texts asked for.
    """

    def __init__(self, done, total):
        self.done, self.total = done, total
        super().__init__(
            f"stopped: {done} of {total} texts classified. The finished texts are in "
            "the result cache: run the same call again to resume (only the "
            f"{total - done} left are scored).")

    def __reduce__(self):
        # Rebuilt from the counts (args holds the message), e.g. across processes.
        return type(self), (self.done, self.total)

    def _render_traceback_(self):
        # IPython shows these lines in place of the traceback (its hook for
        # exceptions that know how to show themselves).
        return [f"KeyboardInterrupt: {self}"]


def stoppable(on_rows, stop):
    """``on_rows`` that raises :class:`Stopped` once ``stop`` is set.

    Parameters
    ----------
    on_rows : callable or None
        ``on_rows(rows, values)``, called first for every batch.
    stop : threading.Event or None
        None: never stops (``on_rows`` is returned as it is).

    Returns
    -------
    callable or None
    """
    if stop is None:
        return on_rows

    def checked(rows, values):
        if on_rows is not None:
            on_rows(rows, values)
        if stop.is_set():
            raise Stopped

    return checked
