"""``%nbllm cache``'s answer: the converted GGUF copies as an escaped HTML table.

Pure code: it renders a :class:`nbllm.engine.loading.converted_copies.CacheContents`
and reads nothing itself.  File names come from markers anyone could have
written, so every one of them goes through :func:`html.escape`.
"""

from ..engine.loading.converted_copies import size_text, time_text
from .display import NO_MATH, RESULT_STYLE, esc

COLUMNS = ("name", "source file", "dtype", "size", "status", "last used", "made by")
# The columns whose values are long (names, paths, versions): they wrap, so the
# table fits a narrow output (JupyterLab with its file browser open); the
# short ones keep a line each.
WRAPPED = ("name", "source file", "status", "made by")
CACHE_STYLE = (
    "<style>"
    ".nbllm-cache td.nbllm-wrap{white-space:normal;overflow-wrap:anywhere}"
    ".nbllm-cache caption,.nbllm-cache .nbllm-legend{overflow-wrap:anywhere}"
    "</style>"
)
# The delete commands, as the magic takes them.
DELETE_HELP = (
    ("%nbllm cache delete NAME", "one copy or assembled file"),
    ("%nbllm cache delete stale", "the copies this environment cannot use, and leftovers"),
    ("%nbllm cache delete all", "every copy and leftover"),
)


class CacheListing:
    """The cache folder's converted copies, with what was just deleted (``note``)."""

    def __init__(self, contents, note=None):
        self.contents = contents
        self.note = note

    def _rows(self):
        for copy in self.contents.copies:
            status = copy.status + (", in use" if copy.in_use else "")
            yield (copy.name, copy.source, copy.dtype, size_text(copy.size), status,
                   time_text(copy.last_used), copy.converter)

    def _summary(self):
        c = self.contents
        extra = []
        if c.assembled:
            extra.append("assembled GGUF files: "
                         + ", ".join(f"{f.name} ({size_text(f.size)})" for f in c.assembled))
        if c.leftovers:
            stale = sum(f.stale for f in c.leftovers)
            extra.append(f"leftovers of interrupted conversions: {len(c.leftovers)} "
                         f"({size_text(sum(f.size for f in c.leftovers))}, "
                         f"{stale} deletable now)")
        extra.append(f"total: {size_text(c.total)} in {c.folder}")
        return extra

    def _title(self):
        n = len(self.contents.copies)
        where = self.contents.folder / "converted"
        if not n:
            return f"No converted GGUF copies in {where}"
        return f"{n} converted GGUF cop{'y' if n == 1 else 'ies'} in {where}"

    def _repr_html_(self):
        head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
        cells = ['<td class="nbllm-wrap">' if c in WRAPPED else "<td>" for c in COLUMNS]
        body = "".join("<tr>" + "".join(f"{td}{esc(v)}</td>" for td, v in zip(cells, row))
                       + "</tr>" for row in self._rows())
        table = (f"<table class=\"nbllm-table\"><caption>{esc(self._title())}</caption>"
                 f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                 if self.contents.copies else f"<p>{esc(self._title())}</p>")
        note = f"<p class=\"nbllm-heading\">{esc(self.note)}</p>" if self.note else ""
        lines = "".join(f"<div class=\"nbllm-legend\">{esc(line)}</div>"
                        for line in self._summary())
        commands = "; ".join(f"<code>{esc(cmd)}</code>: {esc(what)}"
                             for cmd, what in DELETE_HELP)
        return (f"{RESULT_STYLE}{CACHE_STYLE}<div class=\"nbllm-cache {NO_MATH}\">"
                f"{note}{table}{lines}<div class=\"nbllm-legend\">Delete with {commands}.</div></div>")

    def __repr__(self):
        lines = [self.note] if self.note else []
        lines.append(self._title())
        lines += ["  " + " | ".join(row) for row in self._rows()]
        lines += self._summary()
        lines.append("delete with: " + "; ".join(f"{cmd} ({what})" for cmd, what in DELETE_HELP))
        return "\n".join(lines)


def deletion_note(deletion):
    """One line saying what :func:`~nbllm.engine.loading.converted_copies.delete_converted` did."""
    if not deletion.deleted:
        text = "Nothing deleted"
    else:
        names = ", ".join(name for name, _ in deletion.deleted)
        text = f"Deleted {names} ({size_text(deletion.freed)} freed)"
    if deletion.kept:
        text += "; kept " + ", ".join(f"{name} ({why})" for name, why in deletion.kept)
    return text + "."
