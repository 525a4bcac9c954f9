"""Does a result depend on which CPU kernels run it? Train one small rung under several instruction-set caps.

The same code, seed, data and thread count gave other numbers on a CPU of another kind (see the README's
"What a re-run reproduces"). This script shows why on one machine: it trains the budget study's cheapest rung
(AE, cpu width, x1 = 150 steps, PneumoniaMNIST-64, seed 0; `python -m adlib.budget`) in a fresh process once per
setting of the variables that choose torch's CPU kernels - ATen's vector width (`ATEN_CPU_CAPABILITY`), oneDNN's
instruction set (`ONEDNN_MAX_CPU_ISA`), MKL's code path (`MKL_ENABLE_INSTRUCTIONS`, `MKL_CBWR`) - and writes the
test AUROC, validation AUROC and training images/s of each. Different AUROCs under different caps on one machine
mean that a CPU which picks other kernels by itself gives other numbers; the images/s say what pinning a common
path would cost.

    python scripts/measure_cpu_kernels.py --out results/reproduction/cpu_kernels.csv
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MKLDNN_OFF = "_ADLIB_MEASURE_MKLDNN_OFF"  # not a torch variable: this script then runs the rung with oneDNN disabled
# the rung's module run with torch.backends.mkldnn.enabled = False (convolutions then go through ATen + MKL)
WITHOUT_MKLDNN = ("import runpy, sys, torch; torch.backends.mkldnn.enabled = False; "
                  "sys.argv = ['adlib.budget'] + sys.argv[1:]; runpy.run_module('adlib.budget', run_name='__main__')")
SETTINGS = {
    "this CPU's own choice": {},
    "oneDNN capped at AVX512_CORE (no AMX/VNNI)": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "ATen capped at AVX2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "MKL capped at AVX2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "ATen + oneDNN + MKL at AVX2 (MKL_CBWR=AVX2)": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                                                   "MKL_CBWR": "AVX2"},
    "oneDNN off (torch.backends.mkldnn) + ATen AVX2 + MKL_CBWR=AVX2": {"ATEN_CPU_CAPABILITY": "avx2",
                                                                       "MKL_CBWR": "AVX2", MKLDNN_OFF: "1"},
    "ATen default + oneDNN SSE4.1 + MKL_CBWR=COMPATIBLE": {"ATEN_CPU_CAPABILITY": "default",
                                                           "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE"},
}


def run_setting(env_extra: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        rows = Path(tmp) / "rows.csv"
        launcher = ["-c", WITHOUT_MKLDNN] if env_extra.get(MKLDNN_OFF) else ["-m", "adlib.budget"]
        cmd = [sys.executable, *launcher, "--profile", "cpu", "--datasets", "pneumonia-64", "--widths",
               "cpu", "--detectors", "AE", "--max-rungs", "1", "--rows", str(rows), "--no-progress"]
        subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env_extra}, check=True, capture_output=True, text=True)
        row = pd.read_csv(rows).iloc[0]
    return {"AUROC": row["AUROC"], "val_AUROC": row["val_AUROC"], "fit_images_per_s": row["fit_images_per_s"],
            "budget_multiplier": row["budget_multiplier"], "steps": row["steps"], "threads": row["threads"],
            "git_commit": row["git_commit"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    if "ADLIB_DATA" not in os.environ:
        print("note: ADLIB_DATA is not set; the data come from the per-user cache (or are downloaded)")
    records = []
    for name, extra in SETTINGS.items():
        record = {"setting": name, "env": " ".join(f"{k}={v}" for k, v in extra.items()), **run_setting(extra)}
        print(f"{name:55s} AUROC {record['AUROC']:.6f}  val {record['val_AUROC']:.6f}  "
              f"{record['fit_images_per_s']:.0f} img/s", flush=True)
        records.append(record)
    frame = pd.DataFrame(records)
    base = frame.loc[0, "fit_images_per_s"]
    frame["speed_vs_own_choice"] = frame["fit_images_per_s"] / base
    # the same rung as committed in results/budget/ (produced on the machine of its git_commit, maybe another CPU)
    committed = pd.read_csv(ROOT / "results" / "budget" / "budget_rows.csv", low_memory=False)
    same = committed[(committed["method"] == "AE") & (committed["data"] == "pneumonia-64")
                     & (committed["width_label"] == "cpu") & (committed["budget_multiplier"] == 1)
                     & (committed["seed"] == 0)]
    if len(same):
        frame["committed_AUROC"] = same["AUROC"].iloc[0]
        frame["committed_git_commit"] = same["git_commit"].iloc[0]
        frame["equals_committed"] = frame["AUROC"] == frame["committed_AUROC"]
        print(f"committed row ({same['git_commit'].iloc[0]}): AUROC {same['AUROC'].iloc[0]:.6f}; equal under "
              f"{int(frame['equals_committed'].sum())} of {len(frame)} settings")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(args.out)
    print(f"{frame['AUROC'].nunique()} distinct test AUROCs over {len(frame)} settings -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
