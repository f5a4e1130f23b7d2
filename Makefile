# The two commands a newcomer needs: `make demo` and `make test`.
# Each creates the virtual environment and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint venv docs clean bench bench-serve

$(BIN)/connector: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/connector

venv: $(BIN)/connector

demo: venv
	$(BIN)/python examples/demo.py

test: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check connector modules tests examples benchmarks
	$(BIN)/ruff format --check connector modules tests examples benchmarks
	$(BIN)/mypy

# The benchmark (python -m benchmarks); the dev extra includes its peer, segment-analytics-python.
bench: venv
	$(BIN)/python -m benchmarks

# connector serve under 200 concurrent clients against arun_many in-process.
bench-serve: venv
	$(BIN)/python -m benchmarks.serve

docs: venv
	$(BIN)/connector docs

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
