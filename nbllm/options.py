"""Every option's choices, default and check, in one place.

The estimators check their parameters here; the magics' argument parser, the
panel's widgets and the accessors take their choices and defaults from here,
so a new choice or a changed default is one edit.  Plain Python: importing it
costs nothing.
"""

import contextlib
import contextvars
import numbers

from .exceptions import LabelsError, OptionError

# The ways in, each of which names an option in its own words: the
# estimators' keyword (``probas_sum_to_1=False``), the notebook's Python
# keyword (``raw=True`` in ``df.llm.classify`` and ``nbllm.classify``), the
# magics' flag (``--raw``) and the panel's widget ("raw probabilities").
ESTIMATOR, PYTHON, MAGIC, PANEL = "estimator", "python", "magic", "panel"
_WAY_IN = contextvars.ContextVar("nbllm_way_in", default=ESTIMATOR)


@contextlib.contextmanager
def way_in(name):
    """Name options in the words of way in ``name`` inside this block.

    The outermost way in wins: a magic that calls :func:`nbllm.classify`
    keeps the magic's words.  A context variable, so a panel's worker thread
    sets its own (a new thread starts from the default, the estimators').
    """
    if _WAY_IN.get() != ESTIMATOR:
        yield
        return
    token = _WAY_IN.set(name)
    try:
        yield
    finally:
        _WAY_IN.reset(token)


def current_way_in():
    """The way in whose words messages use now (:data:`ESTIMATOR` by default)."""
    return _WAY_IN.get()


def _spoken(values):
    """``'a', 'b' or 'c'``: the choices as a message lists them."""
    shown = [repr(v) for v in values]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


class Option:
    """One option: its name, default, what values it takes, and its words.

    Parameters
    ----------
    name : str
        The estimators' keyword.
    default : object
    choices : tuple or None
        The values it takes, when they are a fixed set.
    check : callable or None
        ``check(value)`` returns True for a valid value (when there are no
        ``choices``).
    expected : str or None
        What a valid value is, for the error message (default: the choices).
    keyword : str or None
        The notebook's Python keyword (default: ``name``).
    flag : str or None
        The magics' flag (None: the magics do not take it).
    widget : str or None
        The panel widget's description (None: the panel has no widget for it).
    inverted : bool
        Whether the notebook's keyword, flag and widget mean ``not value`` (a
        True ``raw`` is ``probas_sum_to_1=False``).
    """

    def __init__(self, name, default, choices=None, check=None, expected=None, *,
                 keyword=None, flag=None, widget=None, inverted=False):
        self.name, self.default, self.choices = name, default, choices
        self._check = check
        self.expected = expected or (f"must be {_spoken(choices)}" if choices else "")
        self.keyword = keyword or name
        self.flag = flag
        self.widget = widget
        self.inverted = inverted

    def problem(self, value):
        """The :class:`~nbllm.exceptions.OptionError` for a bad ``value``, or None."""
        if self.choices is not None:
            ok = _hashable(value) and value in self.choices
        else:
            ok = self._check(value)
        if ok:
            return None
        # An inverted keyword would turn the expected values round too.
        name = self.name if self.inverted else self.spoken_name()
        return OptionError(f"{name} {self.expected}; got {value!r}", option=self.name)

    def validate(self, value):
        """Return ``value``, or raise an error that names what was expected.

        Raises
        ------
        OptionError
            A ValueError, ``"<name> <expected>; got <value>"``.
        """
        error = self.problem(value)
        if error is not None:
            raise error
        return value

    def spoken_name(self):
        """The option's name in the current way in (``--truncation`` in a magic)."""
        way = current_way_in()
        if way == ESTIMATOR:
            return self.name
        if way == PANEL and self.widget is not None:
            return f"'{self.widget}'"
        return self.flag if way == MAGIC and self.flag else self.keyword

    def setting(self, value):
        """The words that ask for ``value`` in the current way in.

        ``PROBAS_SUM_TO_1.setting(False)`` is ``probas_sum_to_1=False`` for
        an estimator, ``raw=True`` in Python's notebook functions, ``--raw``
        in a magic and ``'raw probabilities'`` in the panel.
        """
        way = current_way_in()
        if way == ESTIMATOR:
            return f"{self.name}={value!r}"
        shown = (not value) if self.inverted else value
        if way == PANEL and self.widget is not None:
            return f"'{self.widget}'" if shown is True else f"{self.widget} {shown}"
        if way == MAGIC and self.flag:
            return self.flag if shown is True else f"{self.flag} {shown}"
        return f"{self.keyword}={shown!r}"


def _hashable(value):
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _positive_int(value):
    return (isinstance(value, numbers.Integral) and not isinstance(value, bool)
            and value >= 1)


TRUNCATION = Option("truncation", "right", ("right", "left", "middle", "error"),
                    flag="--truncation")
CALIBRATION = Option("calibration", None, (None, "content_free", "batch", "fit"),
                     flag="--calibration")
USE_CHAT_TEMPLATE = Option("use_chat_template", "auto", ("auto", True, False))
PROGRESS = Option("progress", "auto", ("auto", True, False))
BATCH_SIZE = Option("batch_size", "auto",
                    check=lambda v: v == "auto" if isinstance(v, str) else _positive_int(v),
                    expected="must be 'auto' or a positive integer")
EXAMPLE_SELECTION = Option("example_selection", "similar",
                           ("stratified", "random", "similar"), flag="--selection")
EXAMPLE_PLACEMENT = Option("example_placement", "prompt", ("prompt", "turns"))
MAX_SAMPLES = Option("max_samples", 5, check=_positive_int,
                     expected="must be a positive integer", flag="--max-samples")
# skorch's values and wording (its message shows the value without quotes).
ERROR_LOW_PROB = Option("error_low_prob", "ignore", ("ignore", "raise", "warn", "return_none"))
# The notebook's threshold: the low-probability threshold of the single-label
# estimators, or the probability from which a label applies with multi_label.
THRESHOLD = Option("threshold", None, check=lambda v: v is None or (
    isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 <= v <= 1),
    expected="must be between 0 and 1", flag="--threshold")
MULTI_LABEL = Option("multi_label", False, (True, False), flag="--multi-label")
# One concept, three words: normalised probabilities or the model's own.
PROBAS_SUM_TO_1 = Option("probas_sum_to_1", True, (True, False), keyword="raw",
                         flag="--raw", widget="raw probabilities", inverted=True)
# The notebook layer draws few-shot examples with a fixed seed so that a rerun
# cell shows the same prompt (and hits the result cache); the estimators keep
# skorch's default, None.
NOTEBOOK_RANDOM_STATE = 0


def check_error_low_prob(value):
    """skorch's check and message for ``error_low_prob``."""
    if not _hashable(value) or value not in ERROR_LOW_PROB.choices:
        raise OptionError(
            f"error_low_prob must be one of {', '.join(ERROR_LOW_PROB.choices)}; got "
            f"{value} instead", option="error_low_prob"
        )
    return value


def check_threshold_low_prob(value):
    """skorch's check and message for ``threshold_low_prob``."""
    if not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise OptionError(
            f"threshold_low_prob must be between 0 and 1, got {value!r} instead",
            option="threshold_low_prob")
    return value


def labels_problem(labels):
    """The :class:`~nbllm.exceptions.LabelsError` for a bad label list, or None.

    The notebook layer's ``labels=`` (``--labels``, the panel's tags) is an
    explicit list: non-empty, no blanks, no repeats (a label listed twice
    there is a mistake, unlike a repeated target in ``fit(X, y)``).
    """
    if isinstance(labels, str):
        return LabelsError(
            f"labels must be a list of strings, got the single string {labels!r}"
        )
    labels = [str(label) for label in (labels or [])]
    if not labels:
        return LabelsError("labels must contain at least one label; got none")
    blank = [label for label in labels if not label.strip()]
    if blank:
        return LabelsError(f"labels must be non-empty strings; got {blank[0]!r}")
    seen, repeated = set(), []
    for label in labels:
        if label in seen and label not in repeated:
            repeated.append(label)
        seen.add(label)
    if repeated:
        return LabelsError(
            f"labels must be unique; repeated: {', '.join(map(repr, repeated))}"
        )
    return None


def check_labels(labels):
    """An explicit label list as a list of str (see :func:`labels_problem`).

    Raises
    ------
    LabelsError
        A ValueError naming what is wrong.
    """
    error = labels_problem(labels)
    if error is not None:
        raise error
    return [str(label) for label in labels]
