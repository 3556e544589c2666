"""The engine's entry point: one scorer that picks the exact backend per model.

* encoder-decoder models go to :class:`~nbllm.engine.scoring.seq2seq.Seq2SeqBackend`;
* decoder-only models go to :class:`~nbllm.engine.scoring.tree_mask.TreeMaskBackend`,
  unless their attention cannot be reproduced by a mask (ALiBi, chunked or
  linear attention), which go to :class:`~nbllm.engine.scoring.exact.ExactBackend`.

Whatever is chosen is checked once per loaded model by the probe in
:mod:`~nbllm.engine.scoring.selfcheck`.  A backend that disagrees with the plain path
(or fails) is dropped with one warning for the next one down: the padded
exact backend, then the pad-free one, which is the plain path itself.  A new
architecture is slow, never wrong.  The decision is kept in the model's
``state`` (shared by every estimator on it) and shown by ``%nbllm`` and the
loaded model's repr.
"""

import threading

from ...exceptions import OptionError
from .attention import UnsupportedAttention, attention_layout
from .exact import ExactBackend
from . import selfcheck
from .seq2seq import Seq2SeqBackend, decoder_start_id
from .tree_mask import TreeMaskBackend
from ...warnings_to_user import warn
from ..status import report

_LOCK = threading.RLock()


class BackendChoice:
    """Which backend a model uses, and why.

    Attributes
    ----------
    name : str
        'tree-mask', 'encoder-decoder', 'exact' or 'exact (unpadded)'.
    reason : str
        A few words for ``%nbllm`` and the repr.
    probe : nbllm.engine.scoring.selfcheck.ProbeResult or None
        The self-check of the chosen backend (None for the plain path).
    """

    def __init__(self, factory, name, reason, probe=None):
        self.factory, self.name, self.reason, self.probe = factory, name, reason, probe

    def make(self, loaded):
        return self.factory(loaded)

    def __repr__(self):
        return f"BackendChoice({self.name!r}, {self.reason!r})"


def _unpadded_exact(loaded):
    return ExactBackend(loaded, pad_free=True)


def _exact_without_cache(loaded):
    return ExactBackend(loaded, use_prefix=False)


def _unpadded_seq2seq(loaded):
    return Seq2SeqBackend(loaded, pad_free=True)


def _candidates(loaded):
    """(factory, name, reason) from fastest to plainest, for this model.

    The last one is the plain path, trusted without a probe.
    """
    model = loaded.model
    if getattr(model.config, "is_encoder_decoder", False):
        decoder_start_id(model)  # a clear error before any probe
        return [
            (Seq2SeqBackend, "encoder-decoder",
             "encoder once per text, labels as decoder rows"),
            (_unpadded_seq2seq, "encoder-decoder (unpadded)",
             "the padded encoder-decoder path failed the self-check"),
        ]
    fallbacks = [
        (_exact_without_cache, "exact (no prefix cache)",
         "the exact path with a prefix cache failed the self-check"),
        (_unpadded_exact, "exact (unpadded)",
         "the padded exact path failed the self-check"),
    ]
    try:
        attention_layout(model.config)
    except UnsupportedAttention as exc:
        return [(ExactBackend, "exact",
                 f"a tree mask cannot reproduce its attention: {exc}")] + fallbacks
    return [
        (TreeMaskBackend, "tree-mask",
         "all labels in one pass, checked against the plain path"),
        (ExactBackend, "exact", "the tree-mask path failed the self-check"),
    ] + fallbacks


def _window(loaded):
    try:
        return attention_layout(loaded.model.config).largest_window
    except UnsupportedAttention:
        return None


def choose_backend(loaded):
    """Probe the candidates in order; return the first that matches the plain path."""
    model = loaded.model
    candidates = _candidates(loaded)
    factory, name, reason = candidates[0]
    kept = selfcheck.remembered_pass(loaded, name) if len(candidates) > 1 else None
    if kept is not None:
        return BackendChoice(factory, name, reason + " (on an earlier load)", kept)
    report(f"checking the fast scoring path on {loaded.spec} (once per model)\u2026")
    plain = candidates[-1][0](loaded)
    for index, (factory, name, reason) in enumerate(candidates):
        if index == len(candidates) - 1:
            return BackendChoice(factory, name, reason)
        # The probe gives the backend prefix caches of its own.
        probe = selfcheck.run_probe(loaded, factory(loaded), plain, _window(loaded))
        if probe.passed:
            if index == 0:
                selfcheck.remember_pass(loaded, name, probe)
            return BackendChoice(factory, name, reason, probe)
        warn(fallback_message(type(model).__name__, name, probe, candidates[index + 1][1]),
             RuntimeWarning)


def fallback_message(model_class, name, probe, slower):
    """The warning when the ``name`` path failed its self-check on a model.

    It says what the user can rely on: the next path is checked too (or is
    the plain path itself), so only the speed changes.
    """
    return (f"nbllm's {name} scoring path is not exact for {model_class}: "
            f"{probe.describe()}.  nbllm scores this model with the slower {slower} "
            "path from now on: the probabilities stay exact, only scoring takes longer.")


def backend_choice(loaded):
    """The model's :class:`BackendChoice`, probing on first use."""
    with _LOCK:
        choice = loaded.state.get("backend")
        if choice is None:
            choice = loaded.state["backend"] = choose_backend(loaded)
        return choice


def use_path(loaded, name):
    """Make ``loaded`` use the named path from now on, without a probe.

    For benchmarks and debugging: ``'tree-mask'``, ``'exact'``,
    ``'exact (unpadded)'`` (decoder-only) or ``'encoder-decoder'``.

    Raises
    ------
    ValueError
        If the model has no path of that name.
    """
    names = {}
    for factory, candidate, _ in _candidates(loaded):
        names.setdefault(candidate, factory)
    if name not in names:
        raise OptionError(f"path must be one of {', '.join(names)}; got {name!r}",
                          option="path")
    with _LOCK:
        loaded.state["backend"] = BackendChoice(names[name], name, "chosen by use_path")


class LabelScorer:
    """Scores label token sequences after prompts on one loaded model.

    Parameters
    ----------
    loaded : nbllm.engine.loading.models.LoadedModel

    Attributes
    ----------
    backend : object
        The backend doing the work; see :func:`backend_choice`.
    """

    def __init__(self, loaded):
        self.loaded = loaded
        self.choice = backend_choice(loaded)
        self.backend = self.choice.make(loaded)

    @property
    def forward_passes(self):
        return self.backend.forward_passes

    def score(self, prompt_ids, label_ids, batch_size="auto", prefix_hint=None,
              on_batch=None, progress=None, min_saving=None):
        """Return log P(label | prompt) for every prompt and label.

        Parameters
        ----------
        prompt_ids : list of list of int
            Token ids of each full prompt (special tokens included).
        label_ids : list of list of int
            Token ids of each label (no special tokens), each non-empty.
        batch_size : int or 'auto'
        prefix_hint : list of int or None
            Token ids that most prompts start with (the template before the
            text); the tree-mask backend computes their KV cache once.
        on_batch : callable or None
            Called as ``on_batch(indices, logprobs)`` after each batch with the
            sample indices and a float64 array of shape (len(indices),
            n_labels).  It may raise to stop the run.
        progress : callable or None
            Called as ``progress(n_batches, n_prompts)`` before the first
            batch; may return an object with ``update(n)`` and ``close()``.
        min_saving : int or None
            The tree-mask backend's span threshold for this call
            (:func:`~nbllm.engine.scoring.prompt_tree.plan_spans`; None: its
            default); the other backends share no spans and ignore it.

        Returns
        -------
        numpy.ndarray of shape (n_prompts, n_labels), float64
        """
        return self.backend.score(prompt_ids, label_ids, batch_size, prefix_hint,
                                  on_batch=on_batch, progress=progress,
                                  min_saving=min_saving)
