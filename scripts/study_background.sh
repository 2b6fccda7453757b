#!/usr/bin/env bash
# Run `maebench study` in the background, resumable, committing what it finishes as it lands
# (a session can end without warning; a re-run of the same command resumes where it stopped).
# usage: bash scripts/study_background.sh <spec> [maebench study options...]
#   e.g. nohup bash scripts/study_background.sh scratch-mae --data-dir ../shared/data/beir &
# Log: _work/study-<spec>.log. Only results/studies/ and models/studies/ are committed, by path
# (`git commit -- <paths>`), so nothing else that is staged or changed rides along.
set -uo pipefail
cd "$(dirname "$0")/.."
spec=$1
shift
mkdir -p _work
log="_work/study-$(basename "$spec" .yaml).log"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

commit_finished() {
  git add -A -- results/studies models/studies 2>/dev/null || return 0
  if git diff --cached --quiet -- results/studies models/studies; then
    return 0
  fi
  cards=$(git ls-files --others --cached -- models/studies | grep -c '\.yaml$')
  results=$(git ls-files --others --cached -- results/studies | grep -c '/[^/]*\.json$')
  for _ in 1 2 3 4 5; do
    if git commit -q -m "study $(basename "$spec" .yaml): finished steps ($cards cards, $results results) and report" \
        -- results/studies models/studies; then
      return 0
    fi
    sleep 5  # another commit holds the index lock
  done
}

# a study (not its calibration) records its design first, committed alone, so the git history
# shows the registration before any test number
case " $* " in
  *" --calibrate "*|*" --report-only "*) ;;
  *)
    .venv/bin/maebench study "$spec" --register "$@" >>"$log" 2>&1 || exit $?
    git add -A -- results/studies 2>/dev/null
    git commit -q -m "study $(basename "$spec" .yaml): registration (the design's sha256) before its first test number" \
      -- results/studies >>"$log" 2>&1 || true
    ;;
esac
.venv/bin/maebench study "$spec" "$@" >>"$log" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  sleep 120
  commit_finished
done
wait "$pid"
status=$?
commit_finished
echo "study $spec exited with $status" >>"$log"
exit "$status"
