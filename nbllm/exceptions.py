"""Exceptions raised by nbllm.

Every error about what the user gave (labels, options, texts, examples, a
prompt, a model, a file, a column) is a :class:`UserError`.  Each concrete
class also inherits the built-in type nbllm raised for it before this
hierarchy existed (``ValueError``, ``TypeError``, ``FileNotFoundError``,
``ImportError``, ``KeyError``), so ``except ValueError`` keeps catching it.

The notebook's ways in show a :class:`UserError` as one line (IPython's
``UsageError`` in a magic, the error line in the panel); any other exception
is a bug in nbllm and keeps its traceback.
"""


class _NamesOptions:
    """A message that may name options (see :class:`UserError`)."""

    option = None
    named = {}
    template = None

    def __init__(self, message, *, option=None, named=None):
        if named:
            self.named, self.template = dict(named), message
            message = message.format(**{
                field: words for name, value in named.items()
                for field, words in ((name, name), (name + "=", f"{name}={value!r}"))})
        super().__init__(message)
        if option is not None:
            self.option = option


class UserError(_NamesOptions, Exception):
    """A mistake in what the user gave nbllm, with a one- or two-line message.

    A message that names options is structured: ``message`` is then a
    template whose ``{name}`` fields are options by name and ``{name=}``
    fields are settings (``{calibration=}``: ``calibration='batch'``), and
    ``named`` holds the value of each option it names.  ``str(error)`` says
    them in the estimators' words; each way in says them in its own
    (:func:`nbllm.options.in_words`: ``--raw`` in a magic, ``raw=True`` in
    ``df.llm.classify``).

    Attributes
    ----------
    option : str or None
        The option the error is about, by its name in :mod:`nbllm.options`
        (``'labels'``, ``'truncation'``, ...), so that a way in can name it in
        its own words (``--labels`` in a magic); None when it is about no one
        option.
    named : dict
        The options the message names, each with the value it is said with
        (empty when it names none).
    template : str or None
        The message with its option fields, when ``named`` is not empty.
    """


class OptionWarning(_NamesOptions, UserWarning):
    """A warning whose advice names options (``use probas_sum_to_1=False``),
    structured as :class:`UserError` is, so that each way in words it."""


class InputError(UserError, ValueError):
    """A value that cannot be used here (a row that is not in the data, a call
    made too early), when no more precise class below says it."""


class OptionError(InputError):
    """An option's value is not one it takes, or options that do not go together."""


class LabelsError(OptionError):
    """The labels are empty, blank, repeated, or not a list of strings."""

    option = "labels"


class ExamplesError(OptionError):
    """Few-shot examples that cannot be used."""

    option = "examples"


class PromptError(OptionError):
    """A prompt template that cannot be used."""

    option = "prompt"


class TextsError(InputError):
    """Texts that cannot be classified: missing, not strings, too long."""


class InputTypeError(UserError, TypeError):
    """An argument of the wrong type (a list where a DataFrame is needed, say)."""


class ColumnError(UserError, KeyError):
    """A column that the DataFrame does not have."""

    option = "column"

    def __str__(self):
        # KeyError's own str() shows the message in quotes.
        return str(self.args[0]) if self.args else ""


class ModelError(InputError):
    """A model that cannot be found, loaded or used for classification."""

    option = "model"


class ModelFileNotFoundError(UserError, FileNotFoundError):
    """A model file (GGUF) that does not exist."""

    option = "model"


class MissingDependencyError(UserError, ImportError):
    """An optional package that a feature needs is not installed."""


class FileFormatError(InputError):
    """A file of nbllm's (saved classifier, Labeler answers) that cannot be read."""


class LowProbabilityError(InputError):
    """The labels' total probability for a sample is too low to trust.

    Raised when it is exactly zero, or below ``threshold_low_prob`` with
    ``error_low_prob='raise'``.
    """
