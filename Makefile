# Darkroom: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build of torch, installed before the project so nothing pulls a multi-GB CUDA build.
# On a GPU machine: make run TORCH_SPEC='torch' (or the CUDA build you want).
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=

.PHONY: help install install-test run test lint format bench docs clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH_PIP_ARGS) '$(TORCH_SPEC)'
	@touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(VENV)/.installed  ## create .venv, install torch (CPU) and Darkroom

install-test: $(VENV)/.installed-test  ## install Darkroom with its test extras

run: install  ## run the whole service on this machine (embedded Redis, local storage, CPU)
	$(BIN)/darkroom up

lint: install-test  ## ruff
	$(BIN)/ruff check .

test: install-test lint  ## lint, then the whole test suite
	$(BIN)/python -m pytest

bench: install-test  ## benchmarks (print tables)
	$(BIN)/python benchmarks/effects.py
	$(BIN)/python benchmarks/queue.py
	$(BIN)/python benchmarks/sse.py
	$(BIN)/python benchmarks/diffusion.py

docs: install  ## regenerate the settings tables in README.md and docs/configuration.md
	$(BIN)/python -m darkroom.docgen

clean:  ## remove the virtualenv and local data
	rm -rf $(VENV) data .pytest_cache .ruff_cache
