"""nbllm's own Sphinx directive: the magics' option list, generated.

``{nbllm-magic-options}`` in a page becomes a table of every flag that
``%%zeroshot`` and ``%%fewshot`` take. The flags that come from the option
table (``nbllm/options.py``) are read from it, with their choices, the
magics' default and the one-line help; the magics' own flags (labels, the
input variable, ...) are read from the magics' argument parsers, which is
where they are declared. Nothing is written by hand, so a new option or a
changed default shows up at the next ``make docs``.

:func:`magic_options_markdown` is plain Python (no Sphinx), so a test can
check the table without building the site.
"""

from nbllm import options

MAGIC_NAMES = ("zeroshot", "fewshot")


def _cell(text):
    """Table-cell text: no pipes or newlines, code spans kept."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code(text):
    """A code span that holds backticks safely."""
    text = str(text)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _parser(magic):
    from nbllm.notebook.magics import NbllmMagics

    return getattr(NbllmMagics, magic).parser


def _value(option):
    """What the flag takes, in the magic's words."""
    if option.magic_action is None and option.choices == (True, False):
        return "(switch)"
    if option.magic_value == "variable":
        return "VAR"
    if option.magic_value == "template":
        return "VAR or 'template'"
    choices = option.magic_choices or option.choices
    if choices:
        return " \\| ".join(_code(c) for c in choices)
    if option.value_type is not None:
        return option.value_type.__name__.upper()
    if (option.doc_type or "").startswith("str"):
        return "NAME"
    return option.doc_type or "VALUE"


def rows():
    """One dict per flag of the magics, the option table's first.

    Keys: ``flags``, ``magics``, ``value``, ``default``, ``help``,
    ``parameter`` (the estimators' keyword, or ''), ``from_table`` (False
    for the magics' own flags).
    """
    found, order = {}, []
    for option in options.TABLE:
        if not option.flag:
            continue
        magics = [m for m in MAGIC_NAMES if m in option.magics]
        if not magics:
            continue  # a flag no magic declares (threshold_low_prob's, say)
        default = option.default_for(options.MAGIC)
        names = [n for n in (option.short, option.flag) if n]
        found[option.flag] = dict(
            flags=names, magics=magics, value=_value(option),
            default="" if default in (None, False) else repr(default),
            help=option.help_text,
            parameter=option.name if option.estimators else "",
            from_table=True)
        order.append(option.flag)
    for magic in MAGIC_NAMES:
        for action in _parser(magic)._actions:
            long = [s for s in action.option_strings if s.startswith("--")]
            if not long or long[0] == "--help":
                continue
            if long[0] in found:
                if magic not in found[long[0]]["magics"]:
                    found[long[0]]["magics"].append(magic)
                continue
            default = action.default
            found[long[0]] = dict(
                flags=list(action.option_strings), magics=[magic],
                value=action.metavar or (long[0].lstrip("-").upper().replace("-", "_")),
                default="" if default in (None, False, 0) else repr(default),
                help=action.help or "", parameter="", from_table=False)
            order.append(long[0])
    own = [flag for flag in order if not found[flag]["from_table"]]
    table = [flag for flag in order if found[flag]["from_table"]]
    return [found[flag] for flag in own + table]


def magic_options_markdown():
    """The option list as a Markdown table (MyST)."""
    lines = ["| flag | magics | value | default | what it does | estimator parameter |",
             "|---|---|---|---|---|---|"]
    for row in rows():
        flags = ", ".join(_code(f) for f in row["flags"])
        magics = "both" if len(row["magics"]) == len(MAGIC_NAMES) else \
            ", ".join(f"`%%{m}`" for m in row["magics"])
        default = _code(row["default"]) if row["default"] else ""
        parameter = _code(row["parameter"]) if row["parameter"] else ""
        value = row["value"] if "`" in row["value"] or row["value"] == "(switch)" \
            else _code(row["value"])
        lines.append(f"| {flags} | {magics} | {value} | {default} | "
                     f"{_cell(row['help'])} | {parameter} |")
    return "\n".join(lines) + "\n"


def setup(app):
    from docutils.parsers.rst import Directive
    from docutils.statemachine import StringList

    class MagicOptions(Directive):
        """``{nbllm-magic-options}``: the generated option table."""

        has_content = False

        def run(self):
            from docutils import nodes

            holder = nodes.section()
            holder.document = self.state.document
            text = magic_options_markdown()
            self.state.nested_parse(StringList(text.splitlines(), source="nbllm/options.py"),
                                    self.content_offset, holder)
            return holder.children

    app.add_directive("nbllm-magic-options", MagicOptions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
