"""Statistics of the grid's rows: mean ± std and bootstrap CIs per cell, the Friedman/Nemenyi ranking
(autorank), the leaderboard and the resources each method used.

`cell_stats` gives two 95 % bootstrap CIs per cell: over the *seeds* (the rows keep no per-image scores) and, from
each run's own row, over its *test images* (averaged over seeds); `cell_text` shows the seed CI where there are two
or more seeds, else the test-image CI. The chance and degenerate-threshold marks come from `adlib.verdicts`.
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


def _chance_and_degenerate(g: pd.DataFrame) -> tuple[str, bool]:
    """The verdict module's chance status of a cell's AUROC (seed spread and test-image CI) and whether any seed's
    validation threshold was degenerate."""
    from ..verdicts import _chance_of, stats

    s = stats(g.assign(method="cell", dataset="cell", variant="default"), "AUROC")
    return _chance_of(s), bool(s.degenerate)


def cell_stats(grid: pd.DataFrame) -> pd.DataFrame:
    """Per (block, method, dataset): seeds, mean ± std of test AUROC, its bootstrap 95 % CI over seeds
    (ci_low/ci_high; none with one seed), the bootstrap 95 % CI over test images of each run averaged over seeds
    (image_ci_low/high), `chance` ('below/at/above chance', adlib.verdicts), `degenerate` (a seed's validation
    threshold called almost every image one class: its F1/ACC/SEN/SPE are no result), mean F1 (NaN when
    degenerate), the AUROC on the test images that are MedMNIST's own (rebuilt PneumoniaMNIST 64/128 px), pixel
    AUROC, the mean fit/score seconds, the largest memory a run added, and `status` (why a cell that ran has no
    AUROC: the error of 'cannot run', a diverged run)."""
    columns = ["block", "method", "data", "n_seeds", "AUROC_mean", "AUROC_std", "ci_low", "ci_high",
               "image_ci_low", "image_ci_high", "chance", "degenerate", "F1_mean", "AUROC_medmnist_exact",
               "pixel_AUROC", "fit_seconds",
               "score_seconds", "added_memory_MB", "reused", "ran", "status"]
    tried = grid[~grid["how"].astype(str).str.startswith("not run")]
    rows = []
    for (block, method, data), g in tried.groupby(["block", "method", "data"], sort=False):
        a = pd.to_numeric(g["AUROC"], errors="coerce").dropna().to_numpy()
        num = lambda c, f: float(f(pd.to_numeric(g[c], errors="coerce"))) if c in g else float("nan")  # noqa: E731
        status = sorted({str(v) for v in g.get("status", pd.Series(dtype=str)).dropna()
                         if not str(v).startswith(("completed", "early"))})
        row = dict(block=block, method=method, data=data, n_seeds=len(a), reused=int((g["how"] == "reused").sum()),
                   ran=int(g["how"].astype(str).str.startswith("ran").sum()), status="; ".join(status))
        if len(a):
            lo, hi = bootstrap_ci(a)
            chance, degenerate = _chance_and_degenerate(g[pd.to_numeric(g["AUROC"], errors="coerce").notna()])
            row.update(AUROC_mean=a.mean(), AUROC_std=a.std(ddof=1) if len(a) > 1 else float("nan"), ci_low=lo,
                       ci_high=hi, image_ci_low=num("AUROC_ci_low", pd.Series.mean),
                       image_ci_high=num("AUROC_ci_high", pd.Series.mean), chance=chance, degenerate=degenerate,
                       F1_mean=float("nan") if degenerate else num("F1", pd.Series.mean),
                       AUROC_medmnist_exact=num("AUROC_medmnist_exact", pd.Series.mean),
                       pixel_AUROC=num("pixel_AUROC", pd.Series.mean))
        row.update(fit_seconds=num("fit_seconds", pd.Series.mean), score_seconds=num("score_seconds", pd.Series.mean),
                   added_memory_MB=num("added_memory_MB", pd.Series.max))
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def cell_text(c: pd.Series) -> str:
    """A leaderboard cell in percent: 'mean ± std' (or the single seed's value) and its 95 % CI (over seeds with
    two or more, else over test images), marked ↓ below chance, ≈ at chance, † degenerate threshold; or why the
    cell has no result."""
    if not np.isfinite(c.get("AUROC_mean", np.nan)):
        return c.get("status") or "no result"
    value = f"{100 * c['AUROC_mean']:.1f}" + (f" ± {100 * c['AUROC_std']:.1f}" if np.isfinite(c["AUROC_std"]) else "")
    lo, hi = (c["ci_low"], c["ci_high"]) if np.isfinite(c["ci_low"]) else (c["image_ci_low"], c["image_ci_high"])
    if np.isfinite(lo) and np.isfinite(hi):
        value += f" [{100 * lo:.1f}, {100 * hi:.1f}]"
    marks = {"below chance": " ↓", "at chance": " ≈"}.get(c["chance"], "") + (" †" if c["degenerate"] else "")
    return value + marks


CELL_LEGEND = ("AUROC in %: mean (± std over seeds with two or more) [95 % bootstrap CI: over seeds with two or "
               "more, else over the test images]; ↓ below chance, ≈ at chance (adlib.verdicts: the CI/seed spread "
               "lies wholly below 50 % / contains 50 %); † the validation threshold is degenerate (F1/ACC/SEN/SPE "
               "of a constant prediction, not counted)")


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
    if matrix.shape[1] < 2:
        return None, pd.DataFrame(), f"{matrix.shape[1]} detector(s) in the {block} block: nothing to rank"
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


def leaderboard(cells: pd.DataFrame, ranks: dict | None = None, cost: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (block, method): datasets with a result, mean rank (autorank, over the ranked datasets; blank for
    a method outside the complete table), mean AUROC over its datasets, how many of its cells are below / at
    chance or have a degenerate threshold, one `cell_text` column per dataset ('AUROC <data>'), and its cost
    (``cost``: `resources` of the runs of this grid: mean fit and score seconds per run, largest memory a run
    added). Ranked methods first (by mean rank), then by mean AUROC; the weakly supervised blocks after.

    ranks: {block: autorank result or None}."""
    ranks = ranks or {}
    out = []
    for (block, method), g in cells.groupby(["block", "method"], sort=False):
        res = ranks.get(block)
        done = g[np.isfinite(pd.to_numeric(g["AUROC_mean"], errors="coerce"))]
        mean_rank = float(res.rankdf.loc[method, "meanrank"]) if res is not None and method in res.rankdf.index \
            else float("nan")
        row = dict(method=method, block=block, n_datasets=int(done["data"].nunique()), mean_rank=mean_rank,
                   mean_auroc=float(done["AUROC_mean"].mean()) if len(done) else float("nan"),
                   below_chance=int((done["chance"] == "below chance").sum()),
                   at_chance=int((done["chance"] == "at chance").sum()),
                   degenerate_threshold=int(done["degenerate"].astype(bool).sum()),
                   not_run=int(len(g) - len(done)))
        for _, c in g.iterrows():
            row[f"AUROC {c['data']}"] = cell_text(c)
            if np.isfinite(c.get("AUROC_medmnist_exact", np.nan)):  # PneumoniaMNIST 64/128 px: its exact test images
                row[f"AUROC {c['data']} (MedMNIST-exact)"] = f"{100 * c['AUROC_medmnist_exact']:.1f}"
        out.append(row)
    frame = pd.DataFrame(out)
    if frame.empty:
        return frame
    if cost is not None and len(cost):
        keep = ["block", "method", "runs", "fit_seconds", "score_seconds", "added_memory_MB", "peak_memory_MB"]
        frame = frame.merge(cost[[c for c in keep if c in cost]], on=["block", "method"], how="left")
    frame["_b"] = (frame["block"] != UNSUPERVISED).astype(int)
    frame["_k"] = pd.to_numeric(frame["block"].str.extract(r"K=(\d+)")[0], errors="coerce")  # K=2 before K=16
    frame = frame.sort_values(["_b", "_k", "block", "mean_rank", "mean_auroc"],
                              ascending=[True, True, True, True, False],
                              na_position="last").drop(columns=["_b", "_k"])
    return frame.reset_index(drop=True)


def resources(grid: pd.DataFrame) -> pd.DataFrame:
    """The cost of each method from the runs of this grid only (rows that ran here under its protocol; reused rows
    were measured in another process): runs, mean fit and score seconds per run, the largest memory one run added
    at its peak (`ResourceMeter.added_mb`) and the largest process peak (RSS, which includes what the worker
    process held before the run)."""
    ran = grid[grid["how"].astype(str).str.startswith("ran") & pd.to_numeric(grid["fit_seconds"],
                                                                             errors="coerce").notna()]
    cols = {c: pd.to_numeric(ran[c], errors="coerce") for c in ("fit_seconds", "score_seconds", "added_memory_MB",
                                                                "peak_memory_MB") if c in ran}
    ran = ran.assign(**cols)
    agg = ran.groupby(["block", "method"], sort=False).agg(
        runs=("data", "size"), fit_seconds=("fit_seconds", "mean"), score_seconds=("score_seconds", "mean"),
        added_memory_MB=("added_memory_MB", "max"),
        **({"peak_memory_MB": ("peak_memory_MB", "max")} if "peak_memory_MB" in ran else {}))
    return agg.reset_index()


def reading_leaderboard(board: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as a student reads it: method, block, mean rank, mean AUROC (%), one column per dataset
    (`cell_text`), the marks counted, and the cost of a run (mean fit and score seconds, largest memory added)."""
    if board.empty:
        return board
    datasets = [c for c in board.columns if c.startswith("AUROC ")]
    out = pd.DataFrame({"method": board["method"], "block": board["block"],
                        "mean rank": board["mean_rank"].round(2), "mean AUROC %": (100 * board["mean_auroc"]).round(1)})
    for c in datasets:
        out[c.removeprefix("AUROC ")] = board[c].fillna("")
    out["↓ / ≈ / †"] = [f"{b} / {a} / {d}" for b, a, d in zip(board["below_chance"], board["at_chance"],
                                                              board["degenerate_threshold"])]
    for col, name in (("fit_seconds", "fit s"), ("score_seconds", "score s"), ("added_memory_MB", "MB added")):
        if col in board:
            out[name] = board[col].round(1)
    return out
