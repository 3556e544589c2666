"""What attention pattern each layer of a model uses, read from its config.

The tree-mask backend builds its own attention masks, so it must reproduce
every restriction the model would apply itself.  Today that means sliding
windows: Mistral, Phi-3 and Starcoder2 slide every layer; Gemma 2/3, Qwen2
with ``use_sliding_window`` and other models with ``layer_types`` mix sliding
and full layers and take one mask per layer type (a dict keyed by type).
"""

FULL = "full_attention"
SLIDING = "sliding_attention"


class UnsupportedAttention(Exception):
    """The model's attention cannot be reproduced by a tree mask."""


class AttentionLayout:
    """The attention windows of a model's layers.

    Parameters
    ----------
    windows : dict
        Layer type -> sliding window in tokens (None: full attention).
    per_type : bool
        Whether the model takes a dict of masks keyed by layer type (it
        declares ``layer_types``), or one mask for every layer.
    """

    def __init__(self, windows, per_type):
        self.windows = windows
        self.per_type = per_type

    @property
    def largest_window(self):
        """The widest sliding window of any layer, or None when none slides."""
        sizes = [w for w in self.windows.values() if w is not None]
        return max(sizes) if sizes else None

    def __repr__(self):
        return f"AttentionLayout({self.windows!r}, per_type={self.per_type})"


def _window(config):
    window = getattr(config, "sliding_window", None)
    if window is None:
        return None
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise UnsupportedAttention(f"sliding_window={window!r} is not a token count")
    return window


def attention_layout(config):
    """The :class:`AttentionLayout` of a decoder config.

    Raises
    ------
    UnsupportedAttention
        If a layer type is neither full nor sliding-window attention (e.g.
        chunked or linear attention), or the model derives positions from the
        attention mask (ALiBi), so that a tree mask cannot be exact.
    """
    if getattr(config, "alibi", False) or config.model_type in ("bloom", "mpt"):
        raise UnsupportedAttention("it adds ALiBi position biases computed from the "
                                   "attention mask")
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        unknown = sorted(set(layer_types) - {FULL, SLIDING})
        if unknown:
            raise UnsupportedAttention(f"it has {', '.join(unknown)} layers")
        windows = {kind: (_window(config) if kind == SLIDING else None)
                   for kind in set(layer_types)}
        if windows.get(SLIDING, 0) is None:
            # Declared sliding layers without a window: they attend fully.
            windows[SLIDING] = None
        return AttentionLayout(windows, per_type=True)
    return AttentionLayout({FULL: _window(config)}, per_type=False)
