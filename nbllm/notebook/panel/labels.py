"""The panel's labels box: what a typed or pasted tag means.

The box is an ipywidgets ``TagsInput``; its front end commits what is typed
as one tag (on Enter, Tab or leaving the box) and knows nothing of commas.
A tag that arrives on its own and holds a comma or a quote is read as the
magic reads ``--labels`` (:func:`.magic_syntax.read_labels`: one CSV row,
quotes protect commas), so ``negative, positive`` typed or pasted becomes
two labels.  Labels set from Python (``panel.labels.value = [...]``) are
taken as they are.
"""

from ...exceptions import LabelsError
from ..magic_syntax import read_labels

# The box's placeholder: what works in it.
HINT = "labels, comma-separated (negative, positive); Enter or Tab adds them"


def added_tag(old, new):
    """The one tag ``new`` has that ``old`` lacks, with its position.

    Returns
    -------
    (int, str) or None
        None unless ``new`` is ``old`` with exactly one tag inserted (what
        the front end does when a tag is typed or pasted).
    """
    old, new = list(old), list(new)
    if len(new) != len(old) + 1:
        return None
    at = next((i for i, (was, now) in enumerate(zip(old, new)) if was != now), len(old))
    if new[:at] + new[at + 1:] != old:
        return None
    return at, new[at]


def split_added(old, new):
    """The box's value once a newly typed ``a, b`` tag is split into labels.

    Parameters
    ----------
    old, new : sequence of str
        The box's value before and after the change.

    Returns
    -------
    list of str or None
        The labels to put in the box, or None when ``new`` stays as it is
        (no single tag was added, or it holds no comma or quote).  Empty
        items (``a, b,``) and labels already in the box are dropped.
    """
    added = added_tag(old, new)
    if added is None:
        return None
    at, tag = added
    if not any(c in tag for c in ",\"'"):
        return None
    try:
        labels = read_labels(tag)
    except Exception:  # noqa: BLE001 - a tag that is not CSV stays as typed
        return None
    kept = list(new[:at]) + list(new[at + 1:])
    fresh = []
    for label in labels:
        if label and label not in kept and label not in fresh:
            fresh.append(label)
    return list(new[:at]) + fresh + list(new[at + 1:])


def check_not_merged(labels):
    """Refuse one label that holds a comma: it was meant as several.

    Raises
    ------
    LabelsError
        When ``labels`` is a single label with a comma in it.
    """
    if len(labels) == 1 and "," in labels[0]:
        raise LabelsError(
            f"one label {labels[0]!r} holds a comma; a classifier needs two or more: "
            "type them as negative, positive (quote a label that has a comma)")
    return labels
