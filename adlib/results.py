"""Tidy result tables: one row per (dataset, method, variant, seed), aggregated to mean ± std."""
from __future__ import annotations

import platform
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .io import atomic_path
from .paths import relative_to_project, results_dir

ID_COLUMNS = ["dataset", "method", "variant", "seed", "profile", "image_size", "weights", "data_source"]
GROUP_COLUMNS = [c for c in ID_COLUMNS if c != "seed"]
NOT_METRICS = {"machine", "threads", "best_step", "status", "width", "steps"}  # provenance, not averaged as a result
# How a row's threshold was chosen and whether it is degenerate (adlib.metrics.evaluate_scores): provenance of
# F1/ACC/SEN/SPE, carried into summaries instead of averaged. A group is degenerate when any of its seeds is.
THRESHOLD_FLAGS = ("degenerate", "degenerate_f1max")
THRESHOLD_PROVENANCE = ("threshold_rule", *THRESHOLD_FLAGS)


@dataclass
class ResultsTable:
    """Collects result rows; `summary()` gives mean ± std over seeds; `save()` writes CSV atomically."""

    name: str
    rows: list[dict] = field(default_factory=list)

    def add(self, *, dataset: str, method: str, seed: int, profile: str, image_size: int, weights: str = "none",
            data_source: str = "", variant: str = "default", **metrics) -> dict:
        row = {"dataset": dataset, "method": method, "variant": variant, "seed": seed, "profile": profile,
               "image_size": image_size, "weights": weights, "data_source": data_source, **metrics}
        self.rows.append(row)
        return row

    def add_row(self, row: dict) -> dict:
        """Add a complete row (e.g. from `adlib.experiment.record_row`)."""
        missing = [c for c in ("dataset", "method", "seed") if c not in row]
        if missing:
            raise ValueError(f"result row lacks {missing}")
        self.rows.append(dict(row))
        return row

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def summary(self, metrics: list[str] | None = None) -> pd.DataFrame:
        return summarize(self.frame(), metrics)

    def save(self) -> str:
        """Write <name>.csv and <name>_summary.csv under results/ (per profile, see adlib.paths); returns the
        path relative to the repository."""
        path = results_dir() / f"{self.name}.csv"
        frame = self.frame()
        frame["machine"] = f"{platform.machine()} {platform.system()}"
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
        summary_path = results_dir() / f"{self.name}_summary.csv"
        with atomic_path(summary_path) as tmp:
            self.summary().to_csv(tmp, index=False)
        return relative_to_project(path)


def save_frame(frame: pd.DataFrame, name: str, provenance: dict | None = None) -> str:
    """Write any table (timing, diagnostics) to results/<name>.csv atomically, with provenance columns
    (e.g. `adlib.experiment.provenance_columns(cfg)`) appended; returns the path relative to the repository."""
    frame = frame.copy()
    for key, value in (provenance or {}).items():
        if key not in frame.columns:
            frame[key] = value
    frame["machine"] = f"{platform.machine()} {platform.system()}"
    path = results_dir() / f"{name}.csv"
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return relative_to_project(path)


def summarize(frame: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """Mean, std and count over seeds of each metric column, grouped by all id columns but seed.

    `threshold_rule` and the `degenerate` flags are not averaged: the summary keeps the rule (the distinct
    rules joined by ", " if seeds differ) and marks a group degenerate when any of its seeds is."""
    if frame.empty:
        return frame
    metrics = metrics or [c for c in frame.columns if c not in ID_COLUMNS and c not in NOT_METRICS
                          and c not in THRESHOLD_PROVENANCE and pd.api.types.is_numeric_dtype(frame[c])]
    groups = [c for c in GROUP_COLUMNS if c in frame.columns]
    grouped = frame.groupby(groups, sort=False, dropna=False)
    agg = grouped[metrics].agg(["mean", "std", "count"])
    agg.columns = [f"{m}_{s}" for m, s in agg.columns]
    for flag in THRESHOLD_FLAGS:
        if flag in frame.columns:
            agg[flag] = grouped[flag].agg(lambda values: bool(as_flags(values).any()))
    if "threshold_rule" in frame.columns:
        agg["threshold_rule"] = grouped["threshold_rule"].agg(
            lambda rules: ", ".join(sorted({str(r) for r in rules.dropna()})))
    out = agg.reset_index()
    out = out.rename(columns={f"{metrics[0]}_count": "n_seeds"})
    return out.drop(columns=[c for c in out.columns if c.endswith("_count")])


def as_flags(values) -> np.ndarray:
    """A flag column as bools: True/False, 1/0 or the strings "True"/"False" (a CSV column with blanks is read
    as text); a blank (a row written before the flag existed, or a diverged run) counts as False."""
    series = pd.Series(values)
    return series.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0")).to_numpy(dtype=bool)


def mean_pm_std(summary: pd.DataFrame, metrics: list[str], scale: float = 100.0, digits: int = 1) -> pd.DataFrame:
    """Format `<metric>_mean`/`<metric>_std` columns as 'mean ± std' strings (×scale, e.g. percent). A group of
    one seed has no spread: it shows as 'value (1 seed)'. The threshold's provenance (`threshold_rule`,
    `degenerate`) is carried along when the summary has it."""
    out = summary[[c for c in GROUP_COLUMNS if c in summary.columns] + (["n_seeds"] if "n_seeds" in summary else [])].copy()
    for m in metrics:
        mean, std = summary[f"{m}_mean"] * scale, summary[f"{m}_std"] * scale
        seeds = summary["n_seeds"] if "n_seeds" in summary else pd.Series(np.nan, index=summary.index)
        out[m] = [_mean_pm_std_text(a, b, n, digits) for a, b, n in zip(mean, std, seeds)]
    for column in THRESHOLD_PROVENANCE:
        if column in summary.columns:
            out[column] = summary[column]
    return out


def _mean_pm_std_text(mean: float, std: float, n_seeds: float, digits: int) -> str:
    if not np.isfinite(mean):
        return ""
    # one seed (or one finite value): the std is undefined (NaN) and must not read as "± 0"
    if n_seeds == 1 or not np.isfinite(std):
        return f"{mean:.{digits}f} (1 seed)"
    return f"{mean:.{digits}f} ± {(std if np.isfinite(std) else 0.0):.{digits}f}"
