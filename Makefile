# Darkroom: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed before the project, from pip's index: on Linux, PyPI's torch is the CUDA build
# (several GB of nvidia-* packages). The CPU build instead:
#   make run TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cpu'
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=

.PHONY: help install install-test run test lint format bench docs clean gpu-check gpu-wheels

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH_PIP_ARGS) '$(TORCH_SPEC)'
	@touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install --quiet -e '.[server,worker]'
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[server,worker,test]'
	@touch $@

install: $(VENV)/.installed  ## create .venv, install torch and Darkroom into it
	@echo "Darkroom is installed in $(VENV)/: run '$(BIN)/darkroom --help', or 'source $(BIN)/activate' first"

install-test: $(VENV)/.installed-test  ## install Darkroom with its test extras

run: install  ## run the whole service on this machine (embedded Redis, local storage)
	$(BIN)/darkroom up

lint: install-test  ## ruff, and the layer contracts (import-linter, [tool.importlinter] in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: install-test lint  ## lint, then the whole test suite
	$(BIN)/python -m pytest

bench: install-test  ## benchmarks (print tables)
	$(BIN)/python benchmarks/effects.py
	$(BIN)/python benchmarks/queue.py
	$(BIN)/python benchmarks/sse.py
	$(BIN)/python benchmarks/diffusion.py

docs: install  ## regenerate the settings tables in README.md and docs/configuration.md
	$(BIN)/python -m darkroom.cli.docgen

clean:  ## remove the virtualenv and local data
	rm -rf $(VENV) data .pytest_cache .ruff_cache

# `make gpu-check` runs on a borrowed CUDA machine without the venv: that machine's python3 (torch,
# torchvision, transformers, numpy, Pillow, OpenCV) plus the few packages it lacks, as the wheels
# `make gpu-wheels` downloads here (versions of the venv; CPython 3.12, manylinux x86_64), installed
# offline into $(GPU_SITE). docs/operations.md, "GPU check".
GPU_PYTHON ?= python3
GPU_PY_VERSION ?= 3.12
GPU_WHEELS_DIR ?= .gpu-wheels
GPU_SITE ?= .gpu-site
GPU_CHECK_ARGS ?=
GPU_WHEEL_PKGS := diffusers pydantic pydantic-core annotated-types typing-inspection typing-extensions \
	requests urllib3 idna charset-normalizer certifi onnxruntime onnx protobuf flatbuffers ml-dtypes

gpu-wheels: $(VENV)/.installed  ## download the wheels gpu-check needs on a CUDA machine into .gpu-wheels/
	rm -rf $(GPU_WHEELS_DIR) && mkdir -p $(GPU_WHEELS_DIR)
	$(BIN)/python -c 'import importlib.metadata as m, sys; print("\n".join(f"{p}=={m.version(p)}" for p in sys.argv[1:]))' \
		$(GPU_WHEEL_PKGS) > $(GPU_WHEELS_DIR)/requirements.txt
	$(BIN)/python -m pip download --quiet --disable-pip-version-check --only-binary=:all: --no-deps \
		--python-version $(GPU_PY_VERSION) --implementation cp \
		--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 \
		--platform manylinux_2_28_x86_64 \
		-d $(GPU_WHEELS_DIR) -r $(GPU_WHEELS_DIR)/requirements.txt
	@du -ch $(GPU_WHEELS_DIR)/*.whl | tail -1 | sed 's|total|in $(GPU_WHEELS_DIR)/|'

gpu-check:  ## on a CUDA machine, no venv: effects, CUDA vs CPU, tiny diffusion (one table; GPU_CHECK_ARGS)
	@if [ -f $(GPU_WHEELS_DIR)/requirements.txt ] && \
	    ! cmp -s $(GPU_WHEELS_DIR)/requirements.txt $(GPU_SITE)/.requirements.txt; then \
	  echo "installing $(GPU_WHEELS_DIR)/ into $(GPU_SITE)/ (offline)"; \
	  rm -rf $(GPU_SITE) && mkdir -p $(GPU_SITE) || exit 1; \
	  if $(GPU_PYTHON) -m pip --version >/dev/null 2>&1; then \
	    $(GPU_PYTHON) -m pip install --quiet --disable-pip-version-check --no-index --no-deps \
	      --find-links $(GPU_WHEELS_DIR) --target $(GPU_SITE) -r $(GPU_WHEELS_DIR)/requirements.txt || exit 1; \
	  else \
	    for w in $(GPU_WHEELS_DIR)/*.whl; do $(GPU_PYTHON) -m zipfile -e $$w $(GPU_SITE) || exit 1; done; \
	  fi; \
	  cp $(GPU_WHEELS_DIR)/requirements.txt $(GPU_SITE)/.requirements.txt; \
	fi
	PYTHONPATH="$(CURDIR):$(abspath $(GPU_SITE))$${PYTHONPATH:+:$$PYTHONPATH}" \
		$(GPU_PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)
