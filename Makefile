# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch/torchvision pinned to the builds available offline here; pyproject declares the lower bounds.
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test test-slow venv install install-dev lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/medaudit demo --out reports/demo

# The suite without the long simulations and multi-rank torchrun runs (marked slow): ~10 min on 2 cores.
test: install-dev
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

# Everything, the slow tests included (coverage simulations, torchrun with 2 ranks): ~3 min more.
test-slow: install-dev
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install-dev
	$(BIN)/ruff check medaudit tests

clean:
	rm -rf $(VENV) build dist *.egg-info
