"""Every option's choices, default and check, in one place.

The estimators check their parameters here; the magics' argument parser, the
panel's widgets and the accessors take their choices and defaults from here,
so a new choice or a changed default is one edit.  Plain Python: importing it
costs nothing.
"""

import numbers


def _spoken(values):
    """``'a', 'b' or 'c'``: the choices as a message lists them."""
    shown = [repr(v) for v in values]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


class Option:
    """One option: its name, default, and what values it takes.

    Parameters
    ----------
    name : str
    default : object
    choices : tuple or None
        The values it takes, when they are a fixed set.
    check : callable or None
        ``check(value)`` returns True for a valid value (when there are no
        ``choices``).
    expected : str or None
        What a valid value is, for the error message (default: the choices).
    """

    def __init__(self, name, default, choices=None, check=None, expected=None):
        self.name, self.default, self.choices = name, default, choices
        self._check = check
        self.expected = expected or (f"must be {_spoken(choices)}" if choices else "")

    def validate(self, value):
        """Return ``value``, or raise a ValueError that names what was expected.

        Raises
        ------
        ValueError
            ``"<name> <expected>; got <value>"``.
        """
        if self.choices is not None:
            ok = _hashable(value) and value in self.choices
        else:
            ok = self._check(value)
        if not ok:
            raise ValueError(f"{self.name} {self.expected}; got {value!r}")
        return value


def _hashable(value):
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _positive_int(value):
    return (isinstance(value, numbers.Integral) and not isinstance(value, bool)
            and value >= 1)


TRUNCATION = Option("truncation", "right", ("right", "left", "middle", "error"))
CALIBRATION = Option("calibration", None, (None, "content_free", "batch", "fit"))
USE_CHAT_TEMPLATE = Option("use_chat_template", "auto", ("auto", True, False))
PROGRESS = Option("progress", "auto", ("auto", True, False))
BATCH_SIZE = Option("batch_size", "auto",
                    check=lambda v: v == "auto" if isinstance(v, str) else _positive_int(v),
                    expected="must be 'auto' or a positive integer")
EXAMPLE_SELECTION = Option("example_selection", "similar", ("stratified", "random", "similar"))
EXAMPLE_PLACEMENT = Option("example_placement", "prompt", ("prompt", "turns"))
MAX_SAMPLES = Option("max_samples", 5, check=_positive_int,
                     expected="must be a positive integer")
# skorch's values and wording (its message shows the value without quotes).
ERROR_LOW_PROB = Option("error_low_prob", "ignore", ("ignore", "raise", "warn", "return_none"))
# The notebook layer draws few-shot examples with a fixed seed so that a rerun
# cell shows the same prompt (and hits the result cache); the estimators keep
# skorch's default, None.
NOTEBOOK_RANDOM_STATE = 0


def check_error_low_prob(value):
    """skorch's check and message for ``error_low_prob``."""
    if not _hashable(value) or value not in ERROR_LOW_PROB.choices:
        raise ValueError(
            f"error_low_prob must be one of {', '.join(ERROR_LOW_PROB.choices)}; got "
            f"{value} instead"
        )
    return value


def check_threshold_low_prob(value):
    """skorch's check and message for ``threshold_low_prob``."""
    if not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"threshold_low_prob must be between 0 and 1, got {value!r} instead")
    return value


def check_labels(labels):
    """An explicit label list: non-empty, no blanks, no repeats.

    The notebook layer's ``labels=`` (``--labels``, the panel's tags) goes
    through here once; a label listed twice there is a mistake, unlike a
    repeated target in ``fit(X, y)``.

    Raises
    ------
    ValueError
        Naming what is wrong; every message starts with "labels ".
    """
    if isinstance(labels, str):
        raise ValueError(
            f"labels must be a list of strings, got the single string {labels!r}"
        )
    labels = [str(label) for label in (labels or [])]
    if not labels:
        raise ValueError("labels must contain at least one label; got none")
    blank = [label for label in labels if not label.strip()]
    if blank:
        raise ValueError(f"labels must be non-empty strings; got {blank[0]!r}")
    seen, repeated = set(), []
    for label in labels:
        if label in seen and label not in repeated:
            repeated.append(label)
        seen.add(label)
    if repeated:
        raise ValueError(
            f"labels must be unique; repeated: {', '.join(map(repr, repeated))}"
        )
    return labels
