"""The closing sentences of notebook 07, generated from its tables (nothing typed): coverage of the grid, the rank
test, chance and degenerate thresholds, the top detectors compared dataset by dataset (`adlib.verdicts.compare`:
"better" only beyond the noise), the weakly supervised block, pixel AUROC, paper vs ours and cost."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .grid import UNSUPERVISED
from .paper_comparison import has_ours


def _names(items, limit: int = 6) -> str:
    items = list(items)
    shown = ", ".join(map(str, items[:limit]))
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def coverage(grid: pd.DataFrame) -> str:
    hows = grid["how"].astype(str)
    failed = grid[grid["status"].astype(str).str.startswith("cannot run")] if "status" in grid else grid.iloc[0:0]
    cells = grid.groupby(["block", "method", "data"]).ngroups
    text = (f"The grid has {cells} cells ({grid['method'].nunique()} detectors x {grid['data'].nunique()} datasets, "
            f"{grid['seed'].nunique()} seed(s)): {int(hows.str.startswith('ran').sum())} runs ran in this notebook, "
            f"{int((hows == 'reused').sum())} were reused from rows with the same configuration hash, "
            f"{int(hows.str.startswith('not run').sum())} were left out by the profile")
    if len(failed):
        text += ("; these could not run: " + "; ".join(f"{r['method']} on {r['data']} ({r['status']})"
                                                       for _, r in failed.head(4).iterrows()))
    return text + "."


def ranking(board: pd.DataFrame, ranks: dict, rank_tables: dict, rank_notes: dict) -> list[str]:
    unsup = board[board["block"] == UNSUPERVISED]
    res, table = ranks.get(UNSUPERVISED), rank_tables.get(UNSUPERVISED, pd.DataFrame())
    if res is None or unsup.empty:
        return [f"No rank test in the unsupervised block ({rank_notes.get(UNSUPERVISED, 'no results')})."]
    ranked = unsup[unsup["mean_rank"].notna()].sort_values("mean_rank")
    left_out = sorted(set(unsup["method"]) - set(ranked["method"]))
    top = ranked.iloc[0]
    lines = [f"The rank test covers {len(ranked)} of the {len(unsup)} unsupervised detectors on {table.shape[0]} "
             f"datasets ({', '.join(table.index)})" + (f"; left out for a missing cell: {_names(left_out)}"
                                                      if left_out else "") + ". Best mean ranks: "
             + ", ".join(f"**{r['method']}** ({r['mean_rank']:.2f}; mean AUROC {100 * r['mean_auroc']:.1f} %)"
                         for _, r in ranked.head(3).iterrows()) + "."]
    significant = res.pvalue < 0.05
    line = (f"The {str(res.omnibus).capitalize()} test gives p = {res.pvalue:.3g}: the detectors' ranks "
            f"{'differ' if significant else 'do not differ'} significantly at the 5 % level")
    if res.cd is not None and significant:
        behind = ranked[ranked["mean_rank"] > top["mean_rank"] + res.cd]
        line += (f"; with the Nemenyi critical difference of {res.cd:.2f} mean ranks, {top['method']} ranks "
                 f"significantly ahead of {len(behind)} detector(s)" + (f" ({_names(behind['method'])})"
                                                                         if len(behind) else "")
                 + f" and cannot be told apart from the other {len(ranked) - 1 - len(behind)}")
    return lines + [line + "."]


def chance_and_thresholds(cells: pd.DataFrame) -> str:
    done = cells[np.isfinite(pd.to_numeric(cells["AUROC_mean"], errors="coerce"))]
    below = done[done["chance"] == "below chance"]
    at = done[done["chance"] == "at chance"]
    per_method = below.groupby("method")["data"].apply(lambda d: ", ".join(d))
    text = (f"Of {len(done)} cells with a result, {len(below)} are **below chance** (the detector ranks normal "
            f"images above anomalous ones)" + (": " + "; ".join(f"{m} on {d}" for m, d in per_method.items())
                                               if len(below) else "")
            + f", and {len(at)} are at chance (their CI contains 50 %)")
    degenerate = done[done["degenerate"].astype(bool)]
    text += (f"; {len(degenerate)} have a degenerate validation threshold (Youden's J; F1/ACC/SEN/SPE of a constant "
             "prediction, not counted)." if len(degenerate) else "; no cell has a degenerate validation threshold.")
    return text


def top_pair(grid: pd.DataFrame, board: pd.DataFrame) -> str | None:
    """The two best-ranked unsupervised detectors compared on each dataset by `adlib.verdicts.compare`."""
    from ..verdicts import compare

    unsup = board[(board["block"] == UNSUPERVISED) & board["mean_rank"].notna()].sort_values("mean_rank")
    if len(unsup) < 2:
        return None
    a, b = unsup["method"].iloc[0], unsup["method"].iloc[1]
    rows = grid[(grid["block"] == UNSUPERVISED) & pd.to_numeric(grid["AUROC"], errors="coerce").notna()]
    outcomes = {}
    for data, g in rows.groupby("data", sort=False):
        ga, gb = g[g["method"] == a], g[g["method"] == b]
        if len(ga) and len(gb):
            outcomes[data] = compare(ga, gb, "AUROC", names=(a, b)).label
    counts = pd.Series(outcomes).value_counts()
    return (f"{a} against {b}, dataset by dataset (better only when the difference exceeds the seed spread and the "
            f"test-image CIs do not overlap): " + "; ".join(f"{label} on {n}" for label, n in counts.items())
            + " (" + ", ".join(f"{d}: {o}" for d, o in outcomes.items()) + ").")


def weak_block(grid: pd.DataFrame, cells: pd.DataFrame) -> list[str]:
    """Each weakly supervised detector against the best unsupervised detector of each dataset."""
    from ..verdicts import compare

    lines = []
    done = cells[np.isfinite(pd.to_numeric(cells["AUROC_mean"], errors="coerce"))]
    rows = grid[pd.to_numeric(grid["AUROC"], errors="coerce").notna()]
    for (block, method), w in done[done["block"] != UNSUPERVISED].groupby(["block", "method"], sort=False):
        labels = []
        for data in w["data"]:
            best = done[(done["block"] == UNSUPERVISED) & (done["data"] == data)].sort_values("AUROC_mean").tail(1)
            if best.empty:
                continue
            mine = rows[(rows["block"] == block) & (rows["method"] == method) & (rows["data"] == data)]
            theirs = rows[(rows["block"] == UNSUPERVISED) & (rows["method"] == best["method"].iloc[0])
                          & (rows["data"] == data)]
            verdict = compare(mine.assign(variant="default"), theirs, "AUROC", names=(method, best["method"].iloc[0]))
            labels.append(f"{data}: {verdict.label} ({100 * verdict.a.mean:.1f} vs {100 * verdict.b.mean:.1f})")
        lines.append(f"{method}, {block}, against the best unsupervised detector of each dataset: "
                     + "; ".join(labels) + ".")
    return lines


def pixel_sentence(cells: pd.DataFrame) -> str | None:
    pixel = cells[np.isfinite(pd.to_numeric(cells["pixel_AUROC"], errors="coerce"))]
    if pixel.empty:
        return None
    best = pixel.sort_values("pixel_AUROC", ascending=False)
    return (f"On the synthetic lesions, {pixel['method'].nunique()} detectors give anomaly maps; the best pixel "
            "AUROCs: " + ", ".join(f"{r['method']} {100 * r['pixel_AUROC']:.1f} % (image AUROC "
                                   f"{100 * r['AUROC_mean']:.1f} %)" for _, r in best.head(3).iterrows()) + ".")


def paper_sentence(vs: pd.DataFrame) -> str | None:
    auroc = vs[(vs["metric"] == "AUROC") & vs["ours"].notna()]
    if auroc.empty:
        return None
    counted = auroc[auroc["auroc_vs_chance"] == "above chance"]
    threshold = vs[has_ours(vs) & (vs["metric"] != "AUROC") & (vs["metric"] != "AP")]  # degenerate: blank ours
    degenerate = int(threshold["degenerate_threshold"].astype(bool).sum())
    return (f"Paper vs ours: {len(auroc)} printed AUROCs have a counterpart of ours; {len(auroc) - len(counted)} of "
            f"ours are below or at chance, and of the other {len(counted)} ours is lower for "
            f"{int((counted['difference'] < 0).sum())} (median difference {counted['difference'].median():+.1f} "
            f"points). Of {len(threshold)} printed F1/ACC/SEN/SPE numbers, {degenerate} of ours come from a "
            "degenerate threshold and are shown as '—'. Every gap mixes the differences the note lists (data "
            "substitute, image size, weights, budget) with the method's own, so on its own it neither confirms nor "
            "refutes a paper; the paper notebooks test the papers' claims.")


def cost_sentence(cost: pd.DataFrame) -> str | None:
    timed = cost[np.isfinite(pd.to_numeric(cost["fit_seconds"], errors="coerce"))]
    if timed.empty:
        return None
    slow, fast = timed.loc[timed["fit_seconds"].idxmax()], timed.loc[timed["fit_seconds"].idxmin()]
    return (f"Training one run takes from {fast['fit_seconds']:.1f} s ({fast['method']}) to "
            f"{slow['fit_seconds']:.1f} s ({slow['method']}) on one thread at these sizes, on average over datasets.")


def conclusions(grid: pd.DataFrame, cells: pd.DataFrame, board: pd.DataFrame, ranks: dict, rank_tables: dict,
                rank_notes: dict, vs: pd.DataFrame, cost: pd.DataFrame) -> list[str]:
    """The notebook's conclusions as Markdown paragraphs (for `adlib.notebook.say`)."""
    parts = [coverage(grid), *ranking(board, ranks, rank_tables, rank_notes), chance_and_thresholds(cells),
             top_pair(grid, board), *weak_block(grid, cells), pixel_sentence(cells), paper_sentence(vs),
             cost_sentence(cost)]
    return [p for p in parts if p]
