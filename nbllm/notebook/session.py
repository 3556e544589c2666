"""The notebook session: the defaults every way in reads when an option is not given.

``%nbllm model NAME``, ``%nbllm device ...``, ``%nbllm cache DIR`` and the
cache bounds (``%nbllm prefix-cache MB``, ``%nbllm result-cache MB``) change
them; :func:`nbllm.classify`, the accessors, the panel and ``%nbllm`` read
them.  One typed object, so a misspelt setting fails at once instead of
being stored.
"""

from dataclasses import dataclass, fields

from ..engine.scoring import prefix
from ..engine.scoring.result_cache import DEFAULT_MAX_BYTES as RESULT_CACHE_BYTES, result_cache
from ..exceptions import OptionError

MB = 2**20
# The settings that are sizes in MiB, and the engine bound each one sets.
_BOUNDS = {"prefix_cache_mb": prefix.set_max_bytes,
           "result_cache_mb": result_cache.set_max_bytes}


@dataclass
class Session:
    """The notebook's defaults, and its view of the result cache.

    Attributes
    ----------
    model : str or None
        The model spec (None: the embedded default).
    device : str
        ``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
    dtype : str
        ``'auto'`` or a torch dtype name.
    cache_dir : str or None
        Where results are kept on disk (None: only in memory, unless
        ``$NBLLM_CACHE_DIR`` is set).
    prefix_cache_mb : int or float
        The shared prompt prefixes' keys and values kept per loaded model
        between calls, in MiB (0 keeps none; a call still computes each
        shared span once).
    result_cache_mb : int or float
        The in-memory result cache's bound, in MiB, for the whole process;
        beyond it the results used longest ago are dropped (0 keeps none).
        A disk result cache (``cache_dir``) keeps every result.
    """

    model: str = None
    device: str = "auto"
    dtype: str = "auto"
    cache_dir: str = None
    prefix_cache_mb: float = prefix.DEFAULT_MAX_BYTES // MB
    result_cache_mb: float = RESULT_CACHE_BYTES // MB

    def __setattr__(self, name, value):
        if name not in self.__dataclass_fields__:
            raise AttributeError(f"Session has no setting {name!r}")
        if name in _BOUNDS:
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not value >= 0):
                raise OptionError(f"{name} must be a number of MiB >= 0; "
                                  f"got {value!r}", option=name)
            _BOUNDS[name](value * MB)
        super().__setattr__(name, value)

    @property
    def cache_counters(self):
        """(entries, hits, misses) of the in-memory result cache."""
        return len(result_cache), result_cache.hits, result_cache.misses

    def reset(self):
        """Back to the defaults, with an empty in-memory result cache (and its
        counters at zero), as in a fresh kernel; loaded models stay loaded."""
        # Emptied first, so that restoring its bound has nothing to move.
        result_cache.clear()
        for field in fields(self):
            setattr(self, field.name, field.default)


session = Session()
"""The session of this process (one kernel, one session)."""
