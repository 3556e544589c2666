"""Exceptions raised by nbllm."""


class LowProbabilityError(ValueError):
    """The labels' total probability for a sample is too low to trust.

    Raised when it is exactly zero, or below ``threshold_low_prob`` with
    ``error_low_prob='raise'``.
    """
