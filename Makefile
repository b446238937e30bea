# Set-up, demo and test entry points. Every target creates the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned here and installed before the package so that pip never resolves an
# unpinned torch (which on Linux would pull the multi-GB CUDA build). For a CPU-only build
# on a machine with internet access, pass TORCH_INDEX=https://download.pytorch.org/whl/cpu.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
DEMO_TRIALS ?= 100
# The sampler seed of the demo search, so that `make demo` repeats the search the README records.
DEMO_SEED ?= 0
PYTEST_ARGS ?=

.PHONY: setup demo test clean

$(BIN)/adaptsearch: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/adaptsearch

demo: setup
	$(BIN)/adaptsearch run --trials $(DEMO_TRIALS) --seed $(DEMO_SEED)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Removes what commands write; studies/space.yaml, demo.yaml, modalities.yaml and README.md stay.
clean:
	rm -rf $(VENV) studies/*.db studies/*.db-wal studies/*.db-shm studies/*.db.lock \
		studies/*-artifacts studies/artifacts studies/cache studies/demo-world studies/runs reports
