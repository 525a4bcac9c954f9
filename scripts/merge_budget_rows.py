"""Merge the rows of budget runners that wrote to their own files into results/budget/budget_rows.csv.

`python -m adlib.budget` holds a lock on its rows file, so two runners on one machine (one per core) each need
their own `--rows FILE`, started from a copy of the committed file so that they skip the rungs already done. This
script appends to the committed file every row of those files whose `job_key` it does not hold yet (the first
one wins when two runners trained the same rung), atomically. With `--stamp-machine COMMIT` it also records, for
every row produced at that commit that has no `cpu_model` yet, the CPU of THIS machine (`cpu_model`, `cpu_isa`,
`torch_cpu_capability`, as `adlib.provenance.cpu_kind` gives them; rows trained since record them themselves): use it only on the machine that ran those rows, since results differ between CPU kinds
(README, "What a re-run reproduces").

    python scripts/merge_budget_rows.py /tmp/rows_b.csv /tmp/rows_c.csv --stamp-machine 5ea187572fc5
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "results" / "budget" / "budget_rows.csv"


def this_cpu() -> dict[str, str]:
    from adlib.provenance import cpu_kind

    return cpu_kind()


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
        kind = this_cpu()
        for column in kind:
            if column not in target:
                target[column] = pd.Series([None] * len(target), dtype="object")
        mine = target["git_commit"].astype(str).str.startswith(args.stamp_machine[:12]) & target["cpu_model"].isna()
        for column, value in kind.items():
            target.loc[mine, column] = value
        print(f"stamped {int(mine.sum())} row(s) of {args.stamp_machine[:12]} with {kind}")
    tmp = args.target.with_suffix(".csv.tmp")
    target.to_csv(tmp, index=False)
    tmp.replace(args.target)
    print(f"{args.target}: {before} -> {len(target)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
