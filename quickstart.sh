#!/usr/bin/env bash
# Quick start, one command: create .venv, install the CPU build of PyTorch and the course, then run
# the whole loop once (notebook 01's reference in fast mode, graded; the blank student notebook, graded).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
# CPU PyTorch first: a plain `pip install torch` on Linux pulls a multi-GB CUDA build.
$PIP install -q "torch==2.13.0" 2>/dev/null || $PIP install -q torch --index-url https://download.pytorch.org/whl/cpu || $PIP install -q torch
$PIP install -q -e ".[dev]"
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null 2>&1 || true
# The same kernel for a Jupyter or VS Code installed elsewhere: it is listed as "Python (diffusion course)".
.venv/bin/python -m ipykernel install --user --name diffusion-course --display-name "Python (diffusion course)" \
  >/dev/null 2>&1 || true
if [ "${SKIP_DEMO:-0}" != "1" ]; then
  .venv/bin/course demo
fi
