"""Reuse of the rows the paper notebooks already wrote: a grid cell that ran before is not run again.

A row with the same dataset, image size, method, seed, weights source (and K for a weakly supervised method) and,
where both have it, the same data file and test-split size, is *reused*; `plan_grid` splits the grid into those
rows and the jobs still to run.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..paths import results_dir
from .grid import ConfigRef, Job, _grid_row, _protocol


def existing_rows(folder: Path | None = None, exclude_prefix: str = "07_") -> pd.DataFrame:
    """Every runner row (dataset, method, seed, image_size, weights, AUROC) in a results folder, with its file.

    Rows of the benchmark itself (``07_*``), summaries and timing tables are left out. Files are read in sorted
    order, so when two notebooks wrote the same configuration the lower-numbered notebook's row comes first."""
    folder = Path(folder) if folder is not None else results_dir()
    need = {"dataset", "method", "seed", "image_size", "weights", "AUROC"}
    frames = []
    for path in sorted(folder.glob("*.csv")):
        if path.name.startswith(exclude_prefix) or path.stem.endswith("_summary") or "timing" in path.stem:
            continue
        frame = pd.read_csv(path, low_memory=False)
        if not need <= set(frame.columns):
            continue
        frame = frame.assign(source=path.name, variant=frame.get("variant", "default"))
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=sorted(need | {"variant", "source"}))
    out = pd.concat(frames, ignore_index=True, sort=False)
    out["variant"] = out["variant"].fillna("default").astype(str)
    return out


FINGERPRINT_COLUMNS = ("data_sha256", "n_test")  # the evaluation data a reused row must share with the job


def data_fingerprint(ref: "ConfigRef", key: str) -> dict:
    """What identifies a dataset of the configuration's grid: its file's (or generated images') hash and the
    size of its test split (after caps). Rows written before a column existed are not checked on it."""
    prot = _protocol(ref.data_spec(key))
    return {"data_sha256": prot.data_sha256()[:16], "n_test": len(prot.test)}


def matching_rows(job: Job, rows: pd.DataFrame, reuse_variants=("default", "unsupervised", "per dataset"),
                  fingerprint: dict | None = None) -> pd.DataFrame:
    """Every row that ran ``job``'s configuration: dataset, image size, method, seed, weights, K, and (where
    both the row and ``fingerprint`` have it) the same data file and test-split size."""
    if rows.empty:
        return rows
    variants = set(reuse_variants) if job.k is None else {job.variant}
    hit = rows[(rows["dataset"].astype(str) == job.dataset) & (rows["image_size"].astype(int) == job.image_size)
               & rows["method"].isin(job.aliases) & (rows["seed"].astype(int) == job.seed)
               & (rows["weights"].astype(str) == job.weights) & rows["variant"].isin(variants)]
    if "K" in hit.columns and job.k is not None:
        hit = hit[hit["K"].isna() | (pd.to_numeric(hit["K"], errors="coerce") == job.k)]
    for col, want in (fingerprint or {}).items():
        if col in hit.columns:
            known = hit[col].notna() & (hit[col].astype(str) != "")
            hit = hit[~known | (hit[col].astype(str).str.replace(r"\.0$", "", regex=True) == str(want))]
    return hit


def matching_row(job: Job, rows: pd.DataFrame, reuse_variants=("default", "unsupervised", "per dataset"),
                 fingerprint: dict | None = None):
    """The first row that ran ``job``'s configuration (see `matching_rows`), or None."""
    hit = matching_rows(job, rows, reuse_variants, fingerprint)
    return None if hit.empty else hit.iloc[0].to_dict()


def plan_grid(jobs: list[Job], rows: pd.DataFrame, *, run_on: list[str] | None = None,
              run_seeds: list[int] | dict | None = None, reuse: bool = True,
              reuse_variants=("default", "unsupervised", "per dataset"),
              fingerprints: dict | None = None) -> tuple[list[dict], list[Job]]:
    """Split the grid into reused rows and the jobs to run.

    A cell (detector, dataset, K) takes all its reused seeds from ONE results file, the one that ran the most of
    its seeds (the lower-numbered notebook on a tie), so a cell never mixes two notebooks' budgets; its other
    seeds are listed as 'not run (cell reused)'. A cell that no file ran runs here, on the datasets (keys) of
    ``run_on`` and the seeds of ``run_seeds`` (None: all; ``run_seeds`` may also map a dataset key to its
    seeds, the others then take all); the rest is listed as 'not run (budget)'. ``fingerprints``:
    {dataset key: `data_fingerprint`}. Returns (grid rows so far, jobs to run)."""
    def seeds_of(key):
        return run_seeds.get(key) if hasattr(run_seeds, "get") else run_seeds

    cells: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):
        cells.setdefault((job.detector, job.method, job.data_key, job.k), []).append(i)
    decided: dict[int, tuple] = {}
    for members in cells.values():
        hits = {i: matching_rows(jobs[i], rows, reuse_variants, (fingerprints or {}).get(jobs[i].data_key))
                if reuse else pd.DataFrame() for i in members}
        counts: dict[str, int] = {}
        for hit in hits.values():
            for src in dict.fromkeys(hit["source"].astype(str)) if len(hit) else ():
                counts[src] = counts.get(src, 0) + 1
        best = min(counts, key=lambda src: (-counts[src], src)) if counts else None
        for i in members:
            job = jobs[i]
            if best is not None:
                hit = hits[i][hits[i]["source"].astype(str) == best] if len(hits[i]) else hits[i]
                decided[i] = ("reused", hit.iloc[0].to_dict()) if len(hit) else ("not run (cell reused)", {})
                continue
            seeds = None if run_seeds is None else seeds_of(job.data_key)
            if (run_on is None or job.data_key in run_on) and (seeds is None or job.seed in seeds):
                decided[i] = ("run", None)
            else:
                decided[i] = ("not run (budget)", {})
    planned, todo = [], []
    for i, job in enumerate(jobs):
        how, row = decided[i]
        if how == "run":
            todo.append(job)
        else:
            planned.append(_grid_row(job, row, how, row.get("source", "") if how == "reused" else ""))
    return planned, todo
