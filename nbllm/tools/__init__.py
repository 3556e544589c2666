"""Tooling around the library, not part of it: the demo, the tweet corpus
loader used by the demo, tests and benchmarks, and a headless notebook runner."""
