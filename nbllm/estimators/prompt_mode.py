"""How a prompt goes to the model, decided once in ``fit``.

``use_chat_template`` (True, False or 'auto'), the tokenizer's chat template,
the prompt's trailing spaces, the kind of model and, for few-shot, where the
examples go together decide four things that the rest of an estimator reads:
whether the prompt is sent as a chat message or raw, what goes before a
label's own text, how many characters of the filled template's end the label
takes over, and a one-line reason to show the user.  :func:`resolve` is the
only place that decides them; :class:`PromptMode` holds the answer.
"""

from dataclasses import dataclass

from ..engine.scoring.prompts import trailing_space
from ..exceptions import OptionError


@dataclass(frozen=True)
class PromptMode:
    """The prompt policy of a fitted estimator.

    Attributes
    ----------
    mode : {'raw', 'chat'}
        Sent through the tokenizer's chat template, or as typed.
    label_prefix : str
        What goes before a label's own text when it continues a raw prompt
        (``''``, ``' '``, or the template's trailing spaces).
    cut : int
        How many characters at the end of the filled template the label
        takes over (the spaces it folds into its first token).
    reason : str
        Why, in a few words, e.g. ``"sent raw, the label after a space
        (use_chat_template='auto')"``.
    """

    mode: str
    label_prefix: str
    cut: int
    reason: str

    @property
    def chat(self):
        """True when the prompt goes through the chat template."""
        return self.mode == "chat"


def resolve(use_chat_template, prompt, tokenizer, *, encoder_decoder, auto_raw,
            example_placement=None):
    """Decide how ``prompt`` goes to the model.

    Parameters
    ----------
    use_chat_template : bool or 'auto'
        The estimator's parameter.
    prompt : str
        The prompt template in use.
    tokenizer : tokenizer
        Its ``chat_template`` (or none) decides what 'auto' and True can do.
    encoder_decoder : bool
        An encoder-decoder model's label starts the decoder's own sequence
        instead of continuing the prompt.
    auto_raw : bool
        The single-label rule for 'auto': raw, the label after a space.
        Multi-label's yes/no questions use the trailing-space rule instead.
    example_placement : str, optional
        Few-shot's; 'turns' writes the examples as chat turns.

    Returns
    -------
    PromptMode

    Raises
    ------
    OptionError
        For ``use_chat_template=True`` with a tokenizer that has no chat
        template.
    """
    has_template = bool(getattr(tokenizer, "chat_template", None))
    auto = use_chat_template == "auto"
    if use_chat_template is True and not has_template:
        raise OptionError(
            "use_chat_template=True, but the tokenizer has no chat template; "
            "use 'auto' or False", option="use_chat_template")
    if auto and auto_raw:
        # Raw, the label after a space: on 22 phrasings (half with trailing
        # whitespace) this beat chat, the former trailing-space rule and a
        # choice by label mass, and it cannot depend on invisible spaces
        # (benchmarks/prompt_modes.py, RESULTS.md).  Few-shot examples placed
        # as chat turns are a chat by nature.
        chat = has_template and example_placement == "turns"
    elif auto:
        # Multi-label's yes/no questions (not measured under the rule above):
        # a template ending with a space is a completion, others a chat turn.
        chat = has_template and not trailing_space(prompt)
    else:
        chat = bool(use_chat_template)
    if chat:
        return PromptMode("chat", "", 0, _chat_reason(auto, auto_raw))
    if encoder_decoder:
        return PromptMode("raw", "", 0,
                          "sent raw to the encoder; the label is the decoder's answer")
    if auto and auto_raw:
        # The label follows after one space whatever whitespace ends the
        # template (it is cut), so "...Label:" and "...Label: " score alike.
        return PromptMode("raw", " ", len(prompt) - len(prompt.rstrip()),
                          "sent raw, the label after a space (use_chat_template='auto')")
    # The spaces that end the template belong to the label (see prompts).
    prefix = trailing_space(prompt)
    reason = ("sent raw: the prompt ends with a space (use_chat_template='auto')" if auto
              else "sent raw as typed (use_chat_template=False, skorch's scoring)")
    return PromptMode("raw", prefix, len(prefix), reason)


def _chat_reason(auto, auto_raw):
    if auto and not auto_raw:
        return ("sent as chat: the prompt does not end with a space "
                "(use_chat_template='auto')")
    if auto:
        return "sent as chat turns (example_placement='turns')"
    return "sent as a chat message (use_chat_template=True)"
