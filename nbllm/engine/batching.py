"""Packing prompts into forward passes: longest first, within a budget."""


def longest_first(widths, batch_size, fits):
    """Group indices into batches, longest first, so padding stays small.

    Parameters
    ----------
    widths : list of int
        Tokens per item.
    batch_size : int or 'auto'
        Items per batch, or 'auto' to let ``fits`` decide.
    fits : callable
        ``fits(count, widest, newest)``: whether a batch of ``count`` items,
        the widest ``widest`` tokens wide and the last ``newest``, is within
        the budget (used with 'auto'; a batch always takes its first item).

    Returns
    -------
    list of list of int
    """
    batches, current = [], []
    for i in sorted(range(len(widths)), key=lambda i: -widths[i]):
        if current:
            count, widest = len(current) + 1, widths[current[0]]
            full = (not fits(count, widest, widths[i]) if batch_size == "auto"
                    else count > batch_size)
            if full:
                batches.append(current)
                current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def deliver(out, indices, logprobs, on_batch, bar):
    """Hand one batch's results on: one device-to-host copy, into ``out``, to
    the caller's ``on_batch(indices, values)`` and to the progress bar."""
    values = logprobs.double().cpu().numpy()
    out[indices] = values
    if on_batch is not None:
        on_batch(indices, values)
    if bar is not None:
        bar.update(len(indices))
