"""Few-shot classification: labelled examples written into the prompt."""

import numpy as np

from ..exceptions import ExamplesError, OptionError
from .. import options
from ..engine.scoring.prompts import (
    DEFAULT_EXAMPLE_TEMPLATE,
    DEFAULT_PROMPT_FEW_SHOT,
    FEW_SHOT_PLACEHOLDERS,
    PromptRenderer,
    check_example_template,
    format_examples,
    without_examples,
)
from . import docs
from .base import check_fitted
from .calibration import content_free_reference, fit_scale_and_bias
from .inputs import check_fit_params, check_same_length, check_texts
from .single_label import _SingleLabelBase
from .example_selection import (
    GroupedExamples,
    PerTextRenderer,
    SimilarExamples,
    draw_random,
    draw_stratified,
)


class FewShotClassifier(_SingleLabelBase):
    __doc__ = (
        """Few-shot text classification by constrained label likelihood.

    Like :class:`ZeroShotClassifier`, with up to ``max_samples`` labelled
    examples from the fit data written into the prompt.
    """
        + docs.parameters(options.FEW_SHOT,
                          "``{text}``, ``{labels}`` and ``{examples}``",
                          "``DEFAULT_PROMPT_FEW_SHOT``")
        + """
    Attributes
    ----------
    examples_ : list of (text, label) or None
        The examples in the prompt, in prompt order; None with 'similar'
        and 'grouped', where each text has its own (see :meth:`examples_for`).
    """
    )

    _placeholders = FEW_SHOT_PLACEHOLDERS
    _default_prompt = DEFAULT_PROMPT_FEW_SHOT

    def __init__(
        self,
        model_name=None,
        *,
        model=None,
        tokenizer=None,
        prompt=None,
        probas_sum_to_1=True,
        device="auto",
        dtype="auto",
        error_low_prob="ignore",
        threshold_low_prob=0.0,
        use_caching=True,
        use_chat_template="auto",
        batch_size="auto",
        progress="auto",
        cache_dir=None,
        calibration=None,
        label_map=None,
        truncation="right",
        trust_remote_code=False,
        max_samples=5,
        example_selection="grouped",
        example_placement="prompt",
        random_state=None,
        example_template=DEFAULT_EXAMPLE_TEMPLATE,
    ):
        # Only stores the arguments, as scikit-learn requires.
        super().__init__(
            model_name, model=model, tokenizer=tokenizer, prompt=prompt,
            probas_sum_to_1=probas_sum_to_1, device=device, dtype=dtype,
            error_low_prob=error_low_prob, threshold_low_prob=threshold_low_prob,
            use_caching=use_caching, use_chat_template=use_chat_template,
            batch_size=batch_size, progress=progress, cache_dir=cache_dir,
            calibration=calibration, label_map=label_map, truncation=truncation,
            trust_remote_code=trust_remote_code,
        )
        self.max_samples = max_samples
        self.example_selection = example_selection
        self.example_placement = example_placement
        self.random_state = random_state
        self.example_template = example_template

    def fit(self, X, y, classes=None, **fit_params):
        """Load the model, take the classes from ``y`` and draw the examples.

        Parameters
        ----------
        X : list-like of str
            Example texts.
        y : list-like of str
            Their labels.
        classes : list-like of str, optional
            All the labels to predict, when some have no examples
            (``classes_ = np.unique(classes)``); it must hold every label of y.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If ``classes`` misses a label of ``y``.
        """
        check_fit_params(fit_params)
        if X is None:
            raise ExamplesError("For few-shot learning, pass at least one example")
        texts = check_texts(X)
        if not texts:
            raise ExamplesError("For few-shot learning, pass at least one example")
        if y is not None:
            check_same_length(texts, y)
        # Every parameter by the table, before the examples' own rules.
        self._check_params()
        check_example_template(self.example_template)
        if self.calibration == "fit" and len(texts) < 2:
            raise OptionError(
                "calibration='fit' with few-shot learns from the examples, each scored "
                "with the others as its examples: pass at least 2", option="calibration")
        y = self._fit_common(y, classes)
        self._fit_inputs = (list(texts),) + self._fit_inputs[1:]
        if self.example_placement == "turns" and not self.use_chat_template_:
            raise OptionError(
                "example_placement='turns' writes the examples as chat turns and "
                "needs a chat template; use example_placement='prompt' or "
                "use_chat_template=True/'auto' with a chat model",
                option="example_placement")
        if self.example_selection == "similar":
            self.examples_ = None
            self.selector_ = SimilarExamples(texts, y, self.max_samples)
        elif self.example_selection == "grouped":
            self.examples_ = None
            self.selector_ = GroupedExamples(texts, y, self.max_samples)
        elif self.example_selection == "stratified":
            # skorch asks for no more examples than there are: with fewer rows
            # than max_samples its rule stops early and keeps the draw's order.
            n_samples = min(self.max_samples, len(y))
            self.examples_ = [tuple(pair) for pair in self.get_examples(texts, y,
                                                                        n_samples)]
        else:
            chosen = draw_random(len(y), self.max_samples, self.random_state)
            self.examples_ = [(texts[i], y[i]) for i in chosen]
        if self.calibration == "fit":
            logprobs = cross_fitted_logprobs(self, texts, y)
            index = {str(c): i for i, c in enumerate(self.classes_)}
            start = -content_free_reference(self.calibration_logprobs())
            self.calibration_fit_ = fit_scale_and_bias(
                logprobs, np.array([index[str(label)] for label in y]), start=start)
        self._fit_reference()
        return self

    def get_examples(self, X, y, n_samples):
        """Up to ``n_samples`` (text, label) pairs of the fit data, skorch's way.

        Every label is represented where ``n_samples`` allows, the rest are
        drawn at random, and the one-per-label examples come last; the same
        ``random_state`` gives the same pairs.  Fewer pairs come back when X
        has fewer rows.  With ``example_selection='stratified'``, ``fit``
        calls this method, so a subclass that overrides it chooses the
        examples (skorch's extension point); ``'similar'``, ``'grouped'``
        and ``'random'`` do not use it.  :meth:`examples_for` shows the examples each text
        gets.

        Parameters
        ----------
        X : list-like
            Texts (any values; they are returned as given).
        y : list-like
            Their labels.
        n_samples : int

        Returns
        -------
        list of (text, label)
        """
        texts = X if isinstance(X, np.ndarray) else list(X)
        labels = y if isinstance(y, np.ndarray) else list(y)
        check_same_length(texts, labels)
        chosen = draw_stratified(texts, labels, n_samples, self.random_state)
        return [(texts[i], labels[i]) for i in chosen]

    def examples_for(self, X):
        """The (text, label) examples in the prompt of each text of X."""
        check_fitted(self)
        texts = check_texts(X)
        if self.examples_ is not None:
            return [list(self.examples_) for _ in texts]
        return self._renderer().examples_for(texts)

    def _renderer(self):
        if self.examples_ is not None:
            return self._renderer_with(self.examples_)
        return PerTextRenderer(self.selector_, self._renderer_with)

    def _renderer_with(self, pairs):
        """The prompt renderer that shows these (text, label) examples."""
        fields = self._prompt_fields()
        if self.example_placement == "prompt":
            fields["examples"] = format_examples(
                [(text, self._word(label)) for text, label in pairs],
                self.example_template)
            return self._prompt_renderer(fields)
        # 'turns': each example is the same question, asked and answered in
        # earlier chat turns; the template is used without its {examples}.
        template = without_examples(self.prompt_)
        history = [(PromptRenderer(template, fields).user_message(text), self._word(label))
                   for text, label in pairs]
        return PromptRenderer(template, fields, self.tokenizer_, True, history=history)


def cv_folds(y, random_state=0, n_folds=5):
    """Test indices of each of ``n_folds`` folds (fewer with fewer rows):
    stratified when every label has that many rows, shuffled by ``random_state``."""
    from sklearn.model_selection import KFold, StratifiedKFold

    y = np.asarray(y)
    n_folds = max(2, min(n_folds, len(y)))
    counts = np.unique(y, return_counts=True)[1]
    splitter = (StratifiedKFold if counts.min() >= n_folds else KFold)(
        n_folds, shuffle=True, random_state=random_state)
    return [test for _, test in splitter.split(np.zeros(len(y)), y)]


def cross_fitted_logprobs(estimator, texts, y, random_state=0):
    """Label log-probabilities of each text, scored with examples drawn from
    the other folds only (so no text is its own example).

    What ``calibration='fit'`` learns from, and what the Labeler's
    cross-validation scores; the folds are :func:`cv_folds`'.

    Parameters
    ----------
    estimator : FewShotClassifier
        Its parameters are used (a clone is fitted per fold, without calibration).
    texts, y : sequences
    """
    from sklearn.base import clone

    texts, y = list(texts), np.asarray(y)
    out = None
    for test in cv_folds(y, random_state):
        train = np.setdiff1d(np.arange(len(y)), test)
        fold = clone(estimator).set_params(calibration=None, progress=False)
        fold.fit([texts[i] for i in train], y[train], classes=list(estimator.classes_))
        values = fold.label_logprobs([texts[i] for i in test])
        if out is None:
            out = np.full((len(y), values.shape[1]), np.nan)
        out[test] = values
    return out
