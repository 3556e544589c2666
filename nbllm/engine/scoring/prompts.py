"""Prompt templates: defaults, placeholder checks and rendering.

Templates are Python format strings.  ``{text}`` is the sample, ``{labels}``
the list of class names (filled as ``str(list)``, exactly as skorch.llm does,
so the same template gives the same prompt text in both), and ``{examples}``
the few-shot examples.  Write literal braces as ``{{`` and ``}}``.

The sample text itself is never run through ``str.format``: a tweet that
contains ``{labels}`` or a stray brace is inserted verbatim.
"""

import math
import re
import uuid
from string import Formatter
from ...exceptions import OptionError, PromptError
from ...options import DEFAULT_EXAMPLE_TEMPLATE
from ...warnings_to_user import warn

# Chosen by measurement on the corpus' dev half with the embedded model
# (benchmarks/choose_prompts.py; numbers in the README and RESULTS.md).  They
# are completion prompts: the label continues "Label: " directly, so they are
# sent raw, without the chat template (see ``use_chat_template='auto'``).
DEFAULT_PROMPT_ZERO_SHOT = "Labels: {labels}\n\nText: {text}\nLabel: "

DEFAULT_PROMPT_FEW_SHOT = "Labels: {labels}\n\n{examples}\n\nText: {text}\nLabel: "

# skorch.llm's own example block: the text between triple-backtick fences,
# then its answer.  With skorch's few-shot prompt it reproduces skorch's
# prompt character for character.
SKORCH_EXAMPLE_TEMPLATE = "```\n{text}\n```\n\nYour response:\n{label}\n"
EXAMPLE_PLACEHOLDERS = ("label", "text")

ZERO_SHOT_PLACEHOLDERS = ("labels", "text")
FEW_SHOT_PLACEHOLDERS = ("examples", "labels", "text")
# Marks where the text goes while a template is filled; random per process so
# that no text or example can contain it.
_SENTINEL = f"\x00nbllm-text-{uuid.uuid4().hex}\x00"


def template_placeholders(template):
    """The set of field names used in a format string.

    Raises
    ------
    ValueError
        If the template is not a valid format string (e.g. a lone ``{``).
    """
    try:
        parsed = [(name, spec, conv) for _, name, spec, conv
                  in Formatter().parse(template) if name is not None]
        names = {name for name, _, _ in parsed}
        # Parsing alone misses some errors (mixing '{}' with '{0}', bad
        # format specs); a trial render finds them before any text is scored.
        _LenientFormatter().format(template, **{n: "" for n in names if n})
    except (ValueError, IndexError, KeyError, AttributeError, TypeError) as exc:
        raise PromptError(
            f"The prompt is not a valid template ({exc}); write literal braces "
            "as '{{' and '}}'"
        ) from None
    for name, spec, conv in parsed:
        # The text is inserted as is, never formatted (see the module doc).
        if name == "text" and (spec or conv):
            raise PromptError(
                "The prompt formats the text ('{text" + (f"!{conv}" if conv else "")
                + (f":{spec}" if spec else "") + "}'); write plain {text}: the "
                "text is inserted exactly as given"
            )
    return names


def check_template(template, expected):
    """Warn, with skorch.llm's wording, when placeholders are missing or extra.

    Parameters
    ----------
    template : str
    expected : iterable of str
        The placeholder names the classifier fills.
    """
    found = template_placeholders(template)
    expected = set(expected)
    if found == expected:
        return
    missing, extra = expected - found, found - expected
    msg = (
        f"The prompt may not be correct, it expects {len(expected)} "
        "placeholders: " + ", ".join(f"'{key}'" for key in sorted(expected))
    )
    if missing:
        msg += ", missing keys: " + ", ".join(f"'{key}'" for key in sorted(missing))
    if extra:
        msg += ", extra keys: " + ", ".join(f"'{key}'" for key in sorted(extra))
    warn(msg)


def example_separator(example_template):
    """What goes between two examples: one blank line after each.

    A template that ends with a newline (like skorch's) needs one more
    newline; any other needs two.
    """
    return "\n" if example_template.endswith("\n") else "\n\n"


def check_example_template(example_template):
    """Raise unless ``example_template`` is a format string with exactly
    ``{text}`` and ``{label}``.

    Raises
    ------
    ValueError
        Naming what is missing or extra, or what is not a valid template.
    """
    # Its type is the option table's check (nbllm.options), run before.
    found = template_placeholders(example_template)
    missing = sorted(set(EXAMPLE_PLACEHOLDERS) - found)
    extra = sorted(found - set(EXAMPLE_PLACEHOLDERS))
    if missing or extra:
        problems = ([f"missing {', '.join('{' + n + '}' for n in missing)}"] if missing
                    else []) + ([f"unknown {', '.join('{' + n + '}' for n in extra)}"]
                                if extra else [])
        raise OptionError(
            f"example_template must contain {{text}} and {{label}} and no other "
            f"placeholders; {' and '.join(problems)} in {example_template!r}",
            option="example_template")


def format_examples(examples, example_template=DEFAULT_EXAMPLE_TEMPLATE):
    """Write few-shot (text, label) pairs as one block of text.

    Each pair fills ``example_template``; the filled examples are joined with
    :func:`example_separator`, so one blank line follows each.
    """
    # str.format never re-reads the values it inserts, so an example text
    # that contains "{label}" stays as written.
    return example_separator(example_template).join(
        example_template.format(text=str(text), label=str(label))
        for text, label in examples
    )


def is_missing(value):
    """None, a float NaN, pandas.NA or NaT: pandas' missing markers for texts."""
    return (value is None or (isinstance(value, float) and math.isnan(value))
            or type(value).__name__ in ("NAType", "NaTType"))


def without_examples(template):
    """The few-shot template with ``{examples}`` removed and the blank lines
    around it closed up (for examples given as chat turns instead)."""
    return re.sub(r"\n{3,}", "\n\n", template.replace("{examples}", "")).strip("\n")


def trailing_space(template):
    """The spaces at the very end of a template ('' if none).

    A raw prompt such as ``"...Sentiment: "`` means "the label follows after a
    space".  Tokenizers fold that space into the label's first token
    (``" positive"``), so nbllm scores the label with its leading space and
    drops the space from the prompt: the tokens are those of the joint string.
    """
    return template[len(template.rstrip(" ")):]


def label_token_ids(tokenizer, label, prefix=""):
    """Token ids of ``prefix + label`` as they appear after other text.

    A bare ``" positive"`` can tokenize differently at the start of a string
    (SentencePiece adds its own word marker), so the label is tokenized after
    an anchor word and the anchor's tokens are removed.
    """
    encode = lambda s: list(tokenizer(s, add_special_tokens=False)["input_ids"])
    if not prefix:
        return encode(label)
    anchor = encode("x")
    joint = encode("x" + prefix + label)
    if joint[:len(anchor)] == anchor and len(joint) > len(anchor):
        return joint[len(anchor):]
    return encode(prefix + label)


class _LenientFormatter(Formatter):
    """Renders unknown and positional placeholders as written, e.g. ``{}``.

    The user was already warned about them by :func:`check_template`.
    """

    def get_field(self, field_name, args, kwargs):
        first = re.split(r"[.\[]", field_name, maxsplit=1)[0]
        if first and not first.isdigit() and first not in kwargs:
            # An unknown field, indexed or not ('{foo[x]}'): keep it whole.
            return "{" + field_name + "}", first
        return super().get_field(field_name, args, kwargs)

    def get_value(self, key, args, kwargs):
        if isinstance(key, str) and key in kwargs:
            return kwargs[key]
        return "{}" if isinstance(key, int) else "{" + key + "}"


class PromptRenderer:
    """Renders a checked template for one sample, optionally via a chat template.

    Parameters
    ----------
    template : str
    fields : dict
        Values for every placeholder except ``text`` (labels, examples).
    tokenizer : transformers tokenizer or None
        Needed when ``use_chat`` is true.
    use_chat : bool
        Send the rendered prompt as a user message with the assistant
        generation prompt appended.
    strip_end : int
        Characters to drop from the end of the rendered template: its
        trailing spaces, which are scored as part of the labels
        (:func:`trailing_space`).
    history : list of (str, str)
        Earlier (user, assistant) chat turns, e.g. few-shot examples written
        as questions already answered; needs ``use_chat``.
    """

    def __init__(self, template, fields, tokenizer=None, use_chat=False, strip_end=0,
                 history=()):
        self.tokenizer = tokenizer
        self.use_chat = use_chat
        self.history = list(history)
        values = dict(fields, text=_SENTINEL)
        # Format once with a sentinel, then split: sample texts are inserted
        # by concatenation and are never parsed as format strings.
        filled = _LenientFormatter().format(template, **values)
        self.pieces = filled[:len(filled) - strip_end].split(_SENTINEL)
        self.chat_pieces = None
        if use_chat:
            # Rendering the chat template (Jinja) per text is slow on big jobs;
            # render it once around the sentinel, and keep that fast path only
            # if it gives exactly what the template gives for a probe text.
            pieces = self._chat(self.user_message(_SENTINEL)).split(_SENTINEL)
            probe = " probe {text} \n"
            if probe.join(pieces) == self._chat(self.user_message(probe)):
                self.chat_pieces = pieces

    def for_texts(self, texts):
        """The renderer of each text: this one for all (few-shot with
        per-text examples returns a different one per text)."""
        return [self] * len(texts)

    def user_message(self, text):
        """The template filled with ``text`` (before any chat template)."""
        return str(text).join(self.pieces)

    def render(self, text):
        """The exact string the model sees for ``text``."""
        if self.chat_pieces is not None:
            return str(text).join(self.chat_pieces)
        message = self.user_message(text)
        return self._chat(message) if self.use_chat else message

    def _chat(self, message):
        turns = [{"role": role, "content": content}
                 for user, assistant in self.history
                 for role, content in (("user", user), ("assistant", assistant))]
        return self.tokenizer.apply_chat_template(
            turns + [{"role": "user", "content": message}],
            tokenize=False,
            add_generation_prompt=True,
        )

    def head(self):
        """The rendered prompt up to where the text goes (the shared prefix)."""
        return self.render(_SENTINEL).split(_SENTINEL)[0]
