"""Zero-shot classification: the labels and a prompt, no examples."""

from . import docs
from .base import _SingleLabelBase


class ZeroShotClassifier(_SingleLabelBase):
    __doc__ = (
        """Zero-shot text classification by constrained label likelihood.

    Every label string is scored under a causal LM after the prompt; the
    predicted label is the most likely one, and the probabilities are exact.
    """
        + docs.parameters(docs.SINGLE_LABEL, "``{text}`` and ``{labels}``",
                          "``DEFAULT_PROMPT_ZERO_SHOT``")
        + """
    Attributes
    ----------
    classes_ : ndarray of str
    label_ids_ : list of list of int
        Token ids of each class.
    prompt_ : str
    model_, tokenizer_ : the model in use
    device_ : torch.device

    Examples
    --------
    >>> clf = ZeroShotClassifier().fit(None, ["negative", "positive"])
    >>> clf.predict_proba(["I love it"])  # doctest: +SKIP
    """
    )

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
    ):
        self.model_name = model_name
        self.model = model
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.probas_sum_to_1 = probas_sum_to_1
        self.device = device
        self.dtype = dtype
        self.error_low_prob = error_low_prob
        self.threshold_low_prob = threshold_low_prob
        self.use_caching = use_caching
        self.use_chat_template = use_chat_template
        self.batch_size = batch_size
        self.progress = progress
        self.cache_dir = cache_dir
        self.calibration = calibration
        self.label_map = label_map
        self.truncation = truncation
        self.trust_remote_code = trust_remote_code

    def fit(self, X, y, classes=None, **fit_params):
        """Load the model and take the classes from ``y`` (no training happens,
        except for ``calibration='fit'``).

        Parameters
        ----------
        X : list-like of str or None
            Ignored, except with ``calibration='fit'``: the labelled texts
            the calibration learns from.
        y : list-like of str
            The labels, or labelled targets; ``classes_ = np.unique(y)``.
        classes : list-like of str, optional
            All classes, when ``y`` (the labels of X) lacks some; it must
            hold every label of y.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If ``classes`` misses a label of ``y``, or ``calibration='fit'``
            gets no texts.
        """
        self._fit_common(y, classes)
        if self.calibration == "fit":
            self._fit_calibration(X, y)
            self._fit_inputs = (list(X),) + self._fit_inputs[1:]
        return self
