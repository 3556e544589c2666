"""Zero-shot classification: the labels and a prompt, no examples."""

from .. import options
from . import docs
from .inputs import check_fit_params, check_same_length, check_texts
from .single_label import _SingleLabelBase


class ZeroShotClassifier(_SingleLabelBase):
    __doc__ = (
        """Zero-shot text classification by constrained label likelihood.

    Every label string is scored under a causal LM after the prompt; the
    predicted label is the most likely one, and the probabilities are exact.
    """
        + docs.parameters(options.ZERO_SHOT, "``{text}`` and ``{labels}``",
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

    def fit(self, X, y, classes=None, **fit_params):
        """Load the model and take the classes from ``y`` (no training happens,
        except for ``calibration='fit'``).

        Parameters
        ----------
        X : list-like of str or None
            The texts of ``y``; only checked (one per label), except with
            ``calibration='fit'``: the labelled texts the calibration
            learns from.
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
        self._check_params()
        check_fit_params(fit_params)
        if X is not None and self.calibration != "fit":
            # Not needed, but a mismatch with y is a mistake worth reporting.
            texts = check_texts(X)
            if y is not None:
                check_same_length(texts, y)
        self._fit_common(y, classes)
        if self.calibration == "fit":
            self._fit_calibration(X, y)
            self._fit_inputs = (list(X),) + self._fit_inputs[1:]
        self._fit_reference()
        return self
