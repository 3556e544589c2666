"""How a value is written on a magic's option line, both ways.

The magics read an option line (:mod:`.magics`); the panel's "Copy as code"
writes one (:mod:`.panel_code`).  Each rule is here once, with its reading
and its writing side by side, so that what the panel writes is what the
magics read back (a test round-trips every rule):

* a value in one pair of quotes is the value without them (IPython's split
  keeps them);
* labels are one CSV row (quotes protect commas);
* in a template, ``\\n`` and ``\\t`` stand for a newline and a tab.
"""

import csv
import io

from IPython.core.error import UsageError

# The escapes a template on the option line may hold, and what they stand for.
ESCAPES = {"\\n": "\n", "\\t": "\t"}
# Characters that make a value need quotes.
_NEEDS_QUOTES = " \"'\t"


def unquote(value):
    """A value without one pair of outer quotes (IPython's split keeps them)."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] \
            and value[0] in "'\"":
        return value[1:-1]
    return value


def quote(value, always=False):
    """``value`` as :func:`unquote` reads it back: in quotes where it needs
    them (or ``always``).

    Raises
    ------
    ValueError
        When it holds both kinds of quote.
    """
    if not always and not any(c in value for c in _NEEDS_QUOTES):
        return value
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(
        f"{value!r} holds both ' and \" and cannot be written as a magic option; "
        "use the Python code instead"
    )


def read_labels(value):
    """Split ``a,b,"c, d"`` into labels; quotes protect commas."""
    if value is None:
        return None
    try:
        labels = next(csv.reader([value], skipinitialspace=True))
    except (csv.Error, StopIteration):
        raise UsageError(f"--labels: cannot parse {value!r}; use a,b,c") from None
    # Checked once, where every way in passes (options.check_labels).
    return [label.strip() for label in labels]


def write_labels(labels):
    """Labels as one ``--labels`` value that :func:`read_labels` reads back."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(labels)
    return quote(buffer.getvalue())


def read_template(value):
    """A template typed on the option line, its escapes decoded."""
    for escape, char in ESCAPES.items():
        value = value.replace(escape, char)
    return value


def write_template(template):
    """A template as a quoted option value that :func:`read_template` reads
    back, or None when the option line cannot hold it."""
    if "\\" in template or template.isidentifier() or any(
            ord(c) < 32 and c not in ESCAPES.values() for c in template):
        return None  # a backslash would be read as an escape; a bare word as a variable
    for escape, char in ESCAPES.items():
        template = template.replace(char, escape)
    try:
        return quote(template, always=True)
    except ValueError:
        return None


def write_option(option, value):
    """An option of :mod:`nbllm.options` set to ``value`` (in the estimators'
    words) as the magics' flag reads it: ``--raw``, ``--threshold 0.05``."""
    shown = (not value) if option.inverted else value
    if option.choices == (True, False):  # a flag with no value (store_true)
        return option.flag if shown else ""
    return f"{option.flag} {quote(str(shown))}"
