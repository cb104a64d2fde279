#!/usr/bin/env bash
# Wheels that benchmarks/gpu_check.py needs on a GPU machine with only PyTorch and Transformers
# (Python 3.12): megatron-core and or1's light dependencies, into ./.whl (git-ignored).
#   bash benchmarks/gpu_wheels.sh && (on the GPU machine)
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#   PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="${PIP:-.venv/bin/pip}"
mkdir -p .whl
"$PIP" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
    megatron-core==0.16.1 omegaconf==2.3.0
"$PIP" wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3  # pure Python, sdist only
ls .whl
