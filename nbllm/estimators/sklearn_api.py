"""scikit-learn's estimator protocol, without importing scikit-learn to classify.

Importing ``sklearn.base`` costs about a second and 130 MB (its
``utils.fixes`` imports scipy.stats and pandas), more than the rest of a
first notebook cell after torch and transformers.  Fitting and predicting
need none of it, so the estimators implement the protocol scikit-learn
duck-types (``get_params``/``set_params``, ``__sklearn_tags__``,
``_estimator_type``, ``score``, the repr and the HTML diagram) and import
scikit-learn only inside the methods that scikit-learn itself, or a person
looking at an estimator, calls: ``clone``, ``GridSearchCV``, ``Pipeline``
and ``cross_val_score`` work as with any scikit-learn estimator, and an
estimator shown in a notebook gets scikit-learn's diagram.

Parameter handling follows scikit-learn's rules (the names of ``__init__``,
nested ``a__b`` parameters, the same error for an unknown name); the repr,
the diagram and the tags are scikit-learn's own functions applied to the
estimator.
"""

import inspect


def check_fitted(estimator, attribute):
    """Raise scikit-learn's ``NotFittedError`` unless ``attribute`` is set.

    The same check and message as ``sklearn.utils.validation.check_is_fitted``
    with one attribute; scikit-learn is imported only to raise.
    """
    if not hasattr(estimator, attribute):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with "
            "appropriate arguments before using this estimator."
        )


class ClassifierAPI:
    """What ``BaseEstimator`` and ``ClassifierMixin`` give a classifier, lazily."""

    _estimator_type = "classifier"  # how scikit-learn < 1.6 recognises a classifier

    @classmethod
    def _get_param_names(cls):
        init = cls.__init__
        if init is object.__init__:
            return []
        params = [p for p in inspect.signature(init).parameters.values()
                  if p.name != "self" and p.kind != p.VAR_KEYWORD]
        if any(p.kind == p.VAR_POSITIONAL for p in params):
            raise RuntimeError(f"{cls.__name__}.__init__ takes *args; estimators may not.")
        return sorted(p.name for p in params)

    def get_params(self, deep=True):
        """Parameters of this estimator (scikit-learn's contract).

        Parameters
        ----------
        deep : bool
            Also return the parameters of parameters that are estimators,
            as ``name__parameter``.

        Returns
        -------
        dict
        """
        out = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        """Set parameters, ``name`` or nested ``name__parameter`` (scikit-learn's contract).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For a name that is not a parameter, with scikit-learn's message.
        """
        if not params:
            return self
        valid = self.get_params(deep=True)
        nested = {}
        for key, value in params.items():
            name, sep, sub = key.partition("__")
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {self}. "
                    f"Valid parameters are: {sorted(self._get_param_names())!r}."
                )
            if sep:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
                valid[name] = value
        for name, sub_params in nested.items():
            valid[name].set_params(**sub_params)
        return self

    def __setstate__(self, state):
        # As BaseEstimator: unpickling restores the attributes.
        self.__dict__.update(state)

    def __sklearn_tags__(self):
        from sklearn.base import BaseEstimator
        from sklearn.utils import ClassifierTags

        # BaseEstimator's defaults, then what ClassifierMixin changes.
        tags = BaseEstimator.__sklearn_tags__(self)
        tags.estimator_type = "classifier"
        tags.classifier_tags = ClassifierTags()
        tags.target_tags.required = True
        return tags

    def score(self, X, y, sample_weight=None):
        """Accuracy of ``predict(X)`` against ``y`` (``ClassifierMixin.score``)."""
        from sklearn.metrics import accuracy_score

        return accuracy_score(y, self.predict(X), sample_weight=sample_weight)

    def __repr__(self, N_CHAR_MAX=700):
        # scikit-learn's default style: the class and the parameters changed
        # from their defaults.  (Its printer only handles BaseEstimator
        # subclasses, so it cannot be borrowed.)
        init = inspect.signature(type(self).__init__).parameters
        changed = [f"{name}={value!r}" for name, value in self.get_params(deep=False).items()
                   if name not in init or repr(value) != repr(init[name].default)]
        text = f"{type(self).__name__}({', '.join(changed)})"
        if len(text) > N_CHAR_MAX:
            half = N_CHAR_MAX // 2
            text = text[:half] + "..." + text[-half:]
        return text

    def _repr_html_(self):
        """scikit-learn's estimator diagram, as for any estimator in a notebook."""
        from sklearn.utils import estimator_html_repr

        return estimator_html_repr(self)
