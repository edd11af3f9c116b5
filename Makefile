# The two commands of the README: `make demo` (train, evaluate, export and predict on a generated
# dataset, CPU only) and `make test` (the test suite, the same command as .ci/run).
# Both create .venv and install into it on first use (again when pyproject.toml changes).
# PYTHON=python3.12 picks the interpreter; TORCH_INDEX=https://download.pytorch.org/whl/cpu takes the
# small CPU-only torch wheels instead of PyPI's; ARGS="--epochs 3" is passed on to `dfine demo`.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.14.1 torchvision==0.29.1
TORCH_INDEX ?=
ARGS ?=
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test clean-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(PIP) install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH)
	touch $@

$(VENV)/.demo: pyproject.toml $(VENV)/.torch
	$(PIP) install -e ".[demo]"
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.torch
	$(PIP) install -e ".[test]"
	touch $@

demo: $(VENV)/.demo
	$(BIN)/dfine demo $(ARGS)

# the test command of .ci/run (which also sets DFINE_REQUIRE_SHARED=1: CI must have ../shared)
test: $(VENV)/.test
	$(BIN)/python -m pytest -q

clean-demo:
	rm -rf runs/demo
