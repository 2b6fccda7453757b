#!/usr/bin/env bash
# Create .venv (once) and install maebench with its test extras. torch is pinned to the local
# CPU wheel first: an unpinned torch requirement would pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, benchmark, pytest, xdist, pytrec_eval, ray.data, openvino" >/dev/null 2>&1; then
  .venv/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
  .venv/bin/pip install --quiet --disable-pip-version-check -e ".[test,ray]"
fi
