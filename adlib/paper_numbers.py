"""The numbers each paper printed, with table and row, so notebooks can show 'paper vs ours'.

They live in paper_numbers.csv beside this file (one row per printed number, in the paper's units,
usually percent). Add rows there; never type a result of ours into it.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

PAPER_NUMBERS_CSV = Path(__file__).with_name("paper_numbers.csv")


def paper_numbers(paper: str | None = None, table: str | None = None) -> pd.DataFrame:
    frame = pd.read_csv(PAPER_NUMBERS_CSV, dtype={"variant": str}).fillna({"variant": "", "note": ""})
    if paper is not None:
        frame = frame[frame["paper"] == paper]
    if table is not None:
        frame = frame[frame["table"] == table]
    return frame.reset_index(drop=True)


def side_by_side(ours: pd.DataFrame, paper: str, table: str, metric: str = "AUROC", scale: float = 100.0,
                 on: tuple[str, ...] = ("method", "variant")) -> pd.DataFrame:
    """Join our summary (`<metric>_mean/_std` columns) with the paper's printed numbers.

    Rows are matched on method (and variant when the paper gives one); our numbers are scaled to the
    paper's units. Rows that exist on one side only are kept, with blanks on the other.
    """
    printed = paper_numbers(paper, table)
    printed = printed[printed["metric"] == metric].rename(columns={"value": f"paper {metric}"})
    ours = ours.copy()
    ours[f"ours {metric}"] = (ours[f"{metric}_mean"] * scale).round(1)
    ours[f"ours {metric} std"] = (ours[f"{metric}_std"].fillna(0) * scale).round(1)
    keys = [k for k in on if k in ours.columns and k in printed.columns]
    if "variant" in keys:
        printed = printed.assign(variant=printed["variant"].fillna(""))
    cols = keys + [c for c in ("dataset_in_paper", "our_dataset", f"paper {metric}") if c in printed.columns]
    merged = ours.merge(printed[cols], on=keys, how="outer")
    merged[f"ours - paper"] = (merged[f"ours {metric}"] - merged[f"paper {metric}"]).round(1)
    return merged
