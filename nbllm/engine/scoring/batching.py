"""Packing prompts into forward passes: longest first, within a budget."""


# What one more forward pass costs besides its positions, counted in positions:
# on 2 CPU cores a pass of the embedded model has a fixed cost of a few
# milliseconds, about what this many positions cost.  It decides when a
# batch is split rather than padded.
PASS_COST = 32


def longest_first(widths, batch_size, fits):
    """Group indices into batches, longest first, so padding stays small.

    With a fixed ``batch_size`` the sorted items are cut into batches of that
    size.  With ``'auto'`` the cut points minimise the positions fed to the
    model (each batch is as wide as its widest item) plus :data:`PASS_COST`
    per batch, among the batches ``fits`` accepts: one dynamic programme over
    the sorted widths, so a long tail of short items is not padded to the
    longest one.

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
    order = sorted(range(len(widths)), key=lambda i: -widths[i])
    if batch_size != "auto":
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    n = len(order)
    # best[i]: the least cost of batching order[i:]; take[i]: its first batch's size.
    best, take = [0] * (n + 1), [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        widest, best[i] = widths[order[i]], None
        count = 1
        while i + count <= n and (count == 1
                                  or fits(count, widest, widths[order[i + count - 1]])):
            cost = count * widest + PASS_COST + best[i + count]
            # Ties go to the larger batch, so the first batches are the full ones.
            if best[i] is None or cost <= best[i]:
                best[i], take[i] = cost, count
            count += 1
    batches, i = [], 0
    while i < n:
        batches.append(order[i:i + take[i]])
        i += take[i]
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
