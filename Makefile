# Two commands: `make setup` (a fresh .venv with linkhoi and its dev tools), `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test lint format

setup:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[dev]'

test: lint
	$(BIN)/python -m pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
