#!/usr/bin/env bash
# adlib: the commands of this project (run `./run_all.sh --help` for the full text).
#   ./run_all.sh [--profile smoke|cpu|paper] [--output DIR] [--only NN] [--publish] [--jobs N] [--no-report]
#                                          execute the notebooks headless, then render them into report/
#   ./run_all.sh test [PYTEST ARGS...]     unit tests + every notebook (smoke profile) via nbval
#   ./run_all.sh lab [JUPYTER LAB ARGS...] start JupyterLab in notebooks/
# Each does its own set-up: a virtual environment in .venv (unless a venv or conda env is active) with the
# pinned package, reinstalled when pyproject.toml changes. Arguments are checked before any set-up.
#
# Test hook: ADLIB_DRY_RUN=1 skips the environment set-up and prints the commands (papermill, pytest,
# jupyter lab, the report builder) instead of running them, creating no directories; tests/test_run_all.py uses it.
set -euo pipefail
CALLER_PWD=$(pwd)
cd "$(dirname "$0")"
ROOT=$(pwd)
PROG=$(basename "$0")
DRY_RUN=${ADLIB_DRY_RUN:-0}
NOTEBOOK_GLOB=(notebooks/[0-9][0-9]_*.ipynb)

usage() {
  cat <<EOF
Usage:
  ./$PROG [--profile smoke|cpu|paper] [--output DIR] [--only NN] [--publish] [--jobs N] [--no-report]
      Execute every numbered notebook headless with papermill, in order, print how long each took, then
      render the executed notebooks into a static HTML site, report/index.html (python -m adlib.report).
      --profile P   smoke (tiny, for tests), cpu (this machine) or paper (a CUDA GPU);
                    default: paper when a CUDA GPU is present, cpu otherwise.
                    Figures/tables go to figures/ and results/ for cpu (the committed ones) and to
                    figures/P/ and results/P/ for any other profile, so no profile overwrites another's.
      --output DIR  where executed notebooks go, as DIR/<profile>/ (default: executed/).
      --only NN     run only notebook NN (available: $(available_numbers)).
      --publish     also copy each executed notebook into notebooks/ (python -m adlib.publish);
                    cpu profile only, since notebooks/ holds the cpu-profile runs.
      --jobs N      run up to N notebooks at once, each in its own process (default 1): 00 and 01 first
                    (01 trains the CIFAR-10 checkpoints later notebooks load), then the others in batches
                    of N, 07 (the benchmark, which reads the others' results) last. Each process gets
                    ADLIB_THREADS/N CPU threads and, with several GPUs, its own CUDA_VISIBLE_DEVICES; its log
                    goes to DIR/<profile>/logs/NN_name.log.
      --no-report   do not build report/ at the end.
  ./$PROG test [PYTEST ARGS...]
      pytest unit tests + every notebook through nbval in the smoke profile; figures/tables go to a scratch
      directory. Every argument after 'test' goes to pytest (e.g. ./$PROG test -k data).
  ./$PROG lab [JUPYTER LAB ARGS...]
      Start JupyterLab in notebooks/. Every argument after 'lab' goes to jupyter lab (e.g. --no-browser).
  ./$PROG --help
      This text.

Set-up: unless a virtual environment or conda env is active, each command creates .venv/ and installs adlib
with its pinned dependencies (again whenever pyproject.toml changes).
Environment: ADLIB_DATA (data directory), ADLIB_THREADS (CPU threads), ADLIB_FIGURES / ADLIB_RESULTS (base
output directories), ADLIB_DRY_RUN=1 (print commands instead of running them, no set-up).
The report: report/index.html links one page per executed notebook (wall time, status) and the leaderboard.
EOF
}

die_usage() {
  echo "$PROG: $1 (see ./$PROG --help)" >&2
  exit 2
}

available_numbers() {
  local nb names=()
  for nb in "${NOTEBOOK_GLOB[@]}"; do
    if [ -e "$nb" ]; then names+=("$(basename "$nb" | cut -c1-2)"); fi
  done
  local IFS=' '
  echo "${names[*]:-none}"
}

# Runs a command, or prints it (with the ADLIB_PROFILE it would see) under ADLIB_DRY_RUN=1.
run() {
  if [ "$DRY_RUN" = 1 ]; then
    printf '[adlib] dry run (ADLIB_PROFILE=%s):' "${ADLIB_PROFILE:-}"
    printf ' %q' "$@"
    echo
  else
    "$@"
  fi
}

# ---- arguments (all checked before any set-up) -------------------------------------------------------------
MODE=run
PROFILE=""
OUTPUT=""
ONLY=""
PUBLISH=0
JOBS=1
REPORT=1
PASS_ARGS=()
if [ $# -gt 0 ] && { [ "$1" = test ] || [ "$1" = lab ]; }; then
  MODE=$1
  shift
  PASS_ARGS=("$@")
  set --
fi
need_value() {  # option, number of remaining args, value
  if [ "$2" -lt 2 ] || [ -z "$3" ] || [[ "$3" == --* ]]; then die_usage "$1 needs a value"; fi
}
while [ $# -gt 0 ]; do
  case "$1" in
    --profile|--output|--only|--jobs)
      need_value "$1" "$#" "${2:-}"
      case "$1" in --profile) PROFILE=$2 ;; --output) OUTPUT=$2 ;; --only) ONLY=$2 ;; --jobs) JOBS=$2 ;; esac
      shift ;;
    --profile=*|--output=*|--only=*|--jobs=*)
      opt=${1%%=*}; val=${1#*=}
      [ -n "$val" ] || die_usage "$opt needs a value"
      case "$opt" in --profile) PROFILE=$val ;; --output) OUTPUT=$val ;; --only) ONLY=$val ;; --jobs) JOBS=$val ;; esac ;;
    --publish) PUBLISH=1 ;;
    --no-report) REPORT=0 ;;
    -h|--help) usage; exit 0 ;;
    test|lab) die_usage "'$1' must be the first argument" ;;
    *) die_usage "unknown argument: $1" ;;
  esac
  shift
done

if [ -n "$PROFILE" ]; then
  case "$PROFILE" in
    smoke|cpu|paper) ;;
    *) die_usage "unknown profile '$PROFILE': choose smoke, cpu or paper" ;;
  esac
fi
if [ "$PUBLISH" = 1 ] && [ -n "$PROFILE" ] && [ "$PROFILE" != cpu ]; then
  die_usage "--publish is for the cpu profile only (notebooks/ holds the cpu-profile runs), not '$PROFILE'"
fi
if ! [[ "$JOBS" =~ ^[1-9][0-9]*$ ]]; then
  die_usage "--jobs needs a whole number of parallel notebooks, 1 or more, not '$JOBS'"
fi
if [ "$JOBS" -gt 1 ] && [ -n "${ADLIB_THREADS:-}" ] && ! [[ "$ADLIB_THREADS" =~ ^[1-9][0-9]*$ ]]; then
  die_usage "ADLIB_THREADS must be a whole number of CPU threads, 1 or more, not '$ADLIB_THREADS'"
fi
NOTEBOOKS=()
for nb in "${NOTEBOOK_GLOB[@]}"; do
  [ -e "$nb" ] || continue
  if [ -z "$ONLY" ] || [[ "$(basename "$nb")" == "${ONLY}_"* ]]; then NOTEBOOKS+=("$nb"); fi
done
if [ -n "$ONLY" ] && { ! [[ "$ONLY" =~ ^[0-9][0-9]$ ]] || [ ${#NOTEBOOKS[@]} -eq 0 ]; }; then
  die_usage "no notebook '$ONLY' for --only; available: $(available_numbers)"
fi
if [ ${#NOTEBOOKS[@]} -eq 0 ]; then
  echo "$PROG: no notebooks found in $ROOT/notebooks" >&2
  exit 1
fi
# Executed notebooks go to DIR/<profile>; a relative --output is relative to where the command was started.
if [ -z "$OUTPUT" ]; then
  OUTPUT="$ROOT/executed"
elif [[ "$OUTPUT" != /* ]]; then
  OUTPUT="$CALLER_PWD/$OUTPUT"
fi
while [[ "$OUTPUT" == ?*/ ]]; do OUTPUT=${OUTPUT%/}; done

# ---- environment ------------------------------------------------------------------------------------------
setup_environment() {
  if [ "$DRY_RUN" = 1 ]; then
    echo "[adlib] dry run: environment set-up skipped"
    return
  fi
  if [ -z "${VIRTUAL_ENV:-}" ] && [ -z "${CONDA_PREFIX:-}" ]; then
    if [ ! -x .venv/bin/python ]; then
      echo "[adlib] creating virtual environment in .venv"
      python3 -m venv .venv
    fi
    # shellcheck disable=SC1091
    source .venv/bin/activate
  fi
  local stamp want
  stamp="$(python -c 'import sys; print(sys.prefix)')/.adlib-installed"
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! python -c 'import adlib' 2>/dev/null; then
    echo "[adlib] installing adlib and its pinned dependencies (first run downloads torch; this takes a while)"
    python -m pip install --quiet --upgrade pip
    python -m pip install --quiet -e ".[cluster]"
    echo "$want" > "$stamp"
  fi
  python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (adlib)" >/dev/null 2>&1 || true
}

setup_environment
export PYTHONHASHSEED=0
# No MPLBACKEND here: kernels use ipykernel's inline backend, so executed notebooks keep their figures.
# ADLIB_THREADS is left to the user (the smoke profile defaults to 1 thread, the others to every core).

if [ "$MODE" = lab ]; then
  echo "[adlib] starting JupyterLab in $ROOT/notebooks (profile: ${ADLIB_PROFILE:-auto: paper with a CUDA GPU, cpu without})"
  run python -m jupyter lab --ServerApp.root_dir="$ROOT/notebooks" ${PASS_ARGS[@]+"${PASS_ARGS[@]}"}
  exit 0
fi

if [ "$MODE" = test ]; then
  # Smoke-profile notebooks write figures/results to a scratch directory, never over the committed ones.
  SCRATCH=$(mktemp -d)
  trap 'rm -rf "$SCRATCH"' EXIT
  export ADLIB_PROFILE=smoke ADLIB_FIGURES="$SCRATCH/figures" ADLIB_RESULTS="$SCRATCH/results"
  echo "[adlib] data directory: ${ADLIB_DATA:-<per-user cache>}"
  start=$(date +%s)
  rc=0
  run python -m pytest tests notebooks --nbval-lax --nbval-cell-timeout=900 -q ${PASS_ARGS[@]+"${PASS_ARGS[@]}"} || rc=$?
  echo "[adlib] test suite took $(( $(date +%s) - start )) s (exit code $rc)"
  exit "$rc"
fi

if [ -z "$PROFILE" ]; then
  PROFILE=$(python -c 'import torch; print("paper" if torch.cuda.is_available() else "cpu")')
  if [ "$PUBLISH" = 1 ] && [ "$PROFILE" != cpu ]; then
    die_usage "--publish is for the cpu profile only; this machine defaults to '$PROFILE', add --profile cpu"
  fi
fi
export ADLIB_PROFILE=$PROFILE
# Where the library writes for this profile (adlib/paths.py): the base for cpu, base/<profile>/ otherwise.
FIGURES=${ADLIB_FIGURES:-$ROOT/figures}
RESULTS=${ADLIB_RESULTS:-$ROOT/results}
if [ "$PROFILE" != cpu ]; then FIGURES="$FIGURES/$PROFILE"; RESULTS="$RESULTS/$PROFILE"; fi
OUTDIR="$OUTPUT/$PROFILE"
[ "$DRY_RUN" = 1 ] || mkdir -p "$OUTDIR"
echo "[adlib] profile: $PROFILE; executed notebooks -> $OUTDIR; figures -> $FIGURES; tables -> $RESULTS"

# ---- order: 00 and 01 first (01 trains the CIFAR-10 checkpoints that later notebooks load), 07 last (the
# benchmark reads the result rows of the others), every other notebook in between; each stage runs in batches of
# $JOBS notebooks at once (one batch = one notebook with the default --jobs 1). A failed batch stops the run.
FIRST_STAGE=" 00 01 "
LAST_STAGE=" 07 "
BATCHES=()  # each entry: the space-separated notebooks of one batch (notebook paths have no spaces)
add_stage() {  # notebooks of one stage -> batches of $JOBS
  local batch="" n=0 nb
  for nb in "$@"; do
    batch="${batch:+$batch }$nb"
    n=$(( n + 1 ))
    if [ "$n" -eq "$JOBS" ]; then BATCHES+=("$batch"); batch=""; n=0; fi
  done
  if [ -n "$batch" ]; then BATCHES+=("$batch"); fi
}
stage_first=() stage_middle=() stage_last=()
for nb in "${NOTEBOOKS[@]}"; do
  num=$(basename "$nb" | cut -c1-2)
  if [[ "$FIRST_STAGE" == *" $num "* ]]; then stage_first+=("$nb")
  elif [[ "$LAST_STAGE" == *" $num "* ]]; then stage_last+=("$nb")
  else stage_middle+=("$nb"); fi
done
add_stage ${stage_first[@]+"${stage_first[@]}"}
add_stage ${stage_middle[@]+"${stage_middle[@]}"}
add_stage ${stage_last[@]+"${stage_last[@]}"}

# In parallel, each notebook gets ADLIB_THREADS/N torch threads (ADLIB_THREADS: every core when unset; the smoke
# profile keeps its own default of one thread) and, with several GPUs, one GPU of its own.
PAR_ENV=()
GPUS=()
if [ "$JOBS" -gt 1 ]; then
  if [ -n "${ADLIB_THREADS:-}" ] || [ "$PROFILE" != smoke ]; then
    total_threads=${ADLIB_THREADS:-$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)}
    per_job=$(( total_threads / JOBS ))
    [ "$per_job" -ge 1 ] || per_job=1
    PAR_ENV+=("ADLIB_THREADS=$per_job")
    # numpy/scikit-learn threads too, unless the user chose them
    [ -n "${OMP_NUM_THREADS:-}" ] || PAR_ENV+=("OMP_NUM_THREADS=$per_job")
  fi
  if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
    IFS=',' read -r -a GPUS <<< "$CUDA_VISIBLE_DEVICES"
  elif command -v nvidia-smi >/dev/null 2>&1; then
    gpu_count=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
    for (( g = 0; g < ${gpu_count:-0}; g++ )); do GPUS+=("$g"); done
  fi
  if [ ${#GPUS[@]} -gt 1 ]; then
    echo "[adlib] $JOBS notebooks at a time over ${#GPUS[@]} GPUs (${GPUS[*]}), ${PAR_ENV[*]:-default threads}"
  else
    echo "[adlib] $JOBS notebooks at a time, ${PAR_ENV[*]:-default threads}"
  fi
fi
LOGDIR="$OUTDIR/logs"

# papermill_command NOTEBOOK SLOT: sets CMD to the papermill command for one notebook (SLOT: its place in the batch)
papermill_command() {
  local nb=$1 slot=$2 envs=()
  envs=(${PAR_ENV[@]+"${PAR_ENV[@]}"})
  if [ ${#GPUS[@]} -gt 1 ]; then envs+=("CUDA_VISIBLE_DEVICES=${GPUS[$(( slot % ${#GPUS[@]} ))]}"); fi
  CMD=()
  if [ ${#envs[@]} -gt 0 ]; then CMD=(env "${envs[@]}"); fi
  CMD+=(python -m papermill "$nb" "$OUTDIR/$(basename "$nb")" -p profile "$PROFILE" -k python3 --cwd notebooks)
  if [ "$JOBS" -gt 1 ]; then CMD+=(--log-output --no-progress-bar); else CMD+=(--progress-bar); fi
}

# Parallel notebooks run in their own process groups (set -m), so that an interrupt stops them all.
RUNNING=()
stop_running() {
  local pid
  for pid in ${RUNNING[@]+"${RUNNING[@]}"}; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  [ -z "${STATUS_DIR:-}" ] || rm -rf "$STATUS_DIR"
  echo "[adlib] interrupted; stopped the running notebooks" >&2
  exit 130
}

summary=()
failed=""
RUN_START=$(date +%s)
batch_no=0
for batch in "${BATCHES[@]}"; do
  batch_no=$(( batch_no + 1 ))
  read -r -a members <<< "$batch"
  if [ "$JOBS" -eq 1 ]; then
    nb=${members[0]}
    name=$(basename "$nb")
    echo "[adlib] running $name"
    papermill_command "$nb" 0
    t0=$(date +%s)
    if ! run "${CMD[@]}"; then
      summary+=("$(printf '%-45s %6d s  FAILED' "$name" $(( $(date +%s) - t0 )))")
      failed=$name
      break
    fi
    summary+=("$(printf '%-45s %6d s  ok' "$name" $(( $(date +%s) - t0 )))")
    if [ "$PUBLISH" = 1 ]; then
      run python -m adlib.publish "$OUTDIR/$name" --to notebooks  # without papermill's injected-parameters cell
    fi
    continue
  fi

  echo "[adlib] batch $batch_no of ${#BATCHES[@]}: ${members[*]##*/}"
  STATUS_DIR=""
  if [ "$DRY_RUN" != 1 ]; then
    mkdir -p "$LOGDIR"
    STATUS_DIR=$(mktemp -d)
    trap stop_running INT TERM
    set -m
  fi
  RUNNING=()
  for i in "${!members[@]}"; do
    nb=${members[$i]}
    name=$(basename "$nb")
    log="$LOGDIR/${name%.ipynb}.log"
    papermill_command "$nb" "$i"
    echo "[adlib] running $name (log: $log)"
    if [ "$DRY_RUN" = 1 ]; then
      run "${CMD[@]}"
    else
      (
        t0=$(date +%s)
        rc=0
        "${CMD[@]}" < /dev/null > "$log" 2>&1 || rc=$?
        echo "$rc $(( $(date +%s) - t0 ))" > "$STATUS_DIR/$name"
      ) &
      RUNNING+=($!)
    fi
  done
  for pid in ${RUNNING[@]+"${RUNNING[@]}"}; do wait "$pid" || true; done
  if [ "$DRY_RUN" != 1 ]; then
    set +m
    trap - INT TERM
  fi
  RUNNING=()
  for nb in "${members[@]}"; do
    name=$(basename "$nb")
    rc=0 secs=0
    if [ "$DRY_RUN" != 1 ]; then
      if [ -f "$STATUS_DIR/$name" ]; then read -r rc secs < "$STATUS_DIR/$name"; else rc=1; fi
    fi
    if [ "$rc" = 0 ]; then
      summary+=("$(printf '%-45s %6d s  ok' "$name" "$secs")")
      if [ "$PUBLISH" = 1 ]; then run python -m adlib.publish "$OUTDIR/$name" --to notebooks; fi
    else
      summary+=("$(printf '%-45s %6d s  FAILED (exit %s), log: %s' "$name" "$secs" "$rc" "$LOGDIR/${name%.ipynb}.log")")
      failed="${failed:+$failed }$name"
    fi
  done
  [ -z "$STATUS_DIR" ] || rm -rf "$STATUS_DIR"
  if [ -n "$failed" ]; then break; fi
done
for (( b = batch_no; b < ${#BATCHES[@]}; b++ )); do  # what a failure left out
  for nb in ${BATCHES[$b]}; do summary+=("$(printf '%-45s %8s  not run' "$(basename "$nb")" "-")"); done
done
RUN_SECONDS=$(( $(date +%s) - RUN_START ))
if [ "$PUBLISH" = 1 ] && [ -z "$failed" ]; then
  run python -m adlib.report --readme  # README's leaderboard rows from results/07_leaderboard.csv (cpu profile)
fi

REPORT_RC=0
if [ "$REPORT" = 1 ]; then
  # every executed notebook of this profile (also from earlier runs), failed ones included: the report shows why
  echo "[adlib] building the report"
  run python -m adlib.report --executed "$OUTDIR" --out "$ROOT/report" --expected "$ROOT/notebooks" \
    --leaderboard "$RESULTS/07_leaderboard.csv" || REPORT_RC=$?
fi

echo
if [ -n "$failed" ]; then
  echo "[adlib] FAILED in $failed (profile $PROFILE); the executed notebook shows the error: $OUTDIR/${failed%% *}"
else
  echo "[adlib] done (profile $PROFILE)"
fi
printf '  %s\n' "${summary[@]}"
echo "  total wall time:    $RUN_SECONDS s with --jobs $JOBS"
echo "  executed notebooks: $OUTDIR"
echo "  figures:            $FIGURES"
echo "  result tables:      $RESULTS"
if [ "$REPORT" = 1 ]; then
  if [ "$REPORT_RC" = 0 ]; then echo "  report:             $ROOT/report/index.html"
  else echo "  report:             FAILED to build (exit $REPORT_RC)"; fi
fi
if [ -n "$failed" ] || [ "$REPORT_RC" != 0 ]; then exit 1; fi
