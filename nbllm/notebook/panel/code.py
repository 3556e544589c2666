"""The panel's "Copy as code": one magic cell and one Python snippet, each runnable alone.

Both say what the panel would run: the same labels, model, prompt, examples
and options, through public API only.  Texts from a DataFrame are referred to
by the user's variable and column; texts typed into the panel are written out,
all of them up to :data:`MAX_INLINE_TEXTS`; past that the code reads them from
the variable :data:`TEXTS_VARIABLE`, and a note says how to make it.  The options
written are those that differ from their defaults in :mod:`nbllm.options`'
table, each in the words of its way in (``--raw`` in the magic,
``probas_sum_to_1=False`` in Python) as :mod:`.magic_syntax` reads them back.
The panel shows each snippet in a :class:`.front_end.CodeBox`.
"""

from dataclasses import dataclass, field

from ... import options as table
from ..classify import EXPLAIN_ROWS
from ..magic_syntax import quote, write_labels, write_option, write_template

# Typed texts up to this many are written into the code; more would make a
# cell too long to read, so the code reads them from a variable instead.
MAX_INLINE_TEXTS = 100
TEXTS_VARIABLE = "texts"
# What a DataFrame is called in the code when no variable of the user's holds it.
FALLBACK_DATA_NAME = "data"


def variable_holding(value, namespace):
    """The name of a user variable that is ``value`` itself, or None."""
    for name, held in namespace.items():
        if held is value and not name.startswith("_"):
            return name
    return None


@dataclass
class PanelCode:
    """The two snippets and what the user should know about them.

    Attributes
    ----------
    magic : str or None
        One ``%%zeroshot`` / ``%%fewshot`` cell; None when the settings
        cannot be written as magic options (see ``magic_note``).
    python : str
        The same classifier in Python.
    magic_note, python_note : str
        One line each, shown above the snippet ('' when there is nothing to say).
    """

    magic: str
    python: str
    magic_note: str = ""
    python_note: str = ""


@dataclass
class PanelSettings:
    """What the panel would run, as plain values (read off its widgets).

    ``prompt`` and ``example_template`` are None when they are the defaults;
    ``options`` maps each :class:`nbllm.options.Option` the classifier takes
    to its value in the estimators' words; the code writes those that differ
    from their defaults.  Texts come from ``data_name[column]`` rows ``rows``
    when ``column`` is set, else from ``texts``; ``panel_name`` is the
    user's variable that holds the panel (None when none does).  ``explain``:
    the last run was Explain, so the code explains too.
    """

    few: bool
    labels: list
    model: str = ""
    prompt: str = None
    options: dict = field(default_factory=dict)
    example_template: str = None
    examples_var: str = ""
    examples: list = field(default_factory=list)
    example_labels: list = field(default_factory=list)
    data_name: str = None
    column: str = None
    rows: tuple = (0, 0)
    texts: list = field(default_factory=list)
    panel_name: str = None
    explain: bool = False


def _texts_in_variable(s):
    """A note when the typed texts are too many to write out ('' when not):
    the code then reads them from :data:`TEXTS_VARIABLE`."""
    if len(s.texts) <= MAX_INLINE_TEXTS:
        return ""
    source = f"{s.panel_name}.text_list()" if s.panel_name else "the panel's text_list()"
    return (f"The panel holds {len(s.texts)} typed texts, more than the "
            f"{MAX_INLINE_TEXTS} the code writes out: it reads them from the variable "
            f"{TEXTS_VARIABLE}. Make it first: {TEXTS_VARIABLE} = {source}")


def _list_literal(items):
    """A list as Python source, one item per line (readable when pasted)."""
    if len(items) <= 1:
        return repr(list(items))
    return "[\n" + "".join(f"    {item!r},\n" for item in items) + "]"


# What the magic's table shows instead of an option it has no flag for.
_INSTEAD = {"error_low_prob": "the low-probability policy; its table flags low rows "
                              "instead"}


def _magic_default(option):
    """The value (in the estimators' words) a magic gives ``option`` unless told;
    a magic's None means the estimators' default."""
    shown = option.default_for(table.MAGIC)
    return option.default if shown is None else option.to_estimator(shown)


def _magic_options(s):
    """The magic's words for the options that differ from its defaults, and a
    note for those it has no flag for."""
    words, missing = [], []
    for option, value in s.options.items():
        if value == _magic_default(option):
            continue
        if option.flag:
            words.append(write_option(option, value))
        else:
            missing.append(_INSTEAD.get(option.name, option.name))
    note = f"The magic has no option for {'; '.join(missing)}." if missing else ""
    return [word for word in words if word], note


def _magic(s):
    """The magic cell, or (None, why) when its option line cannot say it all."""
    options = [f"--labels {write_labels(s.labels)}"]
    if s.model:
        options.append(f"--model {quote(s.model)}")
    chosen, note = _magic_options(s)
    options += chosen
    if s.explain:
        options.append(table.EXPLAIN.flag)
    for option, template in ((table.PROMPT, s.prompt),
                             (table.EXAMPLE_TEMPLATE, s.example_template)):
        if template is None:
            continue
        name, quoted = option.flag, write_template(template)
        if quoted is None:
            return None, (f"This {name[2:].replace('-', ' ')} cannot be written on a magic's "
                          "option line (it holds a backslash, both kinds of quote or "
                          "a control character, or is one bare word); use the Python "
                          "code, or put the template in a variable and pass "
                          f"{name} VARIABLE.")
        options.append(f"{name} {quoted}")
    if s.column is not None:
        start, end = s.rows
        options += [f"--input {s.data_name or FALLBACK_DATA_NAME}",
                    f"--column {quote(s.column)}", f"--rows {start}:{end}"]
        texts = []
    elif _texts_in_variable(s):
        options.append(f"--input {TEXTS_VARIABLE}")
        texts = []
        note = " ".join(n for n in (note, _texts_in_variable(s)) if n)
    else:
        texts = s.texts
    body = list(texts)
    if s.few:
        if s.examples_var:
            options.append(f"--examples {s.examples_var}")
        else:
            lines = [f'"{label}": {text}' if ":" in label else f"{label}: {text}"
                     for text, label in s.examples]
            body = lines + ["---"] + body
    # IPython refuses a cell magic with an empty body: then it is a line magic.
    percent = "%%" if body else "%"
    head = f"{percent}{'fewshot' if s.few else 'zeroshot'} {' '.join(options)}"
    return "\n".join([head] + body), note


def _python(s):
    """The Python snippet (public API only) and its note."""
    cls = "FewShotClassifier" if s.few else "ZeroShotClassifier"
    args = [repr(s.model)] if s.model else []
    if s.prompt is not None:
        args.append(f"prompt={s.prompt!r}")
    args += [f"{option.name}={value!r}" for option, value in s.options.items()
             if value != option.default]
    if s.example_template is not None:
        args.append(f"example_template={s.example_template!r}")
    lines = [f"from nbllm import {cls}", "", f"clf = {cls}({', '.join(args)})"]
    if s.few:
        # Labels without examples must stay predictable, as in the panel.
        extra = (f", classes={s.labels!r}"
                 if set(s.labels) - {str(y) for y in s.example_labels} else "")
        if s.examples_var:
            v = s.examples_var
            lines.append(f"clf.fit({v}['text'], {v}['label']{extra})")
        else:
            lines.append(f"examples = {_list_literal(s.examples)}")
            lines.append(f"clf.fit([t for t, _ in examples], [y for _, y in examples]{extra})")
    else:
        lines.append(f"clf.fit(None, {s.labels!r})")
    note = ""
    if s.column is not None:
        start, end = s.rows
        name = s.data_name or FALLBACK_DATA_NAME
        lines.append(f"texts = {name}[{s.column!r}].iloc[{start}:{end}].tolist()")
    else:
        note = _texts_in_variable(s)
        if note:  # said in the code too, for whoever reads the pasted cell
            lines.append(f"# {TEXTS_VARIABLE}: the panel's {len(s.texts)} typed texts "
                         f"(too many to write out), made before this cell")
        else:
            lines.append(f"{TEXTS_VARIABLE} = {_list_literal(s.texts)}")
    lines.append(f"probas = clf.predict_proba({TEXTS_VARIABLE})  # one column per label of clf.classes_")
    if s.explain:
        lines.append(f"explanation = clf.explain({TEXTS_VARIABLE}[:{EXPLAIN_ROWS}])"
                     "  # why each label: the words highlighted")
    return "\n".join(lines), note


def build_code(settings):
    """The :class:`PanelCode` for a :class:`PanelSettings`."""
    magic, magic_note = _magic(settings)
    python, python_note = _python(settings)
    if settings.column is not None and settings.data_name is None:
        missing = (f"No variable of yours holds the panel's DataFrame; replace "
                   f"{FALLBACK_DATA_NAME!r} with its name.")
        magic_note = " ".join(n for n in (magic_note, missing) if n)
        python_note = " ".join(n for n in (python_note, missing) if n)
    return PanelCode(magic, python, magic_note, python_note)
