"""The benchmark's figures: test AUROC per dataset (bars with CIs, one colour per block, a legend), the cost of each
method's runs, and autorank's critical-difference diagram. Each returns a matplotlib figure; the notebook saves
and shows it with `adlib.plots.save_figure`.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd

from .grid import UNSUPERVISED


def _label(method: str, block: str) -> str:
    return method if block == UNSUPERVISED else f"{method} ({block.split('(')[-1].rstrip(')')})"


def _colours(blocks) -> dict[str, str]:
    weak = [b for b in dict.fromkeys(blocks) if b != UNSUPERVISED]
    palette = ["tab:orange", "tab:green", "tab:red", "tab:purple"]
    return {UNSUPERVISED: "tab:blue", **{b: palette[i % len(palette)] for i, b in enumerate(weak)}}


def auroc_bars(cells: pd.DataFrame, datasets: list[str] | None = None):
    """One panel per dataset: each method's test AUROC (%) with its 95 % CI as whiskers (over seeds where there
    are two or more, else over test images), coloured by block (legend), chance as a dashed line; a cell with
    no result is left out of its panel."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    done = cells[np.isfinite(pd.to_numeric(cells["AUROC_mean"], errors="coerce"))]
    datasets = list(datasets or done["data"].unique())
    colours = _colours(done["block"])
    fig, axes = plt.subplots(len(datasets), 1, figsize=(11, 2.7 * len(datasets)), squeeze=False)
    for ax, data in zip(axes[:, 0], datasets):
        c = done[done["data"] == data].sort_values("AUROC_mean", ascending=False)
        seeds = np.isfinite(c["ci_low"])
        low = 100 * c["ci_low"].where(seeds, c["image_ci_low"]).fillna(c["AUROC_mean"])
        high = 100 * c["ci_high"].where(seeds, c["image_ci_high"]).fillna(c["AUROC_mean"])
        mean = 100 * c["AUROC_mean"]
        ax.bar([_label(m, b) for m, b in zip(c["method"], c["block"])], mean, color=[colours[b] for b in c["block"]],
               yerr=[(mean - low).clip(lower=0), (high - mean).clip(lower=0)], capsize=3)
        ax.axhline(50, color="grey", lw=0.8, ls="--")
        ax.grid(axis="x", visible=False)  # vertical grid lines would read as whiskers
        ax.set(ylim=(0, 102), ylabel="test AUROC (%)", xlabel="detector")
        over = "seeds" if seeds.all() else "test images" if not seeds.any() else "seeds (n > 1), else test images"
        ax.set_title(f"{data}: bars = mean over seeds, whiskers = 95 % bootstrap CI over {over}", fontsize=10)
        ax.tick_params(axis="x", rotation=60, labelsize=9)
    handles = [Patch(color=colour, label=block) for block, colour in colours.items() if block in set(done["block"])]
    handles.append(plt.Line2D([], [], color="grey", lw=0.8, ls="--", label="chance (50 %)"))
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), bbox_to_anchor=(0.5, 1.0), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985 - 0.04 / len(datasets)))
    return fig


def cost_panels(cost: pd.DataFrame):
    """Training time, scoring time and memory per method, from the runs of this grid (`statistics.resources`)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    cost = cost.sort_values("fit_seconds", na_position="first")  # the slowest at the top
    fig, axes = plt.subplots(1, 3, figsize=(14, 0.28 * len(cost) + 1.6), sharey=True)
    labels = [_label(m, b) for m, b in zip(cost["method"], cost["block"])]
    panels = [("fit_seconds", "training time per run (s)"), ("score_seconds", "scoring time per run, val + test (s)"),
              ("added_memory_MB", "memory a run added at its peak (MB)")]
    for ax, (col, title) in zip(axes, panels):
        ax.barh(labels, cost[col], color="tab:blue")
        ax.set_title(title, fontsize=11)
        ax.set_xscale("symlog", linthresh=1)  # log above 1, linear from 0 to 1: a run that costs ~0 still shows
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 1, 10, 100 (not 10^0 or 7.7e-1)
        ax.set_xlabel(title.split(" (")[-1].rstrip(")") + ": linear 0-1, log scale above 1")
        ax.set_ylabel("detector" if ax is axes[0] else "")
        if ax is not axes[0]:
            ax.yaxis.set_visible(False)  # the shared detector names are on the left panel
    fig.suptitle(f"Cost of the {int(cost['runs'].sum())} runs of this notebook (mean over datasets; memory: the "
                 "largest run), one torch thread each", fontsize=12)
    fig.tight_layout()
    return fig


def critical_difference(result, n_datasets: int, block: str = UNSUPERVISED):
    """autorank's critical-difference diagram of a `rank_methods` result (None when there is no result)."""
    if result is None:
        return None
    from autorank import plot_stats

    with contextlib.redirect_stdout(io.StringIO()):  # autorank prints its rank table; the leaderboard has it
        ax = plot_stats(result, allow_insignificant=True)
    fig = ax.get_figure()
    cd = f", critical difference {result.cd:.2f}" if result.cd is not None else ""
    fig.suptitle(f"Critical-difference diagram, {block} block: mean rank over {n_datasets} datasets "
                 f"({str(result.omnibus).capitalize()} p = {result.pvalue:.3g}{cd})", fontsize=9, y=1.12)
    return fig
