#!/usr/bin/env bash
# adlib: the commands of this project (run `./run_all.sh --help` for the full text).
#   ./run_all.sh [--profile smoke|cpu|paper] [--output DIR] [--only NN] [--publish] [--jobs N] [--no-report]
#                                          execute the notebooks headless, then render them into report/
#   ./run_all.sh verify [--only NN] [--profile P] [--tolerance X] [--output DIR] [--jobs N]
#                                          re-execute into a scratch folder and compare every committed number
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
      --only NN     run only notebook NN, or a comma-separated list (--only 00,03,07) (available: $(available_numbers)).
      --publish     also copy each executed notebook into notebooks/ (python -m adlib.publish);
                    cpu profile only, since notebooks/ holds the cpu-profile runs.
      --jobs N      run up to N notebooks at once, each in its own process of ONE CPU thread (default: one
                    per CPU core, at most one per 3 GiB of memory; paper profile: one per GPU): 00 and 01
                    first (01 trains the CIFAR-10 checkpoints later notebooks load), then the others in
                    batches of N, 07 (the benchmark, which reads the others' results) last. With several
                    GPUs each process gets its own CUDA_VISIBLE_DEVICES; a parallel notebook's log goes to
                    DIR/<profile>/logs/NN_name.log. The numbers do not depend on N.
      --no-report   do not build report/ at the end.
  ./$PROG verify [--only NN] [--profile P] [--tolerance X] [--output DIR] [--jobs N]
      Re-execute the notebooks (as above) into a scratch folder, DIR/<profile>/ (default DIR:
      executed/verify/), with figures and tables under DIR/figures and DIR/results (never over the committed
      ones), then compare every number of every committed results table of those notebooks (results/ for cpu,
      results/P/ otherwise) with the fresh one, row by row, matched on key columns (python -m adlib.verify).
      Prints a reproduction report, writes it to DIR/<profile>/reproduction.{csv,html} (+ _cells.csv), and
      exits 1 when any value differs by more than X (default 0: exact) or a row or table is missing.
  ./$PROG test [PYTEST ARGS...]
      pytest unit tests + every notebook through nbval in the smoke profile; figures/tables go to a scratch
      directory. Every argument after 'test' goes to pytest (e.g. ./$PROG test -k data).
  ./$PROG lab [JUPYTER LAB ARGS...]
      Start JupyterLab in notebooks/. Every argument after 'lab' goes to jupyter lab (e.g. --no-browser).
  ./$PROG --help
      This text.

Set-up: unless a virtual environment or conda env is active, each command creates .venv/ and installs adlib
with its pinned dependencies (again whenever pyproject.toml changes).
Environment: ADLIB_DATA (data directory), ADLIB_FIGURES / ADLIB_RESULTS (base output directories),
ADLIB_THREADS (torch threads per notebook process; default 1, which the committed numbers used: any other
count gives slightly different numbers), ADLIB_MAX_STEPS=N (cap every step/epoch count at N: a check that
the code runs, e.g. the paper profile on a CPU; its figures, tables, cache and checkpoints go to
DIR/<profile>/max_steps_N/ unless ADLIB_FIGURES / ADLIB_RESULTS / ADLIB_CACHE / ADLIB_CHECKPOINTS say otherwise),
ADLIB_DRY_RUN=1 (print commands instead of running them, no set-up).
The paper profile needs a CUDA GPU: without one it stops before anything runs, unless ADLIB_MAX_STEPS is set.
The report: report/index.html links one page per executed notebook (wall time, status) and the leaderboard.
The training-budget study (notebook 08 reads its committed rows, results/budget/; it trains only the cheap rungs)
is hours of CPU and runs outside this script, resumable: python -m adlib.budget --profile cpu --dry-run lists the
rungs still to run with estimated hours; drop --dry-run (add e.g. --max-hours 8) to run them.
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

# The commit of the code a notebook starting now imports (adlib.provenance.git_commit: "+dirty" when adlib/ or a
# notebook source differs from HEAD); publish records it, so a commit made during a long run cannot be named instead.
code_commit() {
  if [ "$DRY_RUN" = 1 ]; then echo "dry-run"; return; fi
  python -c 'from adlib.provenance import git_commit; print(git_commit())' 2>/dev/null || echo unknown
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
JOBS=""
REPORT=1
TOLERANCE=""
PASS_ARGS=()
if [ $# -gt 0 ] && { [ "$1" = test ] || [ "$1" = lab ]; }; then
  MODE=$1
  shift
  PASS_ARGS=("$@")
  set --
elif [ $# -gt 0 ] && [ "$1" = verify ]; then
  MODE=verify
  shift
fi
need_value() {  # option, number of remaining args, value
  if [ "$2" -lt 2 ] || [ -z "$3" ] || [[ "$3" == --* ]]; then die_usage "$1 needs a value"; fi
}
while [ $# -gt 0 ]; do
  case "$1" in
    --profile|--output|--only|--jobs|--tolerance)
      need_value "$1" "$#" "${2:-}"
      case "$1" in
        --profile) PROFILE=$2 ;; --output) OUTPUT=$2 ;; --only) ONLY=$2 ;; --jobs) JOBS=$2 ;; --tolerance) TOLERANCE=$2 ;;
      esac
      shift ;;
    --profile=*|--output=*|--only=*|--jobs=*|--tolerance=*)
      opt=${1%%=*}; val=${1#*=}
      [ -n "$val" ] || die_usage "$opt needs a value"
      case "$opt" in
        --profile) PROFILE=$val ;; --output) OUTPUT=$val ;; --only) ONLY=$val ;; --jobs) JOBS=$val ;; --tolerance) TOLERANCE=$val ;;
      esac ;;
    --publish) PUBLISH=1 ;;
    --no-report) REPORT=0 ;;
    -h|--help) usage; exit 0 ;;
    test|lab|verify) die_usage "'$1' must be the first argument" ;;
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
if [ -n "$JOBS" ] && ! [[ "$JOBS" =~ ^[1-9][0-9]*$ ]]; then
  die_usage "--jobs needs a whole number of parallel notebooks, 1 or more, not '$JOBS'"
fi
if [ -n "${ADLIB_THREADS:-}" ] && ! [[ "$ADLIB_THREADS" =~ ^[1-9][0-9]*$ ]]; then
  die_usage "ADLIB_THREADS must be a whole number of CPU threads, 1 or more, not '$ADLIB_THREADS'"
fi
if [ -n "${ADLIB_MAX_STEPS:-}" ] && ! [[ "$ADLIB_MAX_STEPS" =~ ^[1-9][0-9]*$ ]]; then
  die_usage "ADLIB_MAX_STEPS must be a whole number of steps, 1 or more, not '$ADLIB_MAX_STEPS'"
fi
if [ "$MODE" = verify ]; then
  [ "$PUBLISH" = 0 ] || die_usage "--publish does not go with verify (verify never writes into notebooks/)"
  [ -z "${ADLIB_MAX_STEPS:-}" ] || die_usage "verify compares full runs with the committed numbers; unset ADLIB_MAX_STEPS"
  TOLERANCE=${TOLERANCE:-0}
  if ! [[ "$TOLERANCE" =~ ^([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][-+]?[0-9]+)?$ ]]; then
    die_usage "--tolerance needs an absolute difference, 0 or more (e.g. 0 or 1e-6), not '$TOLERANCE'"
  fi
elif [ -n "$TOLERANCE" ]; then
  die_usage "--tolerance is an option of 'verify' (./$PROG verify --tolerance X)"
fi
if [ -n "${ADLIB_MAX_STEPS:-}" ] && [ "$PUBLISH" = 1 ]; then
  die_usage "--publish with ADLIB_MAX_STEPS would put a capped check run into notebooks/; unset one of them"
fi
NOTEBOOKS=()
for nb in "${NOTEBOOK_GLOB[@]}"; do
  [ -e "$nb" ] || continue
  if [ -z "$ONLY" ] || [[ ",$ONLY," == *",$(basename "$nb" | cut -c1-2),"* ]]; then NOTEBOOKS+=("$nb"); fi
done
# --only NN or a comma-separated list (--only 00,03,07): every number must name a notebook
if [ -n "$ONLY" ]; then
  [[ "$ONLY" =~ ^[0-9][0-9](,[0-9][0-9])*$ ]] || die_usage "no notebook '$ONLY' for --only; available: $(available_numbers)"
  IFS=',' read -r -a only_numbers <<< "$ONLY"
  for num in "${only_numbers[@]}"; do
    [ -n "$(compgen -G "notebooks/${num}_*.ipynb")" ] || die_usage "no notebook '$num' for --only; available: $(available_numbers)"
  done
fi
if [ ${#NOTEBOOKS[@]} -eq 0 ]; then
  echo "$PROG: no notebooks found in $ROOT/notebooks" >&2
  exit 1
fi
# Executed notebooks go to DIR/<profile>; a relative --output is relative to where the command was started.
if [ -z "$OUTPUT" ]; then
  if [ "$MODE" = verify ]; then OUTPUT="$ROOT/executed/verify"; else OUTPUT="$ROOT/executed"; fi
elif [[ "$OUTPUT" != /* ]]; then
  OUTPUT="$CALLER_PWD/$OUTPUT"
fi
while [[ "$OUTPUT" == ?*/ ]]; do OUTPUT=${OUTPUT%/}; done
# verify replaces DIR/results and DIR/figures: only in a folder it made itself (or a new or empty one)
VERIFY_MARK=".adlib-verify"
if [ "$MODE" = verify ] && [ -d "$OUTPUT" ] && [ ! -e "$OUTPUT/$VERIFY_MARK" ] && [ -n "$(ls -A "$OUTPUT")" ]; then
  die_usage "--output $OUTPUT is a folder verify did not make (no $VERIFY_MARK in it); give a new or empty folder"
fi

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
# One CPU thread per process, in every profile (adlib/runtime.py): torch's numbers depend on the thread count,
# so they are the same on every machine only at a fixed count; speed comes from processes (--jobs, joblib).
# The OpenMP/BLAS libraries of numpy and scikit-learn get the same count, unless the user chose theirs.
THREADS=${ADLIB_THREADS:-1}
for var in OMP_NUM_THREADS MKL_NUM_THREADS OPENBLAS_NUM_THREADS; do export "$var=${!var:-$THREADS}"; done
# Headless runs (papermill, nbval): no progress bars in the saved outputs (adlib/progress.py); the log shows progress.
export ADLIB_HEADLESS=${ADLIB_HEADLESS:-1}
if [ "$THREADS" != 1 ] && [ "$MODE" != test ]; then
  echo "[adlib] warning: ADLIB_THREADS=$THREADS: each notebook computes with $THREADS threads instead of 1;" \
       "the numbers will differ slightly from the committed ones (every result row records 'threads')" >&2
fi

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
  # Every figure the smoke notebooks save must have a title, axis labels and a legend / colour bar where it needs
  # one (adlib.plots.figure_problems): a figure that lacks them stops its notebook, so the test fails.
  export ADLIB_FIGURE_RULES=${ADLIB_FIGURE_RULES:-strict}
  echo "[adlib] data directory: ${ADLIB_DATA:-<per-user cache>}"
  start=$(date +%s)
  rc=0
  # One pytest worker per core (pytest-xdist), each test file (and each notebook's cells) kept in one worker, in
  # order: the tests compute with one thread each, so the suite's wall time falls with the cores.
  # ADLIB_TEST_WORKERS overrides (0: no workers, everything in this process).
  workers=${ADLIB_TEST_WORKERS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 1)}  # the cores, not OMP_NUM_THREADS
  if [ "$workers" -gt 1 ] 2>/dev/null; then dist=(-n "$workers" --dist loadfile); else dist=(); fi
  run python -m pytest tests notebooks ${dist[@]+"${dist[@]}"} --nbval-lax --nbval-cell-timeout=900 -q \
    ${PASS_ARGS[@]+"${PASS_ARGS[@]}"} || rc=$?
  echo "[adlib] test suite took $(( $(date +%s) - start )) s (exit code $rc)"
  exit "$rc"
fi

CUDA=$(python -c 'import torch; print(1 if torch.cuda.is_available() else 0)')
if [ -z "$PROFILE" ]; then
  if [ "$CUDA" = 1 ]; then PROFILE=paper; else PROFILE=cpu; fi
  if [ "$PUBLISH" = 1 ] && [ "$PROFILE" != cpu ]; then
    die_usage "--publish is for the cpu profile only; this machine defaults to '$PROFILE', add --profile cpu"
  fi
fi
if [ "$PROFILE" = paper ] && [ "$CUDA" != 1 ] && [ -z "${ADLIB_MAX_STEPS:-}" ]; then
  echo "$PROG: the paper profile needs a CUDA GPU and torch sees none; use --profile cpu, or check that it runs" \
       "with capped step counts: ADLIB_MAX_STEPS=2 ./$PROG --profile paper" >&2
  exit 2
fi
export ADLIB_PROFILE=$PROFILE
# Where the library writes for this profile (adlib/paths.py): the base for cpu, base/<profile>/ otherwise.
OUTDIR="$OUTPUT/$PROFILE"
COMMITTED_RESULTS=${ADLIB_RESULTS:-$ROOT/results}  # what verify compares with
if [ "$MODE" = verify ]; then
  # fresh outputs under the scratch folder, never over the committed ones
  export ADLIB_RESULTS="$OUTPUT/results" ADLIB_FIGURES="$OUTPUT/figures"
  REPORT=0
elif [ -n "${ADLIB_MAX_STEPS:-}" ]; then
  # a capped check run: its numbers are not results, so by default they stay out of the committed folders, and
  # its networks (e.g. notebook 01's CIFAR-10 backbones after 2 steps) out of the per-user cache others load from
  export ADLIB_RESULTS=${ADLIB_RESULTS:-$OUTDIR/max_steps_$ADLIB_MAX_STEPS/results}
  export ADLIB_FIGURES=${ADLIB_FIGURES:-$OUTDIR/max_steps_$ADLIB_MAX_STEPS/figures}
  export ADLIB_CACHE=${ADLIB_CACHE:-$OUTDIR/max_steps_$ADLIB_MAX_STEPS/cache}
  export ADLIB_CHECKPOINTS=${ADLIB_CHECKPOINTS:-$ADLIB_CACHE/checkpoints}
  echo "[adlib] ADLIB_MAX_STEPS=$ADLIB_MAX_STEPS: every step/epoch count capped; a check that the code runs, not results"
fi
FIGURES=${ADLIB_FIGURES:-$ROOT/figures}
RESULTS=${ADLIB_RESULTS:-$ROOT/results}
if [ "$PROFILE" != cpu ]; then
  FIGURES="$FIGURES/$PROFILE"; RESULTS="$RESULTS/$PROFILE"; COMMITTED_RESULTS="$COMMITTED_RESULTS/$PROFILE"
fi
# --jobs: by default one notebook per CPU core (one thread each), at most one per 3 GiB of memory; the paper
# profile one per GPU. The README's "Reproducibility" section has the measurements behind this default.
if [ -z "$JOBS" ]; then
  if [ "$PROFILE" = paper ]; then
    JOBS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
  else
    # (nproc would count OMP_NUM_THREADS, set to one thread above, instead of the cores)
    JOBS=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
    mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null || true)
    if [ -n "$mem_kib" ] && [ $(( mem_kib / 3145728 )) -lt "$JOBS" ]; then JOBS=$(( mem_kib / 3145728 )); fi
  fi
  [[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || JOBS=1
fi

if [ "$MODE" = verify ]; then
  # only the tables of the notebooks to re-run are fresh; every other committed table is copied in, since a later
  # notebook may read it (07 reuses the rows of 00-06)
  VERIFY_NUMBERS=()
  for nb in "${NOTEBOOKS[@]}"; do VERIFY_NUMBERS+=("$(basename "$nb" | cut -c1-2)"); done
  committed_tables=("$COMMITTED_RESULTS"/[0-9][0-9]_*.csv)
  if [ ! -e "${committed_tables[0]}" ]; then
    echo "$PROG: nothing to verify: no committed result tables of the $PROFILE profile in $COMMITTED_RESULTS" >&2
    exit 1
  fi
  if [ "$DRY_RUN" = 1 ]; then
    echo "[adlib] dry run: would reset $RESULTS and $FIGURES, copy the committed tables of other notebooks"
  else
    mkdir -p "$OUTPUT"
    touch "$OUTPUT/$VERIFY_MARK"
    rm -rf "$RESULTS" "$FIGURES" "$OUTDIR"
    mkdir -p "$RESULTS" "$FIGURES"
    for table in "${committed_tables[@]}"; do
      num=$(basename "$table" | cut -c1-2)
      [[ " ${VERIFY_NUMBERS[*]} " == *" $num "* ]] || cp "$table" "$RESULTS/"
    done
  fi
fi
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

# In parallel, each notebook is a process of $THREADS thread(s) (the same as sequentially: the numbers do not
# depend on --jobs) and, with several GPUs, gets one GPU of its own.
GPUS=()
if [ "$JOBS" -gt 1 ]; then
  if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
    IFS=',' read -r -a GPUS <<< "$CUDA_VISIBLE_DEVICES"
  elif command -v nvidia-smi >/dev/null 2>&1; then
    gpu_count=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
    for (( g = 0; g < ${gpu_count:-0}; g++ )); do GPUS+=("$g"); done
  fi
  if [ ${#GPUS[@]} -gt 1 ]; then
    echo "[adlib] up to $JOBS notebooks at a time over ${#GPUS[@]} GPUs (${GPUS[*]}), $THREADS CPU thread(s) each"
  else
    echo "[adlib] up to $JOBS notebooks at a time, $THREADS CPU thread(s) each"
  fi
fi
LOGDIR="$OUTDIR/logs"

# papermill_command NOTEBOOK SLOT PARALLEL: sets CMD to the papermill command for one notebook (SLOT: its place
# in the batch; PARALLEL=1 when others run beside it: its output goes to a log, without a progress bar)
papermill_command() {
  local nb=$1 slot=$2 parallel=$3
  CMD=()
  if [ "$parallel" = 1 ] && [ ${#GPUS[@]} -gt 1 ]; then
    CMD=(env "CUDA_VISIBLE_DEVICES=${GPUS[$(( slot % ${#GPUS[@]} ))]}")
  fi
  CMD+=(python -m papermill "$nb" "$OUTDIR/$(basename "$nb")" -p profile "$PROFILE" -k python3 --cwd notebooks)
  if [ "$parallel" = 1 ]; then CMD+=(--log-output --no-progress-bar); else CMD+=(--progress-bar); fi
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
  if [ ${#members[@]} -eq 1 ]; then  # alone in its batch: in the foreground, with a progress bar
    nb=${members[0]}
    name=$(basename "$nb")
    echo "[adlib] running $name"
    papermill_command "$nb" 0 0
    run_commit=$(code_commit)  # the code this notebook imports: publish records it, not HEAD at publish time
    t0=$(date +%s)
    if ! run "${CMD[@]}"; then
      summary+=("$(printf '%-45s %6d s  FAILED' "$name" $(( $(date +%s) - t0 )))")
      failed=$name
      break
    fi
    summary+=("$(printf '%-45s %6d s  ok' "$name" $(( $(date +%s) - t0 )))")
    if [ "$PUBLISH" = 1 ]; then
      run python -m adlib.publish "$OUTDIR/$name" --to notebooks --commit "$run_commit"  # without papermill's injected-parameters cell
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
  run_commit=$(code_commit)  # every notebook of the batch starts now, on this code
  for i in "${!members[@]}"; do
    nb=${members[$i]}
    name=$(basename "$nb")
    log="$LOGDIR/${name%.ipynb}.log"
    papermill_command "$nb" "$i" 1
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
      if [ "$PUBLISH" = 1 ]; then run python -m adlib.publish "$OUTDIR/$name" --to notebooks --commit "$run_commit"; fi
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

VERIFY_RC=0
if [ "$MODE" = verify ]; then
  # the tables of the re-executed notebooks (a failed or skipped notebook's tables show as missing)
  echo
  run python -m adlib.verify --committed "$COMMITTED_RESULTS" --fresh "$RESULTS" --only "${VERIFY_NUMBERS[@]}" \
    --tolerance "$TOLERANCE" --report "$OUTDIR/reproduction" || VERIFY_RC=$?
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
if [ "$MODE" = verify ]; then
  echo "  committed tables:   $COMMITTED_RESULTS"
  echo "  reproduction:       $OUTDIR/reproduction.html (and .csv, _cells.csv): tolerance $TOLERANCE," \
       "$([ "$VERIFY_RC" = 0 ] && echo "every compared number reproduced" || echo "NOT reproduced (exit $VERIFY_RC)")"
fi
if [ -n "$failed" ] || [ "$REPORT_RC" != 0 ] || [ "$VERIFY_RC" != 0 ]; then exit 1; fi
