"""Saving fitted classifiers: light pickles and a data-only JSON file.

**Pickle** (``pickle``, ``joblib``, ``cloudpickle``): a fitted estimator whose
model came from a spec (the embedded alias, a GGUF path, a Hugging Face id or
folder) pickles its parameters and fitted state, not the weights; after
unpickling, the model comes back through the process's registry on first use,
so many unpickled copies share one model.  A model *object* passed by the user
is pickled with the estimator, as skorch does (the pickle then holds the
weights).  Unpickling runs code, as with every pickle: load only files you trust.

**save / load** (:func:`save`, :func:`load`): JSON with the parameters and
what fitting derived from the data (the fit labels and texts, the chosen
examples, a learned calibration).  Loading builds the estimator from those
values and refits it (deterministically; no code from the file runs), with
``trust_remote_code`` off unless the caller turns it on.
"""

import json
from pathlib import Path

import numpy as np

from ..exceptions import FileFormatError, ModelError, OptionError

FORMAT = "nbllm-classifier"
VERSION = 1
# What a fitted estimator holds that belongs to this process only.
RUNTIME_ATTRIBUTES = ("loaded_", "model_", "tokenizer_", "disk_cache_")
_RESTORE = "_restore_model"


def light_state(estimator, state):
    """The pickled state: without the loaded model when it came from a spec."""
    if "loaded_" not in state:
        return state  # not fitted: only parameters
    state = dict(state)
    state["_fitted_fingerprint"] = state["loaded_"].fingerprint
    for name in RUNTIME_ATTRIBUTES:
        state.pop(name, None)
    state[_RESTORE] = True
    return state


def restore_model(estimator):
    """Load the model of an unpickled estimator (through the registry)."""
    from ..engine.loading import models
    from ..engine.scoring.result_cache import disk_cache

    state = estimator.__dict__
    state.pop(_RESTORE, None)
    if estimator.model is not None:
        loaded = models.wrap_model(estimator.model, estimator.tokenizer)
    else:
        loaded = models.get_model(estimator.model_name, estimator.device, estimator.dtype,
                                  trust_remote_code=estimator.trust_remote_code)
    expected = state.pop("_fitted_fingerprint", None)
    if expected is not None and loaded.fingerprint != expected:
        from ..warnings_to_user import warn

        warn(f"the model under {loaded.spec!r} is not the one this classifier was "
             "fitted with (its weights or tokenizer changed); the label tokens were "
             "computed for the old one: refit the classifier")
    state.update(loaded_=loaded, model_=loaded.model, tokenizer_=loaded.tokenizer,
                 disk_cache_=disk_cache(estimator.cache_dir) if estimator.use_caching
                 else None)


def needs_restore(estimator):
    return bool(estimator.__dict__.get(_RESTORE))


def _jsonable_params(estimator):
    params = estimator.get_params(deep=False)
    if params.get("model") is not None or params.get("tokenizer") is not None:
        raise ModelError(
            "save() writes parameters as JSON, and a model object is not one: pass the "
            "model by name (a spec or a folder), or pickle the estimator instead "
            "(pickle keeps model objects)")
    params.pop("model", None)
    params.pop("tokenizer", None)
    for name, value in params.items():
        try:
            json.dumps(value)
        except TypeError:
            raise OptionError(
                f"save() writes parameters as JSON; {name}={value!r} is not JSON",
                option=name) from None
    return params


def _plain(values):
    return None if values is None else [v.item() if hasattr(v, "item") else v
                                        for v in values]


def save(estimator, path):
    """Write a fitted estimator's parameters and fitted state as JSON."""
    from sklearn.utils.validation import check_is_fitted

    from .._version import __version__

    check_is_fitted(estimator)
    X, y, classes = estimator._fit_inputs
    payload = {
        "format": FORMAT, "version": VERSION, "nbllm": __version__,
        "class": type(estimator).__name__,
        "params": _jsonable_params(estimator),
        "fit": {"X": _plain(X), "y": _plain(y), "classes": _plain(classes)},
        "examples": [list(pair) for pair in estimator.examples_]
        if getattr(estimator, "examples_", None) is not None else None,
        "calibration_fit": _plain(getattr(estimator, "calibration_fit_", None)),
    }
    Path(path).write_text(json.dumps(payload, ensure_ascii=False, indent=1),
                          encoding="utf-8")


def _read(path):
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FileFormatError(
            f"{str(path)!r} is not an nbllm classifier file ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise FileFormatError(f"{str(path)!r} is not an nbllm classifier file (no "
                              f"'format': {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise FileFormatError(
            f"{str(path)!r} has format version {payload.get('version')!r}; "
            f"this nbllm reads version {VERSION}")
    return payload


def load(cls, path, trust_remote_code=False):
    """Rebuild an estimator saved by :func:`save` (refits; runs no code from the file).

    Raises
    ------
    ValueError
        If the file is not an nbllm classifier file, holds another class, or
        asks for ``trust_remote_code`` without the caller allowing it.
    """
    from . import FewShotClassifier, MultiLabelZeroShotClassifier, ZeroShotClassifier

    payload = _read(path)
    known = {c.__name__: c for c in (ZeroShotClassifier, FewShotClassifier,
                                     MultiLabelZeroShotClassifier)}
    name = payload.get("class")
    if name not in known or not issubclass(known[name], cls):
        raise FileFormatError(f"{str(path)!r} holds a {name!r}, not a {cls.__name__}")
    params = dict(payload["params"])
    if params.get("trust_remote_code") and not trust_remote_code:
        raise OptionError(
            f"{str(path)!r} asks for trust_remote_code=True (the model runs code from "
            "its own files); pass trust_remote_code=True to load() to allow it",
            option="trust_remote_code")
    try:
        estimator = known[name](**params)
    except TypeError as exc:
        raise FileFormatError(
            f"{str(path)!r} has parameters this nbllm does not know ({exc})") from None
    fit = payload["fit"]
    calibration = params.get("calibration")
    if calibration == "fit":  # learned already: set it, do not rescore the texts
        estimator.set_params(calibration=None)
    estimator.fit(fit["X"], fit["y"], **({"classes": fit["classes"]}
                                        if fit["classes"] is not None else {}))
    if calibration == "fit":
        estimator.set_params(calibration="fit")
        estimator.calibration_fit_ = np.asarray(payload["calibration_fit"])
    if payload.get("examples") is not None:
        estimator.examples_ = [tuple(pair) for pair in payload["examples"]]
        estimator._fit_reference()  # the bias of the prompt with these examples
    return estimator

