#!/usr/bin/env bash
# Does every notebook run in the paper profile? A check before the first GPU run: each notebook executed at the
# paper profile's sizes with every step/epoch count capped (ADLIB_MAX_STEPS, adlib/config.py), one notebook at a
# time, each under a time limit, on whatever device this machine has (the CPU works). Nothing it writes is a
# result: executed notebooks, figures, tables, cache and checkpoints all go under the output folder (a fresh
# cache: notebook 01 trains the CIFAR-10 backbones later notebooks load). Run it in the project's Python
# environment (`source .venv/bin/activate` after ./run_all.sh has made it); it executes each notebook with
# papermill the way ./run_all.sh does, without ./run_all.sh's set-up step.
#
#   scripts/check_paper_profile.sh [--max-steps N] [--timeout SECONDS] [--output DIR] [NN ...]
#
# Defaults: --max-steps 2, --timeout 900 (per notebook), --output /tmp/adlib_paper_check, every notebook.
# Prints one line per notebook (ok / FAILED with the error's last line / TIMEOUT, wall time) and writes the same
# as DIR/summary.csv; each notebook's log is DIR/logs/NN.log. Exit code 1 when any notebook did not pass.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MAX_STEPS=2
LIMIT=900
OUT=/tmp/adlib_paper_check
NUMBERS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --max-steps) MAX_STEPS=${2:?--max-steps needs a value}; shift ;;
    --timeout) LIMIT=${2:?--timeout needs a value}; shift ;;
    --output) OUT=${2:?--output needs a value}; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    [0-9][0-9]) NUMBERS+=("$1") ;;
    *) echo "check_paper_profile.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$MAX_STEPS" =~ ^[1-9][0-9]*$ ]] || { echo "check_paper_profile.sh: --max-steps needs a whole number, 1 or more" >&2; exit 2; }
[[ "$LIMIT" =~ ^[1-9][0-9]*$ ]] || { echo "check_paper_profile.sh: --timeout needs whole seconds, 1 or more" >&2; exit 2; }
if [ ${#NUMBERS[@]} -eq 0 ]; then
  for nb in "$ROOT"/notebooks/[0-9][0-9]_*.ipynb; do NUMBERS+=("$(basename "$nb" | cut -c1-2)"); done
fi
mkdir -p "$OUT/logs" "$OUT/executed"
# as ./run_all.sh: the paper profile, one CPU thread per process, fixed hash seed; outputs under $OUT, and so is
# the cache: networks trained for 2 steps (notebook 01's CIFAR-10 backbones) must never reach the per-user cache
# that other runs load their weights from
export ADLIB_PROFILE=paper ADLIB_MAX_STEPS=$MAX_STEPS ADLIB_RESULTS="$OUT/results" ADLIB_FIGURES="$OUT/figures"
export ADLIB_CACHE="$OUT/cache" ADLIB_CHECKPOINTS="$OUT/cache/checkpoints"
export PYTHONHASHSEED=0
for var in OMP_NUM_THREADS MKL_NUM_THREADS OPENBLAS_NUM_THREADS; do export "$var=${!var:-${ADLIB_THREADS:-1}}"; done
summary="$OUT/summary.csv"
echo "notebook,status,seconds,detail" > "$summary.tmp"
failed=0
for num in "${NUMBERS[@]}"; do
  log="$OUT/logs/$num.log"
  notebooks=("$ROOT"/notebooks/"$num"_*.ipynb)
  [ -e "${notebooks[0]}" ] || { echo "check_paper_profile.sh: no notebook $num in $ROOT/notebooks" >&2; exit 2; }
  start=$(date +%s)
  rc=0
  # SIGINT first: papermill shuts its kernel down on KeyboardInterrupt; SIGKILL 60 s later if it is still there
  (cd "$ROOT" && timeout -s INT -k 60 "$LIMIT" python -m papermill "${notebooks[0]}" \
     "$OUT/executed/$(basename "${notebooks[0]}")" -p profile paper -k python3 --cwd notebooks --log-output \
     --no-progress-bar) > "$log" 2>&1 || rc=$?
  secs=$(( $(date +%s) - start ))
  if [ "$rc" = 0 ]; then
    status=ok detail=""
  elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    status=TIMEOUT detail="over ${LIMIT} s"
  else
    status=FAILED
    # the exception's last line (papermill prints the notebook's traceback to the log)
    detail=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^[A-Za-z_.]*(Error|Exception|Interrupt|Diverged)\b' \
             | grep -v '^papermill' | tail -1 | cut -c1-300 || true)
    [ -n "$detail" ] || detail="exit $rc, see $log"
  fi
  [ "$status" = ok ] || failed=1
  printf '%s  %-8s %6d s  %s\n' "$num" "$status" "$secs" "$detail"
  printf '%s,%s,%d,"%s"\n' "$num" "$status" "$secs" "${detail//\"/\'}" >> "$summary.tmp"
done
mv "$summary.tmp" "$summary"
echo "summary: $summary; logs: $OUT/logs/; executed notebooks: $OUT/executed/"
exit "$failed"
