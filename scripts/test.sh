#!/usr/bin/env bash
# The test suite (offline). Integration tests use ../shared/data when it exists and skip
# with a message when it does not.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -q -ra "$@"
