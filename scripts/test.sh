#!/usr/bin/env bash
# The test suite (offline). Integration tests use ../shared/data when it exists and skip
# with a message when it does not.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# two xdist workers, one per core, the long tests spread by work stealing; each worker starts
# every test with one torch thread (tests/conftest.py). Options given here are added
# (`bash scripts/test.sh -m "not slow"`: the inner loop).
exec .venv/bin/python -m pytest -q -ra -n 2 --dist worksteal "$@"
