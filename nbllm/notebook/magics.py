"""IPython magics: ``%%zeroshot``, ``%%fewshot`` and ``%nbllm``.

A thin shell: parse the options, call :func:`nbllm.notebook.classify.classify`, return the
result object (so it renders inline and ``_`` holds it).  Bad options raise
:class:`~IPython.core.error.UsageError`, which IPython shows as one line.
The options' flags, defaults, choices and help come from :mod:`nbllm.options`'
table (:func:`option_argument`); the rest (labels, texts, output) are the
magics' own.
"""

import os
import re
import shlex

from IPython.core.error import UsageError
from IPython.core.magic import (Magics, line_cell_magic, line_magic, magics_class,
                                no_var_expand)
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from . import classify as api
from .inline_examples import INLINE_SEPARATOR, parse_inline_examples
from .magic_syntax import read_labels, read_template, unquote
from .session import MB, session
from .. import options
from ..engine.scoring.result_cache import result_cache
from ..exceptions import LabelsError, UserError
from ..warnings_to_user import words_for_warnings

# The labels' errors are the option's: a magic names it by its flag.
_LABELS_FLAG = "--labels"
# ``%nbllm WORD MB``: the session's cache bounds, in MiB.
_BOUND_COMMANDS = {"prefix-cache": "prefix_cache_mb", "result-cache": "result_cache_mb"}


def _classify(args, texts, index, prompts, opts):
    """Classify (or compare prompts) with the parsed options."""
    if len(prompts) > 1:  # one compare_prompts table instead of a result
        from .compare import compare_prompts

        if opts.pop("explain", False):
            raise UsageError("--explain explains one prompt's results; several --prompt "
                             "compare prompts")
        return compare_prompts(texts, read_labels(args.labels), prompts, **opts)
    return api.classify(texts, read_labels(args.labels), prompt=prompts[0],
                        previews=args.preview, index=index, skip_missing=True, **opts)


# A quoted option value; re.split keeps it (the group) between the other parts.
_QUOTED = re.compile(r"""('[^']*'|"[^"]*")""")


def _expand_part(text, namespace):
    """One unquoted stretch of an option line, expanded as IPython would
    (left as it is when an expression in it fails, as IPython does)."""
    from IPython.utils.text import DollarFormatter

    try:
        return DollarFormatter().vformat(text, args=[], kwargs=dict(namespace))
    except Exception:  # noqa: BLE001 - IPython's own rule: no expansion then
        return text


def row_slice(value):
    """``--rows START:END`` as a slice (either end may be left out; None: all rows)."""
    if value is None:
        return slice(None)
    parts = value.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start, end = (int(p) if p.strip() else None for p in parts)
    except ValueError:
        raise UsageError(f"--rows: expected START:END, e.g. 0:20; got {value!r}") from None
    return slice(start, end)


def option_argument(option):
    """The ``argument`` decorator of an option's flag, all of it from the table:
    flags, default (the magics' own, see ``Option.default_for``), choices, help."""
    default = option.default_for(options.MAGIC)
    kwargs = dict(dest=option.keyword, default=default, help=option.help_text)
    if option.magic_value == "variable":
        kwargs["metavar"] = "VAR"
    if option.magic_action is not None:
        kwargs["action"] = option.magic_action
    elif option.choices == (True, False):
        kwargs["action"] = "store_true"
    else:
        if option.magic_choices or option.choices:
            kwargs["choices"] = option.magic_choices or option.choices
        if option.value_type is not None:
            kwargs["type"] = option.value_type
        if default is not None:
            kwargs["help"] += f" (default {default})"
    return argument(*[name for name in (option.short, option.flag) if name], **kwargs)


def _arguments(decorators):
    """One decorator applying ``decorators`` in order (help lists them so)."""
    def decorate(func):
        for decorator in reversed(decorators):
            func = decorator(func)
        return func
    return decorate


def _magic_options(magic):
    """The decorators of the options the table gives magic ``magic``."""
    return _arguments([option_argument(option) for option in options.flags_of(magic)])


def _common_arguments(func):
    return _arguments([
        argument("-l", _LABELS_FLAG, help="comma-separated labels; quote labels with commas"),
        # argparse formats help with %: '%%' shows as one '%'.
        argument("-i", "--input", help="variable holding a DataFrame, Series or list; "
                 "then write the line magic (one %%, no cell body)"),
        argument("-c", "--column", help="text column when --input is a DataFrame"),
        argument("--rows", metavar="START:END",
                 help="with --input, only these rows, by position (as .iloc[START:END])"),
        argument("-o", "--out", help="store the result in this variable"),
        argument("--preview", type=int, default=0, metavar="N",
                 help="show generation previews for the first N texts"),
    ])(func)


@magics_class
class NbllmMagics(Magics):
    """The ``%%zeroshot``, ``%%fewshot`` and ``%nbllm`` magics."""

    def _expand(self, line):
        """IPython's ``$var`` and ``{expr}`` expansion of an option line, except
        inside quoted values: a quoted prompt's ``{text}`` is the template's,
        whatever variables the user has."""
        parts = _QUOTED.split(line)
        return "".join(part if i % 2 else _expand_part(part, self.shell.user_ns)
                       for i, part in enumerate(parts))

    def _parse(self, func, line):
        line = self._expand(line)
        try:
            args = parse_argstring(func, line)
        except (UsageError, ValueError) as exc:  # ValueError: unclosed quote
            raise UsageError(f"{func.__name__}: {exc}") from None
        # IPython splits the line without removing quotes around a value.
        for name, value in vars(args).items():
            if isinstance(value, list):  # an option given several times
                setattr(args, name, [unquote(v) for v in value])
            else:
                setattr(args, name, unquote(value))
        return args

    def _variable(self, name, option):
        if name not in self.shell.user_ns:
            raise UsageError(f"{option}: no variable named {name!r}")
        return self.shell.user_ns[name]

    def _prompt(self, value, option="--prompt"):
        if value is None:
            return None
        # A bare identifier names a variable; anything else is the template.
        if value.isidentifier():
            prompt = self._variable(value, option)
            if not isinstance(prompt, str):
                raise UsageError(
                    f"{option}: variable {value!r} must hold a str; got "
                    f"{type(prompt).__name__}"
                )
            return prompt
        # A template on the option line cannot hold real newlines; accept
        # the escapes \n and \t for them.
        return read_template(value)

    def _value(self, option, value):
        """An option's parsed value, with the variable or template it names
        read (each of several values when the flag may be repeated)."""
        if value is None or option.magic_value is None:
            return value
        if isinstance(value, list):
            return [self._value(option, v) for v in value]
        if option.magic_value == "variable":
            return self._variable(value, option.flag)
        return self._prompt(value, option.flag)

    def _texts(self, args, body):
        """Texts and their index from --input (and --rows) or the cell body."""
        if args.input is None:
            if args.rows is not None:
                raise UsageError("--rows needs --input: it picks rows of that variable")
            texts = [line.strip() for line in body.splitlines() if line.strip()]
            if not texts:
                raise UsageError("no texts: write one text per line in the cell, or use --input")
            return texts, None
        data = self._variable(args.input, "--input")
        if hasattr(data, "columns"):
            if args.column is None:
                raise UsageError(
                    f"--input {args.input} is a DataFrame; name the text column with "
                    f"--column (one of {', '.join(map(str, data.columns))})"
                )
            if args.column not in data.columns:
                raise UsageError(
                    f"--column: {args.input} has no column {args.column!r}; columns are "
                    f"{', '.join(map(str, data.columns))}"
                )
            series = data[args.column].iloc[row_slice(args.rows)]
            return series.tolist(), series.index
        if hasattr(data, "index") and hasattr(data, "tolist"):
            data = data.iloc[row_slice(args.rows)]
            return data.tolist(), data.index
        if isinstance(data, (list, tuple)):
            return list(data)[row_slice(args.rows)], None
        raise UsageError(
            f"--input: {args.input} must be a DataFrame, Series, list or tuple; got "
            f"{type(data).__name__}"
        )

    def _run(self, magic, args, texts, index, **opts):
        if len(args.prompt or []) > 1 and ("examples" in opts or
                                           getattr(args, "multi_label", False)):
            raise UsageError("several --prompt compare zero-shot prompts; %%fewshot and "
                             "--multi-label take one")
        # Every option of the table this magic has, as parsed (defaults included).
        for option in options.flags_of(magic):
            opts[option.keyword] = self._value(option, getattr(args, option.keyword))
        prompts = opts.pop("prompt") or [None]
        try:
            # Warnings name options as the magics do (--raw).
            with words_for_warnings(options.MAGIC):
                result = _classify(args, texts, index, prompts, opts)
        except UserError as exc:
            # Only nbllm's user errors become one line, the options it names
            # said as the magics say them; anything else is a bug and keeps
            # its traceback.
            named = f"{_LABELS_FLAG}: " if isinstance(exc, LabelsError) else ""
            raise UsageError(f"{named}{options.in_words(exc, options.MAGIC)}") from None
        if args.out:
            self.shell.user_ns[args.out] = result
        return result

    @magic_arguments()
    @_common_arguments
    @_magic_options("zeroshot")
    @no_var_expand  # expanded by _parse, outside quoted values
    @line_cell_magic
    def zeroshot(self, line, cell=""):
        """Classify one text per line of the cell, zero-shot.

        With ``--input VAR`` the texts come from the variable: write it as a
        line magic, with one ``%`` and no body (IPython refuses a ``%%`` cell
        with an empty body before nbllm runs):
        ``%zeroshot --labels a,b --input df --column text``.

        Example::

            %%zeroshot --labels negative,positive
            I love this airline
            my bag is lost again
        """
        args = self._parse(self.zeroshot, line)
        if args.labels is None:
            raise UsageError("%%zeroshot needs --labels, e.g. --labels negative,positive")
        texts, index = self._texts(args, cell)
        return self._run("zeroshot", args, texts, index)

    @magic_arguments()
    @_common_arguments
    @_magic_options("fewshot")
    @argument("-e", "--examples", help="variable with a DataFrame or (text, label) pairs")
    @argument("--text-col", default="text", help="text column of --examples")
    @argument("--label-col", default="label", help="label column of --examples")
    @no_var_expand
    @line_cell_magic
    def fewshot(self, line, cell=""):
        """Classify texts with a few labelled examples in the prompt.

        Examples come from ``--examples VAR`` or inline, as ``label: text``
        lines above a ``---`` line, with the texts to classify below it.  With
        ``--examples`` and ``--input VAR`` there is no body: write the line
        magic, ``%fewshot --examples train --input df --column text``::

            %%fewshot
            positive: great flight, thanks
            negative: two hours late, no food
            ---
            the crew was lovely
        """
        args = self._parse(self.fewshot, line)
        body = cell
        if args.examples is not None:
            examples = self._variable(args.examples, "--examples")
        else:
            lines = cell.splitlines()
            if INLINE_SEPARATOR not in [l.strip() for l in lines]:
                raise UsageError(
                    "%%fewshot needs examples: --examples VAR, or 'label: text' lines "
                    "above a '---' line"
                )
            cut = [l.strip() for l in lines].index(INLINE_SEPARATOR)
            try:
                examples = parse_inline_examples("\n".join(lines[:cut]))
            except UserError as exc:
                raise UsageError(str(exc)) from None
            body = "\n".join(lines[cut + 1:])
            if not examples:
                raise UsageError("no examples above the '---' line")
        texts, index = self._texts(args, body)
        return self._run("fewshot", args, texts, index, examples=examples,
                         text_col=args.text_col, label_col=args.label_col)

    @line_magic
    def nbllm(self, line):
        """Show or set session defaults.

        ``%nbllm`` shows the model, device, dtype, cache counters and loaded
        models; ``%nbllm model NAME``, ``%nbllm device cpu|cuda|auto`` and
        ``%nbllm cache clear`` change them; ``%nbllm cache DIR`` keeps results
        on disk under DIR (``%nbllm cache off`` stops that); ``%nbllm
        prefix-cache MB`` bounds the prompt prefixes' keys and values kept per
        model between calls (256 MiB by default); ``%nbllm result-cache MB``
        bounds the results kept in memory (512 MiB by default, the least
        recently used dropped first; a disk result cache keeps them all);
        ``%nbllm panel`` opens the panel.

        ``%nbllm cache`` lists the converted copies of GGUF models in the
        cache folder (each GGUF file is converted once to safetensors,
        several times its size) with their source file, dtype, size, whether
        this environment can use them and when they were last used, and the
        GGUF files assembled there.  ``%nbllm cache delete NAME`` deletes one;
        ``%nbllm cache delete stale`` deletes those this environment cannot
        use (made by an older nbllm or other library versions, or incomplete)
        and the leftovers of interrupted conversions; ``%nbllm cache delete
        all`` deletes every copy (a later load converts again).  A copy that a
        model loaded in this kernel uses is kept.
        """
        words = shlex.split(line)
        if not words:
            return status()
        command, rest = words[0], words[1:]
        if command == "model" and len(rest) == 1:
            session.model = None if rest[0] in ("default", "none") else rest[0]
        elif command == "device" and len(rest) == 1:
            from ..engine.loading.devices import resolve_device

            try:
                resolve_device(rest[0])
            except UserError as exc:
                raise UsageError(str(exc)) from None
            session.device = rest[0]
        elif command == "panel" and not rest:
            from .panel.panel import Panel

            return Panel()
        elif command == "cache" and rest == ["clear"]:
            from ..engine.scoring.result_cache import disk_cache, result_cache

            result_cache.clear()
            disk = disk_cache(session.cache_dir)
            if disk is not None:
                disk.clear()
        elif command == "cache" and (not rest or rest[0] == "delete"):
            return _converted_copies(rest[1:] if rest else None)
        elif command == "cache" and len(rest) == 1:
            session.cache_dir = None if rest[0] in ("none", "off") else rest[0]
        elif command in _BOUND_COMMANDS and len(rest) == 1:
            try:
                size = float(rest[0])
            except ValueError:
                raise UsageError(f"%nbllm {command} takes a number of MiB; "
                                 f"got {rest[0]!r}") from None
            try:
                setattr(session, _BOUND_COMMANDS[command], size)
            except UserError as exc:
                raise UsageError(str(exc)) from None
        else:
            raise UsageError(
                f"%nbllm: unknown command {line.strip()!r}; use '%nbllm', "
                "'%nbllm model NAME', '%nbllm device cpu|cuda|auto', "
                "'%nbllm cache clear|DIR', '%nbllm cache [delete NAME|stale|all]', "
                "'%nbllm prefix-cache MB', '%nbllm result-cache MB' or '%nbllm panel'"
            )
        return status()


def _converted_copies(delete):
    """``%nbllm cache``'s listing; with ``delete`` (the words after ``delete``)
    it deletes first and says what it did above the listing."""
    from ..engine.loading.converted_copies import converted_copies, delete_converted
    from .cache_listing import CacheListing, deletion_note

    note = None
    if delete is not None:
        if len(delete) != 1:
            raise UsageError("%nbllm cache delete: say what to delete: a converted copy's "
                             "name (see %nbllm cache), 'stale' or 'all'")
        try:
            note = deletion_note(delete_converted(delete[0]))
        except UserError as exc:
            raise UsageError(str(exc)) from None
    return CacheListing(converted_copies(), note)


# JupyterLab right-aligns table cells (it is made for numbers); these are
# words, read from the left.  A long value (a path) wraps rather than running
# past a narrow output.
_CELL = "text-align:left;vertical-align:top;padding:2px 8px;overflow-wrap:anywhere"


class Status:
    """The session's settings and caches, as HTML and text."""

    def __init__(self, rows):
        self.rows = rows

    def _repr_html_(self):
        from .display import NO_MATH, esc

        body = "".join(f'<tr><th style="{_CELL};white-space:nowrap">{esc(k)}</th>'
                       f'<td style="{_CELL}">{esc(v)}</td></tr>' for k, v in self.rows)
        return f"<table class=\"nbllm-status {NO_MATH}\">{body}</table>"

    def __repr__(self):
        return "\n".join(f"{k}: {v}" for k, v in self.rows)


def status():
    """A :class:`Status` with the current defaults and cache counters."""
    from ..engine.loading.embedded import describe_embedded_models
    from ..engine.cache_folder import cache_dir
    from ..engine.loading.models import DEFAULT_MODEL, loaded_models

    loaded = loaded_models()
    entries, hits, misses = session.cache_counters
    return Status([
        ("model", session.model or f"{DEFAULT_MODEL} (embedded default)"),
        ("device", session.device),
        ("dtype", session.dtype),
        ("result cache", f"{entries} entries, {hits} hits, {misses} misses"),
        ("cache folder", str(cache_dir())),
        ("disk result cache", session.cache_dir or
         ("$NBLLM_CACHE_DIR" if os.environ.get("NBLLM_CACHE_DIR") else "off")),
        ("loaded models", ", ".join(repr(m) for m in loaded) or "none"),
        ("embedded models", " | ".join(describe_embedded_models())),
        ("prompts", "sent raw, the label after a space (use_chat_template='auto'; "
                    "each result's caption says how its prompt was sent)"),
        ("prefix cache", f"up to {session.prefix_cache_mb:g} MiB of prompt prefixes' "
                         "keys and values per model"),
        ("result cache bound", f"up to {session.result_cache_mb:g} MiB in memory "
                               f"({result_cache.nbytes / MB:.1f} MiB used), the least "
                               "recently used dropped first"),
    ])
