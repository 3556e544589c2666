"""Session defaults shared by the magics, the panel and the accessors.

``%nbllm model NAME``, ``%nbllm device ...`` and ``%nbllm cache DIR`` change
them; every way in reads them when an option is not given.
"""

settings = {"model": None, "device": "auto", "dtype": "auto", "cache_dir": None}
