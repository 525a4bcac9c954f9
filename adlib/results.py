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
    """Mean, std and count over seeds of each metric column, grouped by all id columns but seed."""
    if frame.empty:
        return frame
    metrics = metrics or [c for c in frame.columns if c not in ID_COLUMNS and c not in NOT_METRICS
                          and pd.api.types.is_numeric_dtype(frame[c])]
    groups = [c for c in GROUP_COLUMNS if c in frame.columns]
    agg = frame.groupby(groups, sort=False, dropna=False)[metrics].agg(["mean", "std", "count"])
    agg.columns = [f"{m}_{s}" for m, s in agg.columns]
    out = agg.reset_index()
    out = out.rename(columns={f"{metrics[0]}_count": "n_seeds"})
    return out.drop(columns=[c for c in out.columns if c.endswith("_count")])


def mean_pm_std(summary: pd.DataFrame, metrics: list[str], scale: float = 100.0, digits: int = 1) -> pd.DataFrame:
    """Format `<metric>_mean`/`<metric>_std` columns as 'mean ± std' strings (×scale, e.g. percent)."""
    out = summary[[c for c in GROUP_COLUMNS if c in summary.columns] + (["n_seeds"] if "n_seeds" in summary else [])].copy()
    for m in metrics:
        mean, std = summary[f"{m}_mean"] * scale, summary[f"{m}_std"].fillna(0.0) * scale
        out[m] = [f"{a:.{digits}f} ± {b:.{digits}f}" if np.isfinite(a) else "" for a, b in zip(mean, std)]
    return out
