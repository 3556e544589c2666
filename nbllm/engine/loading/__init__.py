"""Getting a model: names, files, GGUF conversion, devices and the registry.

Nothing here imports :mod:`nbllm.engine.scoring`; scoring imports from here.
"""
