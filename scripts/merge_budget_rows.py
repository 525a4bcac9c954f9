"""Merge the rows of budget runners that wrote to their own files into results/budget/budget_rows.csv.

`python -m adlib.budget` holds a lock on its rows file, so two runners on one machine (one per core) each need
their own `--rows FILE`, started from a copy of the committed file so that they skip the rungs already done. This
script appends to the committed file every row of those files whose `job_key` it does not hold yet (the first
one wins when two runners trained the same rung), atomically. With `--stamp-machine COMMIT` it also records, for
every row produced at that commit that has no `cpu_model` yet, the CPU of THIS machine (`cpu_model`,
`torch_cpu_capability`): use it only on the machine that ran those rows, since results differ between CPU kinds
(README, "What a re-run reproduces").

    python scripts/merge_budget_rows.py /tmp/rows_b.csv /tmp/rows_c.csv --stamp-machine 5ea187572fc5
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "results" / "budget" / "budget_rows.csv"


def this_cpu() -> tuple[str, str]:
    import torch

    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return (found.group(1).strip() if found else "unknown"), torch.backends.cpu.get_cpu_capability()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="*", type=Path, help="rows files of other runners")
    parser.add_argument("--target", type=Path, default=TARGET)
    parser.add_argument("--stamp-machine", metavar="COMMIT",
                        help="record this machine's CPU on rows produced at COMMIT (12+ hex digits)")
    args = parser.parse_args(argv)
    target = pd.read_csv(args.target, low_memory=False)
    before = len(target)
    for source in args.sources:
        if not source.is_file():
            raise SystemExit(f"{source}: no such rows file")
        rows = pd.read_csv(source, low_memory=False)
        if "job_key" not in rows:
            raise SystemExit(f"{source}: not a budget rows file (no job_key column)")
        new = rows[~rows["job_key"].isin(target["job_key"])].drop_duplicates("job_key")
        target = pd.concat([target, new], ignore_index=True, sort=False)
        print(f"{source}: {len(new)} new row(s) of {len(rows)}")
    if args.stamp_machine:
        model, capability = this_cpu()
        for column in ("cpu_model", "torch_cpu_capability"):
            if column not in target:
                target[column] = pd.Series([None] * len(target), dtype="object")
        mine = target["git_commit"].astype(str).str.startswith(args.stamp_machine[:12]) & target["cpu_model"].isna()
        target.loc[mine, "cpu_model"] = model
        target.loc[mine, "torch_cpu_capability"] = capability
        print(f"stamped {int(mine.sum())} row(s) of {args.stamp_machine[:12]} with '{model}', {capability}")
    tmp = args.target.with_suffix(".csv.tmp")
    target.to_csv(tmp, index=False)
    tmp.replace(args.target)
    print(f"{args.target}: {before} -> {len(target)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
