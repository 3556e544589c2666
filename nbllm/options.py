"""The option table: every option declared once.

Each :class:`Option` says its name, choices or check, default, one-line
help, magic flag, panel widget, which classifiers take it, and any default a
way in gives it on purpose (``overrides``).  Everything else derives from it:
the estimators check their parameters here; the magics' arguments, the
panel's widgets (and its "Copy as code"), the accessors' and
:func:`nbllm.classify`'s keyword defaults and the docstrings' type lines are
built from it; the classifiers' literal ``__init__`` signatures are tested
against it (``tests/test_option_table.py``).  A new choice or a changed
default is one edit.  Plain Python: importing it costs nothing.
"""

import copy
import numbers
import os
from collections.abc import Mapping

from .engine.loading.devices import DTYPE_NAMES, EXPECTED_DEVICE, is_device, is_dtype
from .exceptions import LabelsError, OptionError, PromptError

# How one few-shot example is written into {examples}: the example_template
# option's default, which the engine's prompt builder also uses.
DEFAULT_EXAMPLE_TEMPLATE = "Text: {text}\nLabel: {label}"

# The ways in, each of which names an option in its own words: the
# estimators' keyword (``probas_sum_to_1=False``), the notebook's Python
# keyword (``raw=True`` in ``df.llm.classify`` and ``nbllm.classify``), the
# magics' flag (``--raw``) and the panel's widget ("raw probabilities").
# An error names options through its ``named`` attribute; each way in words
# it at its own boundary (:func:`in_words`).
ESTIMATOR, PYTHON, MAGIC, PANEL = "estimator", "python", "magic", "panel"


def spoken(values):
    """``'a', 'b' or 'c'``: the choices as a message lists them."""
    shown = [repr(v) for v in values]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


# The classifiers, by class name (options.py imports none of them).
ZERO_SHOT, FEW_SHOT, MULTI_LABEL_CLASSIFIER = (
    "ZeroShotClassifier", "FewShotClassifier", "MultiLabelZeroShotClassifier")
SINGLE_LABEL = (ZERO_SHOT, FEW_SHOT)
ALL_CLASSIFIERS = SINGLE_LABEL + (MULTI_LABEL_CLASSIFIER,)
# The magics, and the classifiers each of them builds.
MAGICS = {"zeroshot": (ZERO_SHOT, MULTI_LABEL_CLASSIFIER), "fewshot": (FEW_SHOT,)}
# Every way but the estimators; ``overrides`` keyed by it apply to each of them.
# DASK is ddf.llm's Python keyword: PYTHON's default unless overridden.
NOTEBOOK, DASK = "notebook", "dask"
_FALLS_BACK_TO = {DASK: PYTHON, PYTHON: NOTEBOOK, MAGIC: NOTEBOOK, PANEL: NOTEBOOK}


class Option:
    """One option: its name, default, what values it takes, and its words.

    Parameters
    ----------
    name : str
        The estimators' keyword.
    default : object
        The estimators' default.
    choices : tuple or None
        The values it takes, when they are a fixed set.
    check : callable
        ``check(value)`` returns True for a valid value (when there are no
        ``choices``).  Every option has choices or a check: :meth:`check`
        runs it in ``fit`` and at the entry of every way in.
    expected : str or None
        What a valid value is, for the error message (default: the choices).
    message : str
        The error's words: ``{name}`` (the option, as each way in names it),
        ``{expected}`` and ``{got}`` (the value); skorch's own wording where
        skorch has the option.
    got : {'repr', 'str', 'type'}
        How the message shows the bad value: its repr, its str (skorch's
        ``error_low_prob``) or its type's name.
    error : type
        The :class:`~nbllm.exceptions.OptionError` class raised.
    help : str
        One line: what it does (the magic's ``--help``, the panel's tooltip);
        ``{name}`` in it is option ``name``'s default (see :attr:`help_text`).
    doc_type : str or None
        Its numpydoc type, when there are no ``choices`` (``'int'``).
    doc_default : str or None
        Its default as the docstrings write it, when not its repr.
    estimators : tuple of str
        The classifiers (class names) whose ``__init__`` takes it.
    overrides : dict
        A way in's own default, on purpose, keyed by way (or NOTEBOOK for
        every way but the estimators), in that way's words.
    keyword : str or None
        The notebook's Python keyword (default: ``name``).
    flag : str or None
        The magics' flag (None: the magics do not take it).
    short : str or None
        The magics' one-letter flag (``-k``).
    magics : tuple of str or None
        The magics that declare the flag (default: those building a
        classifier in ``estimators``).
    magic_choices : tuple or None
        The choices a magic offers, when fewer than ``choices``.
    magic_value : {None, 'variable', 'template'}
        What the flag's value is: the value itself (None), the name of a
        variable holding it, or a variable or a quoted template.
    magic_action : str or None
        The flag's argparse action when not the plain one (``'append'``: the
        flag may be given several times).
    value_type : type or None
        What a magic converts the flag's value to (``int``, ``float``).
    widget : str or None
        The panel widget's description (None: the panel has no widget for it).
    inverted : bool
        Whether the notebook's keyword, flag and widget mean ``not value`` (a
        True ``raw`` is ``probas_sum_to_1=False``).
    notebook : bool
        Whether the notebook's Python functions take ``keyword``
        (:data:`BY_KEYWORD`); False where another option owns the keyword.
    """

    def __init__(self, name, default, choices=None, check=None, expected=None, *,
                 message="{name} {expected}; got {got}", got="repr", error=OptionError,
                 help="", doc_type=None, doc_default=None, estimators=ALL_CLASSIFIERS,
                 overrides=None, keyword=None, flag=None, short=None, magics=None,
                 magic_choices=None, magic_value=None, magic_action=None, value_type=None,
                 widget=None, inverted=False, notebook=True):
        self.name, self.default, self.choices = name, default, choices
        if choices is None and check is None:
            raise TypeError(f"option {name} needs choices or a check")
        self._check = check
        self.message, self.got, self.error = message, got, error
        self.expected = expected or (f"must be {spoken(choices)}" if choices else "")
        self.help, self.doc_type, self.doc_default = help, doc_type, doc_default
        self.estimators = estimators
        self.overrides = dict(overrides or {})
        self.keyword = keyword or name
        self.flag, self.short = flag, short
        if magics is None and flag is not None:
            magics = [magic for magic, built in MAGICS.items() if set(built) & set(estimators)]
        self.magics = tuple(magics or ())
        self.magic_choices = magic_choices
        self.magic_value, self.magic_action = magic_value, magic_action
        self.value_type = value_type
        self.widget = widget
        self.inverted = inverted
        self.notebook = notebook

    def __repr__(self):
        return f"<Option {self.name}={self.default!r}>"

    @property
    def help_text(self):
        """``help`` with the defaults it names filled in from the table now."""
        return self.help.format_map({o.name: o.default for o in TABLE})

    def default_for(self, way):
        """The default in way in ``way``, in its words (``raw=False``).

        A way's own default (``overrides``) wins; otherwise the estimators'
        default, turned round for an inverted option.
        """
        if way == ESTIMATOR:
            return self.default
        while way is not None:
            if way in self.overrides:
                return self.overrides[way]
            way = _FALLS_BACK_TO.get(way)
        return (not self.default) if self.inverted else self.default

    def to_estimator(self, shown):
        """The estimators' value for ``shown``, a value in the notebook's words."""
        # A value that is no truth value stays as it is, for the check to refuse.
        return (not shown) if self.inverted and shown in (True, False) else shown

    def check(self, value):
        """Return ``value``, or raise the error that says what was expected.

        The one check of this option: ``fit`` runs it for every option the
        estimator takes, and every way in runs it at its entry.

        Raises
        ------
        OptionError
            (or the option's own subclass, ``PromptError`` for ``prompt``):
            ``"<name> <expected>; got <value>"``, naming the option in
            ``named`` so that a way in words it (``--truncation``).
        """
        if self.choices is not None:
            ok = _hashable(value) and value in self.choices
        else:
            ok = self._check is None or self._check(value)
        if ok:
            return value
        got = type(value).__name__ if self.got == "type" else (
            str(value) if self.got == "str" else repr(value))
        raise self.error(self.message.format(name="{" + self.name + "}",
                                             expected=literal(self.expected),
                                             got=literal(got)),
                         option=self.name, named={self.name: value})

    def doc_header(self):
        """Its numpydoc line: ``truncation : {'right', ...}, default='right'``."""
        kind = self.doc_type or "{" + ", ".join(map(repr, self.choices)) + "}"
        return f"{self.name} : {kind}, default={self.doc_default or repr(self.default)}"

    def name_in(self, way):
        """The option's name in way in ``way`` (``--truncation`` in a magic)."""
        if way == ESTIMATOR:
            return self.name
        if way == PANEL and self.widget is not None:
            return f"'{self.widget}'"
        return self.flag if way == MAGIC and self.flag else self.keyword

    def setting_in(self, way, value):
        """The words that ask for ``value`` (the estimators' value) in ``way``.

        ``PROBAS_SUM_TO_1.setting_in(way, False)`` is ``probas_sum_to_1=False``
        for an estimator, ``raw=True`` in Python's notebook functions,
        ``--raw`` in a magic and ``'raw probabilities'`` in the panel.
        """
        if way == ESTIMATOR:
            return f"{self.name}={value!r}"
        shown = (not value) if self.inverted else value
        if way == PANEL and self.widget is not None:
            return f"'{self.widget}'" if shown is True else f"{self.widget} {shown}"
        if way == MAGIC and self.flag:
            return self.flag if shown is True else f"{self.flag} {shown}"
        return f"{self.keyword}={shown!r}"


def literal(text):
    """``text`` as it stands in an error's template (its braces doubled)."""
    return text.replace("{", "{{").replace("}", "}}")


def in_words(error, way):
    """``error`` as way in ``way`` says it, ready to raise at that way's entry.

    A :class:`~nbllm.exceptions.UserError` names the options it is about in
    ``named``; here each is said in the way's words (``raw=True`` in Python,
    ``--raw`` in a magic, ``'raw probabilities'`` in the panel).  Returns a
    copy without the traceback below the entry (the user sees the call they
    made), or ``error`` itself for the estimators.
    """
    if way == ESTIMATOR or not isinstance(error, BaseException):
        return error
    shown = copy.copy(error)
    shown.__traceback__ = None
    if error.template is not None:
        fields = {}
        for name, value in error.named.items():
            option = BY_NAME.get(name)
            fields[name] = option.name_in(way) if option else name
            fields[name + "="] = (option.setting_in(way, value) if option
                                  else f"{name}={value!r}")
        shown.args = (error.template.format(**fields),)
    return shown


def _hashable(value):
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _positive_int(value):
    return (isinstance(value, numbers.Integral) and not isinstance(value, bool)
            and value >= 1)


def _real_in_0_1(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value <= 1


def _path_or_none(value):
    return value is None or isinstance(value, (str, os.PathLike))


def _object_or_none(value):
    # A name belongs in model_name; an object's class is not checked here,
    # so that any model transformers can run is taken.
    return not isinstance(value, (str, bytes, os.PathLike))


def _label_map(value):
    return value is None or (isinstance(value, Mapping) and all(
        isinstance(word, str) and word.strip() for word in value.values()))


def _random_state(value):
    # scikit-learn's check_random_state: None, a seed NumPy takes, or a RandomState.
    if value is None or type(value).__name__ == "RandomState":
        return True
    return (isinstance(value, numbers.Integral) and not isinstance(value, bool)
            and 0 <= value < 2 ** 32)


# ------------------------------------------------------------------ the table
# Every parameter of the classifiers (in the single-label ones' signature
# order; the docstrings list them in this order), and the notebook's own options.  The classifiers' __init__ signatures stay literal
# (scikit-learn reads them); tests/test_option_table.py checks them, their
# docstrings, the magics' flags and the panel's widgets against this table.
MODEL_NAME = Option("model_name", None, check=_path_or_none,
                    expected="must be a model name, a path or None", keyword="model",
                    flag="--model", short="-m", magics=tuple(MAGICS),
                    help="model spec (default: session default or embedded)",
                    doc_type="str or None")
MODEL = Option("model", None, check=_object_or_none, got="type",
               expected="must be a loaded model object or None; give a name as model_name",
               doc_type="object or None", notebook=False,
               help="an already loaded language model, instead of model_name")
TOKENIZER = Option("tokenizer", None, check=_object_or_none, got="type",
                   expected="must be a loaded tokenizer object or None; give a name as "
                            "model_name",
                   doc_type="object or None", notebook=False,
                   help="the tokenizer of model")
PROMPT = Option("prompt", None, check=lambda v: v is None or isinstance(v, str),
                expected="must be a string or None", got="type", error=PromptError,
                doc_type="str or None", flag="--prompt", short="-p",
                magic_value="template", magic_action="append",
                help="a variable holding the template, or a quoted template; give it "
                     "twice or more to compare prompts in one table")
PROBAS_SUM_TO_1 = Option(
    "probas_sum_to_1", True, (True, False), doc_type="bool", estimators=SINGLE_LABEL,
    # One concept, three words: normalised probabilities or the model's own.
    keyword="raw", flag="--raw", widget="raw probabilities", inverted=True,
    # In the notebook's words (True: raw), like keyword, flag and widget.
    help="raw probabilities: the model's own, not normalised over the labels")
DEVICE = Option(
    "device", "auto", check=is_device, expected=EXPECTED_DEVICE,
    doc_type="{'auto', 'cpu', 'cuda', 'cuda:N'}", flag="--device",
    widget="device", help="auto, cpu, cuda or cuda:N",
    # The notebook's default is the session's device (%nbllm device).
    overrides={PYTHON: None, MAGIC: None})
DTYPE = Option("dtype", "auto", check=is_dtype,
               expected=f"must be one of {', '.join(DTYPE_NAMES)}", doc_type="{'auto', 'float32', 'float16', 'bfloat16'}",
               help="the model's dtype; 'auto': bfloat16 where it is fast, else float32")
# skorch's values and wording (its message shows the value without quotes).
ERROR_LOW_PROB = Option(
    "error_low_prob", "ignore", ("ignore", "raise", "warn", "return_none"),
    expected="must be one of ignore, raise, warn, return_none",
    message="{name} {expected}; got {got} instead", got="str",
    estimators=SINGLE_LABEL, widget="low prob",
    help="what to do with a row whose label probability is below threshold_low_prob")
THRESHOLD_LOW_PROB = Option(
    "threshold_low_prob", 0.0, check=_real_in_0_1, expected="must be between 0 and 1",
    message="{name} {expected}, got {got} instead",  # skorch's
    doc_type="float in [0, 1]", estimators=SINGLE_LABEL, widget="threshold",
    # The magics' --threshold is THRESHOLD, the notebook's threshold, which
    # is this one for the single-label classifiers.
    keyword="threshold", flag="--threshold", magics=(), notebook=False,
    help="flag rows whose label mass is below this")
USE_CACHING = Option("use_caching", True, (True, False), doc_type="bool",
                     help="reuse results for prompts seen before")
USE_CHAT_TEMPLATE = Option("use_chat_template", "auto", ("auto", True, False),
                           help="send the prompt as a chat message (True) or raw")
BATCH_SIZE = Option("batch_size", "auto",
                    check=lambda v: v == "auto" if isinstance(v, str) else _positive_int(v),
                    expected="must be 'auto' or a positive integer",
                    doc_type="int or 'auto'", help="prompts per forward pass")
PROGRESS = Option("progress", "auto", ("auto", True, False),
                  help="show a progress bar ('auto': once a call has run for a second)",
                  # Dask shows its own progress (its bar or the dashboard); the
                  # panel its own bar with counts.
                  overrides={DASK: False, PANEL: False})
CACHE_DIR = Option("cache_dir", None, check=_path_or_none,
                   expected="must be a folder path or None", doc_type="str, path or None",
                   help="also keep results on disk in this folder")
CALIBRATION = Option("calibration", None, (None, "content_free", "batch", "fit"),
                     estimators=SINGLE_LABEL, flag="--calibration",
                     # 'fit' learns from labelled texts, which a magic does not have.
                     magic_choices=("content_free", "batch"),
                     help="correct the prompt's label bias")
LABEL_MAP = Option("label_map", None, check=_label_map,
                   expected="must be a dict from class to the non-empty word the model "
                            "scores, e.g. {'pos': 'positive'}", doc_type="dict or None", flag="--label-map",
                   magic_value="variable",
                   help="variable holding a dict: class -> word the model scores")
TRUNCATION = Option("truncation", "right", ("right", "left", "middle", "error"),
                    flag="--truncation", help="how texts longer than the context are cut")
TRUST_REMOTE_CODE = Option("trust_remote_code", False, (True, False), doc_type="bool",
                           help="let transformers run a Hub model's own code")
MAX_SAMPLES = Option("max_samples", 5, check=_positive_int, value_type=int,
                     expected="must be a positive integer", doc_type="int",
                     estimators=(FEW_SHOT,), flag="--max-samples", short="-k",
                     widget="max samples", help="examples in the prompt")
EXAMPLE_SELECTION = Option("example_selection", "grouped",
                           ("stratified", "random", "similar", "grouped"),
                           estimators=(FEW_SHOT,),
                           flag="--selection",
                           help="how examples are picked for each prompt")
EXAMPLE_PLACEMENT = Option("example_placement", "prompt", ("prompt", "turns"),
                           estimators=(FEW_SHOT,),
                           help="examples in the prompt, or as earlier chat turns")
RANDOM_STATE = Option(
    "random_state", None, check=_random_state,
    expected="must be None, an integer seed or a numpy RandomState", doc_type="int, RandomState or None", estimators=(FEW_SHOT,),
    help="makes the draw of examples deterministic",
    # The notebook draws few-shot examples with a fixed seed so that a rerun
    # cell shows the same prompt (and hits the result cache); the estimators
    # keep skorch's default, None.
    overrides={NOTEBOOK: 0})
EXAMPLE_TEMPLATE = Option(
    "example_template", DEFAULT_EXAMPLE_TEMPLATE, check=lambda v: isinstance(v, str),
    expected="must be a string with {text} and {label}", got="type", doc_type="str",
    doc_default="DEFAULT_EXAMPLE_TEMPLATE", estimators=(FEW_SHOT,),
    flag="--example-template", magic_value="template",
    help="how one example is written: a variable or a quoted template with {{text}} "
         "and {{label}} (e.g. nbllm.SKORCH_EXAMPLE_TEMPLATE)",
    # The notebook's None: the estimator's default.
    overrides={NOTEBOOK: None})
# The notebook's threshold: the low-probability threshold of the single-label
# estimators, or the probability from which a label applies with multi_label.
THRESHOLD = Option(
    "threshold", 0.5, check=_real_in_0_1, value_type=float,
    expected="must be between 0 and 1", doc_type="float in [0, 1]",
    estimators=(MULTI_LABEL_CLASSIFIER,), flag="--threshold", magics=tuple(MAGICS),
    help="flag rows whose label mass is below this (default {threshold_low_prob:g}); "
         "with --multi-label, the probability from which a label applies (default "
         "{threshold:g})",
    # None: threshold_low_prob's default, or with multi_label this one's.
    overrides={NOTEBOOK: None})
MULTI_LABEL = Option("multi_label", False, (True, False), doc_type="bool", estimators=(),
                     flag="--multi-label", magics=("zeroshot",),
                     help="ask about each label alone; a text can get several or none "
                          "(--threshold defaults to {threshold:g})")

EXPLAIN = Option("explain", False, (True, False), doc_type="bool", estimators=(),
                 flag="--explain", magics=("zeroshot", "fewshot"),
                 help="under the table, each text's words highlighted by their "
                      "contribution to its label (occlusion; the first 20 rows)")

# Every Option declared above, in order.
TABLE = tuple(value for value in list(globals().values()) if isinstance(value, Option))
BY_NAME = {option.name: option for option in TABLE}
# The notebook's Python keywords (``raw``, ``threshold``, ``model``).
BY_KEYWORD = {option.keyword: option for option in TABLE if option.notebook}


def taken_by(classifier):
    """The options of ``classifier`` (a class name), in the table's order."""
    return [option for option in TABLE if classifier in option.estimators]


def flags_of(magic):
    """The options whose flag magic ``magic`` (``'zeroshot'``) declares."""
    return [option for option in TABLE if magic in option.magics]


def check_params(params):
    """Check each of an estimator's parameters (``get_params()``) by its option.

    scikit-learn's ``_parameter_constraints``, from the table: ``fit`` runs
    it first, so every option is checked once, by its one definition.

    Raises
    ------
    OptionError
        For the first parameter with a value its option does not take.
    """
    for name, value in params.items():
        if name in BY_NAME:
            BY_NAME[name].check(value)


def check_calibration_with_probas(calibration, probas_sum_to_1):
    """Calibration gives normalised probabilities: not with raw ones.

    Raises
    ------
    OptionError
        Naming both options (``named``), so each way in says them its way.
    """
    if calibration is not None and not probas_sum_to_1:
        raise OptionError(
            "{calibration=} gives normalised probabilities; it cannot be combined with "
            "{probas_sum_to_1=}", option="calibration",
            named={"calibration": calibration, "probas_sum_to_1": False})


def check_labels(labels):
    """An explicit label list as a list of str.

    The notebook layer's ``labels=`` (``--labels``, the panel's tags) is an
    explicit list: non-empty, no missing values, no blanks, no repeats (a
    label listed twice there is a mistake, unlike a repeated target in
    ``fit(X, y)``), and no two that differ only in spaces around them.

    Raises
    ------
    LabelsError
        A ValueError naming what is wrong.
    """
    if isinstance(labels, str):
        raise LabelsError(
            f"labels must be a list of strings, got the single string {labels!r}"
        )
    labels = list(labels if labels is not None else [])
    if not labels:
        raise LabelsError("labels must contain at least one label; got none")
    check_missing_labels(labels, "labels")
    labels = [str(label) for label in labels]
    blank = [label for label in labels if not label.strip()]
    if blank:
        raise LabelsError(f"labels must be non-empty strings; got {blank[0]!r}")
    seen, repeated = set(), []
    for label in labels:
        if label in seen and label not in repeated:
            repeated.append(label)
        seen.add(label)
    if repeated:
        raise LabelsError(
            f"labels must be unique; repeated: {', '.join(map(repr, repeated))}"
        )
    check_spaced_labels(labels)
    return labels


def is_missing_label(value):
    # None, or a float NaN (numpy's and pandas' NaN included): NaN != NaN.
    return value is None or (isinstance(value, float) and value != value)


def check_missing_labels(labels, where="y"):
    """Refuse missing labels (None, NaN) in ``labels``, naming their positions.

    Raises
    ------
    LabelsError
        ``"1 missing label(s) (None or NaN) in y at position(s) 1; ..."``.
    """
    missing = [i for i, label in enumerate(labels) if is_missing_label(label)]
    if missing:
        raise LabelsError(
            f"{len(missing)} missing label(s) (None or NaN) in {where} at "
            f"position(s) {listed_positions(missing)}; drop those rows or fill in their labels")


def listed_positions(positions, most=5):
    """Positions for a message: the first ``most``, then "..." if there are more."""
    return ", ".join(map(str, positions[:most])) + (", ..." if len(positions) > most else "")


def check_spaced_labels(labels):
    """Refuse labels that differ only in spaces around them (``'yes'``, ``'yes '``).

    Raises
    ------
    LabelsError
        Naming the labels that would be taken as different classes.
    """
    by_stripped = {}
    for label in dict.fromkeys(str(label) for label in labels):
        by_stripped.setdefault(label.strip(), []).append(label)
    clashes = [group for group in by_stripped.values() if len(group) > 1]
    if clashes:
        raise LabelsError(
            "labels differ only in spaces around them: "
            + "; ".join(" and ".join(map(repr, group)) for group in clashes)
            + "; remove the spaces, or they are taken as different labels")
