"""The notebook session: the defaults every way in reads when an option is not given.

``%nbllm model NAME``, ``%nbllm device ...`` and ``%nbllm cache DIR`` change
them; :func:`nbllm.classify`, the accessors, the panel and ``%nbllm`` read
them.  One typed object, so a misspelt setting fails at once instead of
being stored.
"""

from dataclasses import dataclass, fields

from ..engine.scoring import prefix
from ..exceptions import OptionError

MB = 2**20


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
    """

    model: str = None
    device: str = "auto"
    dtype: str = "auto"
    cache_dir: str = None
    prefix_cache_mb: float = prefix.DEFAULT_MAX_BYTES // MB

    def __setattr__(self, name, value):
        if name not in self.__dataclass_fields__:
            raise AttributeError(f"Session has no setting {name!r}")
        if name == "prefix_cache_mb":
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not value >= 0):
                raise OptionError(f"prefix_cache_mb must be a number of MiB >= 0; "
                                  f"got {value!r}", option="prefix_cache_mb")
            prefix.set_max_bytes(value * MB)
        super().__setattr__(name, value)

    @property
    def cache_counters(self):
        """(entries, hits, misses) of the in-memory result cache."""
        from ..engine.scoring.result_cache import result_cache

        return len(result_cache), result_cache.hits, result_cache.misses

    def reset(self):
        """Back to the defaults, with an empty in-memory result cache (and its
        counters at zero), as in a fresh kernel; loaded models stay loaded."""
        from ..engine.scoring.result_cache import result_cache

        for field in fields(self):
            setattr(self, field.name, field.default)
        result_cache.clear()


session = Session()
"""The session of this process (one kernel, one session)."""
