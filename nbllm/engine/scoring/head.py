"""The label tokens' logits in float32 when the model runs in half precision.

In bfloat16 every output of the language-model head is rounded to 8
significant bits: at the size of a confident logit (8 to 32) that is a step
of 1/16 to 1/8, as large as the gaps between labels that decide a
prediction.  A label's probability depends on the head's outputs at the
label tokens' columns directly and on the other columns only through the
softmax's normaliser, where single roundings average out.  So the few label
columns are computed again, in float32, from the head's own input and the
label tokens' rows of its weight (a few rows, not the 49k-row matrix), and
put in place of the rounded ones before the model's forward returns.

Measured on the embedded model, 600 development tweets, the default
zero-shot prompt, against float32: the mean |difference| in the label
log-odds fell from 0.030 to 0.023 and prediction flips from 8 to 5; the
rest of the difference is the rounding of every layer's matmuls, spread
evenly over the 30 layers (no single layer, the attention or the rotary
embedding accounts for much of it).  The model's float32 and float64 runs
are untouched, so their probabilities stay bit-identical.
"""

import contextlib
import threading

import torch

from ..loading.devices import is_low_precision


def _low_precision_head(model):
    """``model``'s output head if it is a linear layer in bfloat16 or float16, else None."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if isinstance(head, torch.nn.Linear) and is_low_precision(head.weight.dtype):
        return head
    return None


def runs_low_precision(model):
    """Whether ``model``'s output head computes in bfloat16 or float16."""
    return _low_precision_head(model) is not None


@contextlib.contextmanager
def float32_label_logits(model, columns):
    """Within the block, ``model``'s logits come back in float32, exact at ``columns``.

    Parameters
    ----------
    model : transformers model
    columns : torch.Tensor of int, on the model's device
        The vocabulary ids whose logits decide the labels' probabilities.

    Does nothing for a model in float32 or float64, or whose head is not a
    linear layer (its logits are whatever its own head computes).
    """
    head = _low_precision_head(model)
    if head is None:
        yield
        return
    # A model spread over devices may keep its head apart from its inputs.
    columns = columns.to(head.weight.device)
    weight = head.weight[columns].float()
    bias = None if head.bias is None else head.bias[columns].float()

    owner = threading.get_ident()

    def recompute(module, args, kwargs, output):
        if threading.get_ident() != owner:
            return None  # another thread's pass through the same model
        hidden = args[0] if args else kwargs["input"]
        logits = output.float()
        # The head's input keeps the model's precision; only the product and
        # its sum are done again, in float32.
        logits[..., columns] = torch.nn.functional.linear(hidden.float(), weight, bias)
        return logits

    handle = head.register_forward_hook(recompute, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def head_reads_only(model, rows, columns):
    """Within the block, ``model``'s head runs on the hidden states at
    ``(rows, columns)`` only, and its logits come back shaped like them.

    Packed rows hold several prompts each, so the positions whose logits are
    needed differ from row to row, which ``logits_to_keep`` (one set of
    columns for every row) cannot say.  The model is called with every
    position kept; this hook picks the needed ones before the head's matrix
    product, so the head still costs one vocabulary row per needed position.

    Parameters
    ----------
    model : transformers model
    rows, columns : torch.Tensor of int, same shape, on the model's device
        The batch row and column of each needed position.

    Raises
    ------
    RuntimeError
        If the block ends without the head having run (a model that does not
        compute its logits through ``get_output_embeddings()``).
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        raise RuntimeError(f"{type(model).__name__} has no output embeddings to read from")
    ran, owner = [], threading.get_ident()

    def pick(module, args, kwargs):
        # The panel and the Labeler score in threads, on one model: a hook
        # acts on its own thread's passes only.
        if threading.get_ident() != owner:
            return None
        hidden = args[0] if args else kwargs.pop("input")
        ran.append(True)
        return (hidden[rows, columns],) + tuple(args[1:]), kwargs

    handle = head.register_forward_pre_hook(pick, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
    if not ran:
        raise RuntimeError(f"{type(model).__name__} computed its logits without its "
                           "output embeddings; packed rows cannot be read")
