"""Few-shot examples written inline, as ``label: text`` lines.

Used by ``%%fewshot`` (above its ``---`` line) and by the panel's examples box.
"""

from ..exceptions import ExamplesError

INLINE_SEPARATOR = "---"


def parse_inline_examples(block):
    """Parse ``label: text`` lines into (text, label) pairs.

    A label that contains ``:`` must be quoted: ``"a:b": some text``.

    Raises
    ------
    ValueError
        Naming the first line that is not ``label: text``.
    """
    pairs = []
    for number, line in enumerate(block.splitlines(), 1):
        if not line.strip():
            continue
        stripped = line.strip()
        if stripped[0] in "\"'":
            quote = stripped[0]
            end = stripped.find(quote, 1)
            if end < 0 or stripped[end + 1:end + 2] != ":":
                raise ExamplesError(
                    f"example line {number}: unclosed quoted label in {line!r}"
                )
            label, text = stripped[1:end], stripped[end + 2:]
        else:
            label, sep, text = stripped.partition(":")
            if not sep:
                raise ExamplesError(
                    f"example line {number} must look like 'label: text'; got {line!r}"
                )
        if not label.strip():
            raise ExamplesError(f"example line {number} has an empty label: {line!r}")
        pairs.append((text.strip(), label.strip()))
    return pairs
