"""Helpers of notebook 03 (CCB-AAE): the paper's printed numbers, detector settings per method, per-grade
evaluation, and the notebook's figures. Kept here so that the notebook's cells stay short."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ...data.imageset import ImageSet
from ...experiment import ExperimentResult, score_and_record, scored_part
from ...gan import scaled_ccb_lengths
from ...data.protocol import cap_splits as cap  # noqa: F401  (the notebooks import it from here)

PAPER_CSV = Path(__file__).with_name("paper_numbers_ccb_aae.csv")
# display name -> registered detector name, in the paper's row order
METHODS = {"AnoGAN": "anogan", "EGBAD": "egbad", "GANomaly": "ganomaly", "Skip-GANomaly": "skip_ganomaly",
           "CCB-AAE": "ccb_aae"}
AE_FAMILY = ("GANomaly", "Skip-GANomaly", "CCB-AAE")
# CIFAR-10 class index -> the column name of the paper's Table 1
PAPER_CIFAR_NAMES = ("Plane", "Car", "Bird", "Cat", "Deer", "Dog", "Frog", "Horse", "Ship", "Truck")
RETINA_GRADES = {1: "grade 1", 2: "grade 2", 3: "grade 3", 4: "grade 4"}


def paper_numbers_ccb_aae(table: str | None = None) -> pd.DataFrame:
    """The CCB-AAE paper's printed numbers (Tables 1-7, fractions as printed)."""
    frame = pd.read_csv(PAPER_CSV)
    return frame if table is None else frame[frame["table"] == table].reset_index(drop=True)


def length_label(factor: int) -> str:
    """'[2,4,6,8]' for factor 2: the row names of Tables 6/7."""
    return "[" + ",".join(str(n) for n in scaled_ccb_lengths(factor)) + "]"


def detector_kwargs(method: str, cfg, width: int, steps: int, **over) -> dict:
    """Keyword arguments of ``method`` (display name) for one notebook run, from the run configuration."""
    kw = dict(width=width, steps=steps, batch_size=cfg["batch_size"], lr=cfg["lr"], nz=cfg["nz"], progress=False)
    if method == "AnoGAN":
        kw["search_steps"] = cfg["anogan_search_steps"]
    else:
        kw["eval_every"] = cfg["eval_every"]
    if method == "EGBAD":
        kw["hidden"] = cfg["egbad_hidden"]
    kw.update(over)
    return kw



def per_class_rows(result: ExperimentResult, protocol, *, classes: dict[int, str], table, config, method: str,
                   seed: int, dataset: str, variant: str = "default", **extra) -> list[dict]:
    """One result row per anomaly class: normals + the images of one raw class, from scores computed once.

    The model (and its alpha / checkpoint, chosen on the whole validation split) is the same for every class;
    each class gets its own F1-optimal threshold on the validation images of that class and the normals."""
    rows = []
    for raw, name in classes.items():
        val = test = None  # a diverged run, or a class missing from a subset: NaN metrics
        if result.val is not None:
            val = scored_part(result.val.scores, protocol.val, (protocol.val.labels == 0) | (protocol.val.raw_labels == raw))
            test = scored_part(result.test.scores, protocol.test,
                               (protocol.test.labels == 0) | (protocol.test.raw_labels == raw))
        rows.append(score_and_record(table, val, test, config=config, protocol=protocol, method=method, seed=seed,
                                     detector=result.detector, variant=variant, dataset=f"{dataset} {name}",
                                     status=result.status, **extra)[1])
    return rows


# ----- figures -------------------------------------------------------------------------------------------
def cifar_bar_chart(ours: pd.DataFrame, paper: pd.DataFrame, title: str) -> plt.Figure:
    """Fig. 5 analogue: AUROC per anomalous CIFAR-10 class and method; bars = ours (mean over seeds, with the
    seeds as dots), black ticks = the paper's Table 1."""
    classes = list(dict.fromkeys(ours["class"]))
    methods = [m for m in METHODS if m in set(ours["method"])]
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(classes) * max(1, len(methods)) / 5, 3.6))
    width = 0.8 / max(1, len(methods))
    palette = sns.color_palette("deep", len(METHODS))
    for j, m in enumerate(methods):
        color = palette[list(METHODS).index(m)]
        for i, c in enumerate(classes):
            x = i + (j - (len(methods) - 1) / 2) * width
            vals = ours[(ours["method"] == m) & (ours["class"] == c)]["AUROC"].to_numpy(dtype=float)
            ax.bar(x, np.nanmean(vals) if len(vals) else np.nan, width * 0.9, color=color,
                   label=m if i == 0 else None)
            ax.scatter(np.full(len(vals), x), vals, s=8, color="k", zorder=3)
            printed = paper[(paper["method"] == m) & (paper["dataset"] == f"CIFAR-10 {c}")]["value"]
            if len(printed):
                ax.plot([x - width * 0.45, x + width * 0.45], [printed.iloc[0]] * 2, color="k", lw=2, zorder=4)
    ax.axhline(0.5, color="grey", ls="--", lw=1)
    ax.set(xticks=range(len(classes)), xticklabels=[f"{c}\n(anomalous)" for c in classes], ylabel="test AUROC",
           ylim=(0, 1.02), title=title)
    ax.plot([], [], color="k", lw=2, label="paper (Table 1)")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    return fig


def seed_dots(frame: pd.DataFrame, metric: str, title: str, x: str = "method",
              hue: str | None = "dataset") -> plt.Figure:
    """Per-seed dots with mean ± std bars, one group per ``x`` (and colour per ``hue``)."""
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * frame[x].nunique(), 3.4))
    sns.stripplot(data=frame, x=x, y=metric, hue=hue, dodge=hue is not None, jitter=0.15, size=5, ax=ax,
                  order=[m for m in METHODS if m in set(frame[x])] if x == "method" else None)
    sns.pointplot(data=frame, x=x, y=metric, hue=hue, dodge=0.4 if hue else False, errorbar="sd", markers="_",
                  linestyles="none", capsize=0.15, ax=ax, legend=False, palette="dark" if hue else None,
                  color=None if hue else "k",
                  order=[m for m in METHODS if m in set(frame[x])] if x == "method" else None)
    ax.axhline(0.5, color="grey", ls="--", lw=1)
    ax.set(title=title, xlabel="")
    if hue:
        ax.legend(fontsize=7, loc="best")
    return fig


def ccb_length_curve(ours: pd.DataFrame, paper: pd.DataFrame, metric: str, title: str) -> plt.Figure:
    """Figs. 6/7 analogue: metric vs CCB length factor; ours (one line per anomaly class) beside the paper's
    HAM10000 columns (Tables 6/7)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3), sharey=True)
    for name, group in ours.groupby("dataset", sort=False):
        g = group.groupby("factor")[metric].mean()
        axes[0].plot(g.index, g.values, "o-", label=name)
    axes[0].set(title=f"ours: {title}", xlabel="CCB length factor (x [1,2,3,4])", ylabel=metric)
    axes[0].legend(fontsize=7)
    factor_of = {length_label(f): f for f in (1, 2, 4, 6, 8)}
    p = paper[paper["metric"] == metric].assign(factor=lambda d: d["method"].str.replace("CCB-AAE ", "").map(factor_of))
    for name, group in p.groupby("dataset", sort=False):
        axes[1].plot(group["factor"], group["value"], "o--", label=name)
    axes[1].set(title=f"paper: HAM10000 {metric} (Table {6 if metric == 'ACC' else 7})", xlabel="CCB length factor")
    axes[1].legend(fontsize=6, ncol=2)
    for ax in axes:
        ax.set_xticks([1, 2, 4, 6, 8])
    fig.tight_layout()
    return fig


def alpha_curve(tables: dict[str, pd.DataFrame], title: str) -> plt.Figure:
    """Validation AUROC against alpha of Eq. 2 (the choice made in fit), one line per detector."""
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for name, t in tables.items():
        if t is not None:
            ax.plot(t["alpha"], t["val_AUROC"], "o-", ms=3, label=name)
    ax.set(xlabel="alpha (weight of the image term)", ylabel="validation AUROC", title=title)
    ax.legend(fontsize=7)
    return fig


def example_rows(detector, images: ImageSet, labels: tuple[str, str] = ("normal", "anomalous")) -> tuple[dict, list]:
    """Rows (input / reconstruction / residual map) and titles for `plots.image_grid`; the map row is named for
    what the detector's map is: "residual²" for (x - x̂)², "|residual|" for |x - x̂|."""
    scores = detector.score(images)
    map_name = "|residual|" if getattr(detector, "map_error", "square") == "abs" else "residual²"
    rows = {"input": images.images, "reconstruction": detector.reconstruct(images),
            map_name: detector.anomaly_maps(images)}
    titles = [f"{labels[int(y)]} {s:.2f}" for y, s in zip(images.labels, scores)]
    return rows, titles
