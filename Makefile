# lightdet: `make train` and `make test` each set up .venv on first use.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=
PYTEST_ARGS ?= -n 2

.DEFAULT_GOAL := help
.PHONY: help install train test lint clean distclean

help: ## Show this help
	@echo "lightdet make targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "Pass arguments with ARGS='...' (train) or PYTEST_ARGS='...' (test)."

$(STAMP): pyproject.toml setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar off -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install lightdet (editable) with its dev tools

train: $(STAMP) ## Quickstart: generate the shapes dataset and train RTMDet-tiny on CPU (~10 min)
	$(BIN)/lightdet-train experiment=shapes_rtmdet $(ARGS)

test: $(STAMP) ## Run the whole test suite (CPU, a few minutes)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## Lint with ruff
	$(BIN)/ruff check src tests scripts conf

clean: ## Remove build artefacts and caches (keeps .venv, data and outputs)
	rm -rf build dist src/*.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +

distclean: clean ## Also remove .venv, generated data and run outputs
	rm -rf $(VENV) data outputs multirun
