#!/usr/bin/env bash
# The budget study (`python -m adlib.budget`) with one runner per detector entry, all in parallel: for a machine
# with many cores and a GPU, where one runner would leave most of it idle. Each runner trains its entry's rungs,
# cheapest first, dataset by dataset in the order given (the first dataset's ladder is finished before the next
# one starts), into its own rows file (the study locks a rows file: two runners must not share one); when every
# runner has ended, or the time limit stopped them, the rows are merged into the profile's rows file
# (results/budget/ for cpu, results/<profile>/budget/ otherwise) by scripts/merge_budget_rows.py. A runner stopped
# by the time limit loses only the rung it was training: each finished rung is already written (atomically).
#
#   scripts/budget_parallel.sh [--profile P] [--widths "W ..."] [--datasets "D ..."] [--entries "E;E;..."]
#                              [--time-limit SECONDS] [--work DIR]
#
# Defaults: --profile paper, every width and dataset of the configuration, every entry, no time limit,
# --work /tmp/adlib_budget_parallel (rows_NN.csv and log_NN.txt of each runner). Entries are separated by ';'
# (names hold spaces: "AE (L1)"). Each runner uses one torch thread ($ADLIB_THREADS to change it).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROFILE=paper WIDTHS="" DATASETS="" ENTRIES="" LIMIT=0 WORK=/tmp/adlib_budget_parallel
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE=${2:?}; shift ;;
    --widths) WIDTHS=${2:?}; shift ;;
    --datasets) DATASETS=${2:?}; shift ;;
    --entries) ENTRIES=${2:?}; shift ;;
    --time-limit) LIMIT=${2:?}; shift ;;
    --work) WORK=${2:?}; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "budget_parallel.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$LIMIT" =~ ^[0-9]+$ ]] || { echo "budget_parallel.sh: --time-limit needs whole seconds" >&2; exit 2; }
cd "$ROOT"
PY=${PYTHON:-python}
# the profile's rows file, and (when not given) every entry and dataset of the study's configuration, in its order
{ read -r TARGET && read -r ALL_ENTRIES && read -r ALL_DATASETS; } < <("$PY" -c "
from adlib.budget import rows_path_for, study_values
values = study_values('$PROFILE')
print(rows_path_for('$PROFILE')); print(';'.join(values['detectors'])); print(' '.join(values['datasets']))") || true
[ -n "${TARGET:-}" ] || { echo "budget_parallel.sh: could not read the study's configuration with $PY (is adlib installed?)" >&2; exit 2; }
ENTRIES=${ENTRIES:-$ALL_ENTRIES}
DATASETS=${DATASETS:-$ALL_DATASETS}
mkdir -p "$WORK"
width_args=()
[ -n "$WIDTHS" ] && width_args=(--widths $WIDTHS)
IFS=';' read -r -a entries <<< "$ENTRIES"
pids=()
for i in "${!entries[@]}"; do
  entry=${entries[$i]}
  rows="$WORK/rows_$(printf %02d "$i").csv" log="$WORK/log_$(printf %02d "$i").txt"
  # a runner starts from the committed rows so that it skips the rungs already done
  [ -f "$TARGET" ] && [ ! -f "$rows" ] && cp "$TARGET" "$rows"
  (
    for dataset in $DATASETS; do
      "$PY" -m adlib.budget --profile "$PROFILE" --detectors "$entry" --datasets "$dataset" "${width_args[@]}" \
        --rows "$rows" --no-progress || exit $?
    done
  ) > "$log" 2>&1 &
  pids+=($!)
done
echo "budget_parallel.sh: ${#pids[@]} runners (profile $PROFILE; datasets $DATASETS; logs in $WORK)"
if [ "$LIMIT" -gt 0 ]; then
  # the time limit: stop every runner (and its python) still going after LIMIT seconds (its output goes nowhere,
  # so that a caller reading this script's output is not held open by its sleep once the runners are done)
  ( sleep "$LIMIT"; for pid in "${pids[@]}"; do pkill -TERM -P "$pid" 2>/dev/null || true; done ) >/dev/null 2>&1 &
  watchdog=$!
fi
failed=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { rc=$?; [ "$rc" = 143 ] || [ "$rc" = 15 ] || { failed=1; echo "runner ${entries[$i]}: exit $rc (see $WORK/log_$(printf %02d "$i").txt)" >&2; }; }
done
[ "$LIMIT" -gt 0 ] && kill "$watchdog" 2>/dev/null || true
shopt -s nullglob
sources=("$WORK"/rows_*.csv)
if [ ${#sources[@]} -gt 0 ]; then
  mkdir -p "$(dirname "$TARGET")"
  [ -f "$TARGET" ] || head -n 1 "${sources[0]}" > "$TARGET"
  "$PY" scripts/merge_budget_rows.py "${sources[@]}" --target "$TARGET"
fi
grep -h "^\[budget\]" "$WORK"/log_*.txt | grep -v "rungs planned" | sort || true
exit $failed
