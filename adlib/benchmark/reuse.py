"""Reuse of the rows the paper notebooks already wrote: a grid cell that ran before is not run again.

A row is *reused* for a grid cell only when it is the cell's method, dataset, image size, seed and variant (K) AND its
configuration hash (``run_sha256``, written by `adlib.experiment.run_experiment` for a detector created by name)
equals the cell's (`cell_sha256`): the same detector settings (steps, width, ...), weights, image size and channels,
data file and split sizes, few-shot anomalies and threshold rule. A row without the hash (written before rows
recorded it, or by a run that built its detector itself) is never reused. `plan_grid` splits the grid into reused
rows and the jobs still to run.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..paths import results_dir
from .grid import ConfigRef, Job, _grid_row, _protocol, _thawed


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


FINGERPRINT_COLUMNS = ("data_sha256", "n_train", "n_val", "n_test", "channels")  # what identifies a dataset


def data_fingerprint(ref: "ConfigRef", key: str) -> dict:
    """What identifies a dataset of the configuration's grid: its file's (or generated images') hash, its channel
    count and the sizes of its splits (after caps)."""
    prot = _protocol(ref.data_spec(key))
    return {"data_sha256": prot.data_sha256()[:16], "n_train": len(prot.train), "n_val": len(prot.val),
            "n_test": len(prot.test), "channels": prot.train.channels}


def cell_sha256(job: Job, ref: "ConfigRef") -> str:
    """The configuration hash a run of ``job`` records (`adlib.experiment.run_config_sha256`, column
    ``run_sha256``): detector settings (steps, width, ...), weights, image size and channels, data file and split
    sizes, the few-shot anomalies of its K and seed, and the threshold rule. A row is reused only when its
    ``run_sha256`` equals this."""
    from ..data import few_shot_anomalies
    from ..experiment import run_config_sha256, weights_of

    prot = _protocol(ref.data_spec(job.data_key))
    kw = dict(_thawed(job.kwargs) or {})
    anomalies = few_shot_anomalies(prot, job.k, seed=job.seed) if job.k is not None else None
    return run_config_sha256(job.detector, kw, prot, image_size=job.image_size, anomalies=anomalies,
                             use_val_in_fit=True, weights=weights_of(job.detector, kw))


def _same_cell(job: Job, rows: pd.DataFrame, reuse_variants) -> pd.DataFrame:
    """Rows of ``job``'s dataset, image size, method (any of its names), seed and variant (K), whatever settings
    they ran with."""
    if rows.empty:
        return rows
    variants = set(reuse_variants) if job.k is None else {job.variant}
    return rows[(rows["dataset"].astype(str) == job.dataset)
                & (pd.to_numeric(rows["image_size"], errors="coerce") == job.image_size)
                & rows["method"].isin(job.aliases) & (pd.to_numeric(rows["seed"], errors="coerce") == job.seed)
                & rows["variant"].isin(variants)]


def matching_rows(job: Job, rows: pd.DataFrame, reuse_variants=("default", "unsupervised", "per dataset"),
                  sha256: str | None = None) -> pd.DataFrame:
    """The rows that ran exactly ``job``'s configuration: the cell's dataset, size, method, seed and variant, and a
    ``run_sha256`` equal to ``sha256`` (`cell_sha256`). Without a hash, or for rows written before runs recorded
    one, nothing matches: a row whose settings cannot be shown to be the cell's is never reused."""
    hit = _same_cell(job, rows, reuse_variants)
    if hit.empty or not sha256 or "run_sha256" not in hit.columns:
        return hit.iloc[0:0]
    return hit[hit["run_sha256"].astype(str) == str(sha256)]


def matching_row(job: Job, rows: pd.DataFrame, reuse_variants=("default", "unsupervised", "per dataset"),
                 sha256: str | None = None):
    """The first row that ran ``job``'s configuration (see `matching_rows`), or None."""
    hit = matching_rows(job, rows, reuse_variants, sha256)
    return None if hit.empty else hit.iloc[0].to_dict()


def reuse_summary(jobs: list[Job], rows: pd.DataFrame, hashes: list[str],
                  reuse_variants=("default", "unsupervised", "per dataset")) -> pd.DataFrame:
    """Per results file: how many of its rows are a cell of the grid by method, dataset, image size and seed, and
    how many of those also have the cell's configuration hash (reusable); the others ran other settings (or were
    written before rows recorded the hash)."""
    alike: set = set()
    same: set = set()
    for job, sha in zip(jobs, hashes):
        alike.update(_same_cell(job, rows, reuse_variants).index)
        same.update(matching_rows(job, rows, reuse_variants, sha).index)
    columns = ["results file", "rows that are a grid cell (method, dataset, size, seed)",
               "with the cell's configuration hash (reusable)"]
    if not alike:
        return pd.DataFrame(columns=columns)
    src = rows.loc[sorted(alike), "source"].astype(str)
    out = pd.DataFrame({columns[0]: src, "ok": [i in same for i in src.index]})
    return out.groupby(columns[0]).agg(**{columns[1]: ("ok", "size"), columns[2]: ("ok", "sum")}).reset_index()


def plan_grid(jobs: list[Job], rows: pd.DataFrame, *, run_on: list[str] | None = None,
              run_seeds: list[int] | dict | None = None, reuse: bool = True,
              reuse_variants=("default", "unsupervised", "per dataset"),
              hashes: list[str] | None = None) -> tuple[list[dict], list[Job]]:
    """Split the grid into reused rows and the jobs to run.

    A job (detector, dataset, seed[, K]) is reused when a row has its configuration hash (`matching_rows`; the
    lower-numbered notebook's row when several have it); any other job runs here, on the datasets (keys) of
    ``run_on`` and the seeds of ``run_seeds`` (None: all; ``run_seeds`` may also map a dataset key to its seeds,
    the others then take all); the rest is listed as 'not run (budget)'. Since a reused row has the cell's very
    configuration, a cell may mix reused and new seeds. ``hashes``: each job's `cell_sha256` (in the jobs' order);
    without them nothing is reused. Returns (grid rows so far, jobs to run)."""
    planned, todo = [], []
    for i, job in enumerate(jobs):
        hit = matching_rows(job, rows, reuse_variants, hashes[i] if hashes else None) if reuse else rows.iloc[0:0]
        if len(hit):
            row = hit.sort_values("source", kind="stable").iloc[0].to_dict()
            planned.append(_grid_row(job, row, "reused", str(row.get("source", ""))))
            continue
        seeds = run_seeds.get(job.data_key) if hasattr(run_seeds, "get") else run_seeds
        if (run_on is None or job.data_key in run_on) and (seeds is None or job.seed in seeds):
            todo.append(job)
        else:
            planned.append(_grid_row(job, {}, "not run (budget)", ""))
    return planned, todo
