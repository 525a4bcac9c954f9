"""Statistics of the grid's rows: mean ± std and bootstrap CIs per cell, the Friedman/Nemenyi ranking
(autorank), the leaderboard and the resources each method used.

The bootstrap of `cell_stats` resamples the *seeds*, because the rows keep no per-image scores.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import warnings

import numpy as np
import pandas as pd

from .grid import UNSUPERVISED


def bootstrap_ci(values, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (scipy.stats.bootstrap); NaN with fewer than two values."""
    from scipy.stats import bootstrap

    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return float("nan"), float("nan")
    if np.ptp(x) == 0:
        return float(x[0]), float(x[0])
    res = bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                    random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def cell_stats(grid: pd.DataFrame) -> pd.DataFrame:
    """Per (block, method, dataset): seeds, mean ± std of test AUROC, its bootstrap 95 % CI over seeds
    (ci_low/ci_high), the bootstrap 95 % CI over test images of each run averaged over seeds (image_ci_low/high;
    rows written before runs recorded it have none), pixel AUROC, the mean fit/score seconds and the largest
    memory a run added."""
    done = grid[pd.to_numeric(grid["AUROC"], errors="coerce").notna()].copy()
    if done.empty:
        return pd.DataFrame(columns=["block", "method", "data", "n_seeds", "AUROC_mean", "AUROC_std",
                                     "ci_low", "ci_high"])
    rows = []
    for (block, method, data), g in done.groupby(["block", "method", "data"], sort=False):
        a = pd.to_numeric(g["AUROC"], errors="coerce").to_numpy()
        lo, hi = bootstrap_ci(a)
        num = lambda c, f: float(f(pd.to_numeric(g[c], errors="coerce"))) if c in g else float("nan")  # noqa: E731
        rows.append(dict(block=block, method=method, data=data,
                         weights="/".join(sorted(set(g["weights"].astype(str)))) if "weights" in g else "",
                         n_seeds=len(a), AUROC_mean=a.mean(),
                         AUROC_std=a.std(ddof=1) if len(a) > 1 else float("nan"), ci_low=lo, ci_high=hi,
                         image_ci_low=num("AUROC_ci_low", pd.Series.mean),
                         image_ci_high=num("AUROC_ci_high", pd.Series.mean),
                         pixel_AUROC=num("pixel_AUROC", pd.Series.mean),
                         fit_seconds=num("fit_seconds", pd.Series.mean),
                         score_seconds=num("score_seconds", pd.Series.mean),
                         added_memory_MB=num("added_memory_MB", pd.Series.max),
                         reused=int((g["how"] == "reused").sum()),
                         ran=int(g["how"].astype(str).str.startswith("ran").sum())))
    return pd.DataFrame(rows)


def complete_block(matrix: pd.DataFrame, min_datasets: int = 5) -> pd.DataFrame:
    """The largest complete datasets x methods sub-table (no missing cell) with at least ``min_datasets`` rows
    and two methods, chosen by the number of cells (ties: more datasets); empty if there is none."""
    best, best_key = pd.DataFrame(), (0, 0)
    for n in range(len(matrix.index), min_datasets - 1, -1):
        for ds in itertools.combinations(matrix.index, n):
            sub = matrix.loc[list(ds)].dropna(axis=1)
            if sub.shape[1] >= 2 and (sub.size, n) > best_key:
                best, best_key = sub, (sub.size, n)
    return best


def rank_methods(cells: pd.DataFrame, block: str = UNSUPERVISED, alpha: float = 0.05, min_datasets: int = 5):
    """Friedman test + Nemenyi critical difference (autorank, non-parametric) of mean test AUROC per dataset,
    on the largest complete methods x datasets table of ``block``. Returns (autorank result or None, the table
    ranked, a sentence saying what was compared)."""
    sub = cells[cells["block"] == block]
    matrix = sub.pivot_table(index="data", columns="method", values="AUROC_mean", sort=False)
    table = complete_block(matrix, min_datasets)
    if table.empty:
        return None, table, (f"no {min_datasets} datasets on which two or more {block} methods all have results: "
                             "no ranking test (autorank needs at least five datasets)")
    from autorank import autorank

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # autorank prints its choices
        warnings.simplefilter("ignore")
        result = autorank(table, alpha=alpha, order="descending", approach="frequentist",
                          force_mode="nonparametric")
    what = (f"{result.omnibus} test over {table.shape[0]} datasets ({', '.join(table.index)}) and "
            f"{table.shape[1]} methods: p = {result.pvalue:.3g}; post-hoc {result.posthoc}, critical difference "
            f"{result.cd:.2f} mean ranks" if result.cd is not None else
            f"{result.omnibus} test over {table.shape[0]} datasets: p = {result.pvalue:.3g}")
    return result, table, what


def leaderboard(cells: pd.DataFrame, ranks: dict | None = None) -> pd.DataFrame:
    """One row per (block, method): datasets covered, mean rank (autorank, over the ranked datasets; blank for
    a method outside the complete table), mean AUROC over its datasets, and 'mean ± std (n seeds)' per dataset.

    ranks: {block: autorank result or None}."""
    ranks = ranks or {}
    out = []
    for (block, method), g in cells.groupby(["block", "method"], sort=False):
        res = ranks.get(block)
        mean_rank = float(res.rankdf.loc[method, "meanrank"]) if res is not None and method in res.rankdf.index \
            else float("nan")
        row = dict(method=method, block=block,
                   weights="/".join(sorted(set("/".join(g["weights"].astype(str)).split("/")))) if "weights" in g
                   else "", n_datasets=int(g["data"].nunique()), mean_rank=mean_rank,
                   mean_auroc=float(g["AUROC_mean"].mean()), fit_seconds=float(g["fit_seconds"].mean()),
                   score_seconds=float(g["score_seconds"].mean()), added_memory_MB=float(g["added_memory_MB"].max()))
        for _, c in g.iterrows():
            std = "" if not np.isfinite(c["AUROC_std"]) else f" ± {c['AUROC_std']:.3f}"
            row[f"AUROC {c['data']}"] = f"{c['AUROC_mean']:.3f}{std} (n={int(c['n_seeds'])})"
        out.append(row)
    frame = pd.DataFrame(out)
    if frame.empty:
        return frame
    frame["_b"] = (frame["block"] != UNSUPERVISED).astype(int)
    frame["_k"] = pd.to_numeric(frame["block"].str.extract(r"K=(\d+)")[0], errors="coerce")  # K=2 before K=16
    frame = frame.sort_values(["_b", "_k", "block", "mean_rank", "mean_auroc"],
                              ascending=[True, True, True, True, False],
                              na_position="last").drop(columns=["_b", "_k"])
    return frame.reset_index(drop=True)


def resources(cells: pd.DataFrame) -> pd.DataFrame:
    """Training time, scoring time and memory per method (mean over its datasets; memory = the largest that one
    run added at its peak, `ResourceMeter.added_mb`; only rows written since that column exists have it)."""
    agg = cells.groupby(["block", "method"], sort=False).agg(
        n_cells=("data", "size"), fit_seconds=("fit_seconds", "mean"), score_seconds=("score_seconds", "mean"),
        added_memory_MB=("added_memory_MB", "max"))
    return agg.reset_index()
