#!/usr/bin/env bash
# adlib: the commands of this project (run `./run_all.sh --help` for the full text).
#   ./run_all.sh [--profile smoke|cpu|paper] [--output DIR] [--only NN] [--publish]   execute the notebooks headless
#   ./run_all.sh test [PYTEST ARGS...]     unit tests + every notebook (smoke profile) via nbval
#   ./run_all.sh lab [JUPYTER LAB ARGS...] start JupyterLab in notebooks/
# Each does its own set-up: a virtual environment in .venv (unless a venv or conda env is active) with the
# pinned package, reinstalled when pyproject.toml changes. Arguments are checked before any set-up.
#
# Test hook: ADLIB_DRY_RUN=1 skips the environment set-up and prints the commands (papermill, pytest,
# jupyter lab) instead of running them, creating no directories; tests/test_run_all.py uses it.
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
  ./$PROG [--profile smoke|cpu|paper] [--output DIR] [--only NN] [--publish]
      Execute every numbered notebook headless with papermill, in order, and print how long each took.
      --profile P   smoke (tiny, for tests), cpu (this machine) or paper (a CUDA GPU);
                    default: paper when a CUDA GPU is present, cpu otherwise.
                    Figures/tables go to figures/ and results/ for cpu (the committed ones) and to
                    figures/P/ and results/P/ for any other profile, so no profile overwrites another's.
      --output DIR  where executed notebooks go, as DIR/<profile>/ (default: executed/).
      --only NN     run only notebook NN (available: $(available_numbers)).
      --publish     also copy each executed notebook into notebooks/ (python -m adlib.publish);
                    cpu profile only, since notebooks/ holds the cpu-profile runs.
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
    --profile|--output|--only)
      need_value "$1" "$#" "${2:-}"
      case "$1" in --profile) PROFILE=$2 ;; --output) OUTPUT=$2 ;; --only) ONLY=$2 ;; esac
      shift ;;
    --profile=*|--output=*|--only=*)
      opt=${1%%=*}; val=${1#*=}
      [ -n "$val" ] || die_usage "$opt needs a value"
      case "$opt" in --profile) PROFILE=$val ;; --output) OUTPUT=$val ;; --only) ONLY=$val ;; esac ;;
    --publish) PUBLISH=1 ;;
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
    python -m pip install --quiet -e .
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

summary=()
failed=""
for nb in "${NOTEBOOKS[@]}"; do
  name=$(basename "$nb")
  echo "[adlib] running $name"
  t0=$(date +%s)
  if ! run python -m papermill "$nb" "$OUTDIR/$name" -p profile "$PROFILE" -k python3 --cwd notebooks --progress-bar; then
    summary+=("$(printf '%-45s %6d s  FAILED' "$name" $(( $(date +%s) - t0 )))")
    failed=$name
    break
  fi
  summary+=("$(printf '%-45s %6d s' "$name" $(( $(date +%s) - t0 )))")
  if [ "$PUBLISH" = 1 ]; then
    run python -m adlib.publish "$OUTDIR/$name" --to notebooks  # without papermill's injected-parameters cell
  fi
done
echo
if [ -n "$failed" ]; then
  echo "[adlib] FAILED in $failed (profile $PROFILE); the executed notebook shows the error: $OUTDIR/$failed"
else
  echo "[adlib] done (profile $PROFILE)"
fi
printf '  %s\n' "${summary[@]}"
echo "  executed notebooks: $OUTDIR"
echo "  figures:            $FIGURES"
echo "  result tables:      $RESULTS"
if [ -n "$failed" ]; then exit 1; fi
