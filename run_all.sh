#!/usr/bin/env bash
# adlib: the two commands of this project.
#   ./run_all.sh [--profile smoke|cpu|paper] [--output DIR] [--only NN] [--publish]
#                                                                          execute every notebook headless
#   ./run_all.sh test                                                      unit tests + notebooks (smoke) via nbval
# Each does its own set-up: a virtual environment in .venv (unless one is active) with the pinned package.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)

MODE=run
PROFILE=""
OUTPUT="executed"
ONLY=""
PUBLISH=0
while [ $# -gt 0 ]; do
  case "$1" in
    test) MODE=test ;;
    --profile) PROFILE="$2"; shift ;;
    --profile=*) PROFILE="${1#*=}" ;;
    --output) OUTPUT="$2"; shift ;;
    --only) ONLY="$2"; shift ;;
    --publish) PUBLISH=1 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

setup_environment() {
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
export MPLBACKEND=Agg

if [ "$MODE" = test ]; then
  # Smoke-profile notebooks write figures/results to a scratch directory, never over the committed ones.
  SCRATCH=$(mktemp -d)
  trap 'rm -rf "$SCRATCH"' EXIT
  export ADLIB_PROFILE=smoke ADLIB_FIGURES="$SCRATCH/figures" ADLIB_RESULTS="$SCRATCH/results"
  echo "[adlib] data directory: ${ADLIB_DATA:-<per-user cache>}"
  start=$(date +%s)
  python -m pytest tests notebooks --nbval-lax --nbval-cell-timeout=900 -q "$@"
  echo "[adlib] test suite took $(( $(date +%s) - start )) s"
  exit 0
fi

if [ -z "$PROFILE" ]; then
  PROFILE=$(python -c 'import torch; print("paper" if torch.cuda.is_available() else "cpu")')
fi
OUTDIR="$OUTPUT/$PROFILE"
mkdir -p "$OUTDIR"
echo "[adlib] profile: $PROFILE; executed notebooks -> $OUTDIR; figures -> figures/; tables -> results/"
summary=()
for nb in notebooks/[0-9][0-9]_*.ipynb; do
  name=$(basename "$nb")
  if [ -n "$ONLY" ] && [[ "$name" != "$ONLY"* ]]; then continue; fi
  echo "[adlib] running $name"
  t0=$(date +%s)
  python -m papermill "$nb" "$OUTDIR/$name" -p profile "$PROFILE" -k python3 --cwd notebooks --progress-bar
  summary+=("$(printf '%-45s %6d s' "$name" $(( $(date +%s) - t0 )))")
  if [ "$PUBLISH" = 1 ]; then
    python -m adlib.publish "$OUTDIR/$name" --to notebooks  # without papermill's injected-parameters cell
  fi
done
echo
echo "[adlib] done (profile $PROFILE)"
printf '  %s\n' "${summary[@]}"
echo "  executed notebooks: $ROOT/$OUTDIR"
echo "  figures:            $ROOT/figures"
echo "  result tables:      $ROOT/results"
