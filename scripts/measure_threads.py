"""Throughput of heavy training steps: 1 thread, 2 threads in one process, 2 processes of 1 thread each.

The numbers behind the thread/process design of the README's "Reproducibility" section: torch's CPU results
depend on the thread count, so every profile computes with one thread per process; is speed better bought with
threads inside a process or with processes of one thread each (``./run_all.sh --jobs``)?

    python scripts/measure_threads.py [--workloads conv_ae dpa salad] [--rounds 2] [--out FILE.csv]

Each workload is one of the library's detectors at the cpu profile's sizes of the notebook that trains it
(conv AE: notebook 00; DPA: notebook 02; SALAD: notebook 04) on PneumoniaMNIST training normals ($ADLIB_DATA).
A worker process fits the detector twice, with a few and with more steps, after a warm-up fit; the time per
training step is the difference of the two fit times over the difference of the steps, so set-up (data, model,
DPA's target features) drops out. "2 processes x 1 thread" starts two workers at once and adds their rates.
The three set-ups are measured in turn, ``--rounds`` times; the table gives the best and the median of the rounds
(on a machine shared with other jobs the best is the closest to an idle machine) and the load average before each.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# detector class, image size, kwargs (the cpu profile's sizes; adlib/configs/0N_*.toml), (small, big) step counts
WORKLOADS = {
    "conv_ae": ("adlib.methods.conv_ae:ConvAEDetector", 64, dict(latent=32, width=32, batch_size=64), (2, 12)),
    "dpa": ("adlib.methods.dpa.detector:DPADetector", 32, dict(arch="efficientnet_lite0", weights="imagenet-lite", latent=16, widths=16, batch_size=32),
            (2, 12)),
    "salad": ("adlib.methods.salad.detector:SALADDetector", 64, dict(nz=64, width=8, max_width=128, d_hidden=128, batch_size=32),
              (2, 8)),
}
MODES = ("1 process x 1 thread", "1 process x 2 threads", "2 processes x 1 thread")


def worker(name: str, threads: int) -> dict:
    """Runs in its own process: seconds per training step of one workload with ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    import importlib

    from adlib.data import make_protocol

    detector, size, kwargs, (small, big) = WORKLOADS[name]
    module, cls = detector.split(":")
    create = getattr(importlib.import_module(module), cls)
    train = make_protocol("pneumonia", size=size, max_train=600, seed=0).train

    def fit_seconds(steps: int) -> float:
        model = create(**kwargs, steps=steps, eval_every=10**6, progress=False, seed=0)
        start = time.perf_counter()
        model.fit(train)
        return time.perf_counter() - start

    fit_seconds(1)  # warm-up: kernels, caches, lazy imports
    t_small, t_big = fit_seconds(small), fit_seconds(big)
    per_step = max(t_big - t_small, 1e-9) / (big - small)
    return {"workload": name, "threads": threads, "s_per_step": per_step,
            "images_per_s": kwargs["batch_size"] / per_step}


def start_worker(name: str, threads: int) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    env.pop("ADLIB_THREADS", None)
    return subprocess.Popen([sys.executable, __file__, "--worker", name, "--threads", str(threads)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, text=True)


def collect(procs: list[subprocess.Popen]) -> list[dict]:
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a measuring worker failed (exit {proc.returncode}); its error is printed above")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def measure(name: str, rounds: int) -> list[dict]:
    runs = {mode: [] for mode in MODES}
    for round_no in range(rounds):
        for mode in MODES:
            load = os.getloadavg()[0]
            threads = 2 if mode == "1 process x 2 threads" else 1
            workers = 2 if mode.startswith("2 processes") else 1
            parts = collect([start_worker(name, threads) for _ in range(workers)])
            total = sum(p["images_per_s"] for p in parts)
            runs[mode].append((total, load))
            each = " + ".join(f"{p['images_per_s']:.1f}" for p in parts)
            print(f"{name:8s} round {round_no + 1} {mode:24s} {total:8.1f} images/s ({each}; load {load:.2f})",
                  flush=True)
    rows = []
    for mode, values in runs.items():
        rates = sorted(v for v, _ in values)
        rows.append({"workload": name, "mode": mode, "best_images_per_s": round(rates[-1], 1),
                     "median_images_per_s": round(rates[len(rates) // 2] if len(rates) % 2 else
                                                  (rates[len(rates) // 2 - 1] + rates[len(rates) // 2]) / 2, 1),
                     "rounds": len(rates), "load_averages": " ".join(f"{l:.2f}" for _, l in values),
                     "cores": os.cpu_count()})
    base = rows[0]["best_images_per_s"]
    for row in rows:
        row["best_vs_1x1"] = round(row["best_images_per_s"] / base, 2)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--rounds", type=int, default=2, help="measurements of each set-up (default 2)")
    parser.add_argument("--out", type=Path, help="also write the table as CSV here")
    parser.add_argument("--worker", choices=sorted(WORKLOADS), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.threads)))
        return 0
    import pandas as pd

    rows = [row for name in args.workloads for row in measure(name, args.rounds)]
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(args.out.name + ".tmp")
        table.to_csv(tmp, index=False)
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
