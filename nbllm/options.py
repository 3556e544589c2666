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

import contextlib
import contextvars
import numbers

from .exceptions import LabelsError, OptionError

# How one few-shot example is written into {examples}: the example_template
# option's default, which the engine's prompt builder also uses.
DEFAULT_EXAMPLE_TEMPLATE = "Text: {text}\nLabel: {label}"

# The ways in, each of which names an option in its own words: the
# estimators' keyword (``probas_sum_to_1=False``), the notebook's Python
# keyword (``raw=True`` in ``df.llm.classify`` and ``nbllm.classify``), the
# magics' flag (``--raw``) and the panel's widget ("raw probabilities").
ESTIMATOR, PYTHON, MAGIC, PANEL = "estimator", "python", "magic", "panel"
_WAY_IN = contextvars.ContextVar("nbllm_way_in", default=ESTIMATOR)


@contextlib.contextmanager
def way_in(name):
    """Name options in the words of way in ``name`` inside this block.

    The outermost way in wins: a magic that calls :func:`nbllm.classify`
    keeps the magic's words.  A context variable, so a panel's worker thread
    sets its own (a new thread starts from the default, the estimators').
    """
    if _WAY_IN.get() != ESTIMATOR:
        yield
        return
    token = _WAY_IN.set(name)
    try:
        yield
    finally:
        _WAY_IN.reset(token)


def current_way_in():
    """The way in whose words messages use now (:data:`ESTIMATOR` by default)."""
    return _WAY_IN.get()


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
    check : callable or None
        ``check(value)`` returns True for a valid value (when there are no
        ``choices``); None: the estimators check it in ``fit``.
    expected : str or None
        What a valid value is, for the error message (default: the choices).
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
                 help="", doc_type=None, doc_default=None, estimators=ALL_CLASSIFIERS,
                 overrides=None, keyword=None, flag=None, short=None, magics=None,
                 magic_choices=None, magic_value=None, magic_action=None, value_type=None,
                 widget=None, inverted=False, notebook=True):
        self.name, self.default, self.choices = name, default, choices
        self._check = check
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
        return (not shown) if self.inverted else shown

    @property
    def checked(self):
        """Whether the table checks its values (choices or a check)."""
        return self.choices is not None or self._check is not None

    def problem(self, value):
        """The :class:`~nbllm.exceptions.OptionError` for a bad ``value``, or None."""
        if self.choices is not None:
            ok = _hashable(value) and value in self.choices
        else:
            ok = self._check is None or self._check(value)
        if ok:
            return None
        # An inverted keyword would turn the expected values round too.
        name = self.name if self.inverted else self.spoken_name()
        return OptionError(f"{name} {self.expected}; got {value!r}", option=self.name)

    def doc_header(self):
        """Its numpydoc line: ``truncation : {'right', ...}, default='right'``."""
        kind = self.doc_type or "{" + ", ".join(map(repr, self.choices)) + "}"
        return f"{self.name} : {kind}, default={self.doc_default or repr(self.default)}"

    def validate(self, value):
        """Return ``value``, or raise an error that names what was expected.

        Raises
        ------
        OptionError
            A ValueError, ``"<name> <expected>; got <value>"``.
        """
        error = self.problem(value)
        if error is not None:
            raise error
        return value

    def spoken_name(self):
        """The option's name in the current way in (``--truncation`` in a magic)."""
        way = current_way_in()
        if way == ESTIMATOR:
            return self.name
        if way == PANEL and self.widget is not None:
            return f"'{self.widget}'"
        return self.flag if way == MAGIC and self.flag else self.keyword

    def setting(self, value):
        """The words that ask for ``value`` in the current way in.

        ``PROBAS_SUM_TO_1.setting(False)`` is ``probas_sum_to_1=False`` for
        an estimator, ``raw=True`` in Python's notebook functions, ``--raw``
        in a magic and ``'raw probabilities'`` in the panel.
        """
        way = current_way_in()
        if way == ESTIMATOR:
            return f"{self.name}={value!r}"
        shown = (not value) if self.inverted else value
        if way == PANEL and self.widget is not None:
            return f"'{self.widget}'" if shown is True else f"{self.widget} {shown}"
        if way == MAGIC and self.flag:
            return self.flag if shown is True else f"{self.flag} {shown}"
        return f"{self.keyword}={shown!r}"


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


# ------------------------------------------------------------------ the table
# Every parameter of the classifiers (in the single-label ones' signature
# order; the docstrings list them in this order), and the notebook's own options.  The classifiers' __init__ signatures stay literal
# (scikit-learn reads them); tests/test_option_table.py checks them, their
# docstrings, the magics' flags and the panel's widgets against this table.
MODEL_NAME = Option("model_name", None, keyword="model",
                    flag="--model", short="-m", magics=tuple(MAGICS),
                    help="model spec (default: session default or embedded)",
                    doc_type="str or None")
MODEL = Option("model", None, doc_type="object or None", notebook=False,
               help="an already loaded language model, instead of model_name")
TOKENIZER = Option("tokenizer", None, doc_type="object or None", notebook=False,
                   help="the tokenizer of model")
PROMPT = Option("prompt", None, doc_type="str or None", flag="--prompt", short="-p",
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
    "device", "auto", doc_type="{'auto', 'cpu', 'cuda', 'cuda:N'}", flag="--device",
    widget="device", help="auto, cpu, cuda or cuda:N",
    # The notebook's default is the session's device (%nbllm device).
    overrides={PYTHON: None, MAGIC: None})
DTYPE = Option("dtype", "auto", doc_type="{'auto', 'float32', 'float16', 'bfloat16'}",
               help="the model's dtype; 'auto': bfloat16 where it is fast, else float32")
# skorch's values and wording (its message shows the value without quotes).
ERROR_LOW_PROB = Option(
    "error_low_prob", "ignore", ("ignore", "raise", "warn", "return_none"),
    estimators=SINGLE_LABEL, widget="low prob",
    help="what to do with a row whose label probability is below threshold_low_prob")
THRESHOLD_LOW_PROB = Option(
    "threshold_low_prob", 0.0, check=_real_in_0_1, expected="must be between 0 and 1",
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
CACHE_DIR = Option("cache_dir", None, doc_type="str, path or None",
                   help="also keep results on disk in this folder")
CALIBRATION = Option("calibration", None, (None, "content_free", "batch", "fit"),
                     estimators=SINGLE_LABEL, flag="--calibration",
                     # 'fit' learns from labelled texts, which a magic does not have.
                     magic_choices=("content_free", "batch"),
                     help="correct the prompt's label bias")
LABEL_MAP = Option("label_map", None, doc_type="dict or None", flag="--label-map",
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
    "random_state", None, doc_type="int, RandomState or None", estimators=(FEW_SHOT,),
    help="makes the draw of examples deterministic",
    # The notebook draws few-shot examples with a fixed seed so that a rerun
    # cell shows the same prompt (and hits the result cache); the estimators
    # keep skorch's default, None.
    overrides={NOTEBOOK: 0})
EXAMPLE_TEMPLATE = Option(
    "example_template", DEFAULT_EXAMPLE_TEMPLATE, doc_type="str",
    doc_default="DEFAULT_EXAMPLE_TEMPLATE", estimators=(FEW_SHOT,),
    flag="--example-template", magic_value="template",
    help="how one example is written: a variable or a quoted template with {{text}} "
         "and {{label}} (e.g. nbllm.SKORCH_EXAMPLE_TEMPLATE)",
    # The notebook's None: the estimator's default.
    overrides={NOTEBOOK: None})
# The notebook's threshold: the low-probability threshold of the single-label
# estimators, or the probability from which a label applies with multi_label.
THRESHOLD = Option(
    "threshold", 0.5, check=lambda v: v is None or _real_in_0_1(v), value_type=float,
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


def check_error_low_prob(value):
    """skorch's check and message for ``error_low_prob``."""
    if not _hashable(value) or value not in ERROR_LOW_PROB.choices:
        raise OptionError(
            f"error_low_prob must be one of {', '.join(ERROR_LOW_PROB.choices)}; got "
            f"{value} instead", option="error_low_prob"
        )
    return value


def check_threshold_low_prob(value):
    """skorch's check and message for ``threshold_low_prob``."""
    if not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise OptionError(
            f"threshold_low_prob must be between 0 and 1, got {value!r} instead",
            option="threshold_low_prob")
    return value


def labels_problem(labels):
    """The :class:`~nbllm.exceptions.LabelsError` for a bad label list, or None.

    The notebook layer's ``labels=`` (``--labels``, the panel's tags) is an
    explicit list: non-empty, no blanks, no repeats (a label listed twice
    there is a mistake, unlike a repeated target in ``fit(X, y)``).
    """
    if isinstance(labels, str):
        return LabelsError(
            f"labels must be a list of strings, got the single string {labels!r}"
        )
    labels = [str(label) for label in (labels or [])]
    if not labels:
        return LabelsError("labels must contain at least one label; got none")
    blank = [label for label in labels if not label.strip()]
    if blank:
        return LabelsError(f"labels must be non-empty strings; got {blank[0]!r}")
    seen, repeated = set(), []
    for label in labels:
        if label in seen and label not in repeated:
            repeated.append(label)
        seen.add(label)
    if repeated:
        return LabelsError(
            f"labels must be unique; repeated: {', '.join(map(repr, repeated))}"
        )
    return None


def check_labels(labels):
    """An explicit label list as a list of str (see :func:`labels_problem`).

    Raises
    ------
    LabelsError
        A ValueError naming what is wrong.
    """
    error = labels_problem(labels)
    if error is not None:
        raise error
    return [str(label) for label in labels]
